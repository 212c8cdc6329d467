"""Caffe's solver-state files: ``.solverstate`` (SolverState proto) and ``.solverstate.h5``.

Both hold the iteration, the learned net's file name, the multistep position and the
history blobs in the solver's order (Adam/AdaDelta: all first moments, then all second
ones).  Writes are atomic: a reader sees the old file or the new one, never part of one.
"""

import os

import numpy as np

from ..atomic import atomic_write
from ..errors import SolverError
from ..proto import caffe_pb2


def write_state_proto(path, iteration, learned_net, current_step, history):
    from ..weights import array_to_blob

    st = caffe_pb2.SolverState()
    st.iter = int(iteration)
    st.learned_net = learned_net
    st.current_step = int(current_step)
    for h in history:
        array_to_blob(h, st.history.add())
    with atomic_write(path) as f:
        f.write(st.SerializeToString())


def write_state_hdf5(path, iteration, learned_net, current_step, history):
    """Caffe's layout: int datasets ``iter`` and ``current_step`` of shape (1,), the string
    ``learned_net`` and the group ``history`` holding datasets "0", "1", ..."""
    import h5py

    with atomic_write(path) as f, h5py.File(f.name, "w") as h:
        h.create_dataset("iter", data=np.array([iteration], np.int32))
        h.create_dataset("learned_net", data=np.bytes_(learned_net))
        h.create_dataset("current_step", data=np.array([current_step], np.int32))
        g = h.create_group("history")
        for i, arr in enumerate(history):
            g.create_dataset(str(i), data=np.asarray(arr, np.float32))


def read_state(path):
    """(iter, learned_net, current_step, [history arrays]) from either format."""
    if not os.path.exists(path):
        raise SolverError(f"solver state '{path}' does not exist")
    if path.endswith(".h5"):
        return _read_state_hdf5(path)
    return _read_state_proto(path)


def _read_state_proto(path):
    from ..weights import blob_to_array

    st = caffe_pb2.SolverState()
    try:
        with open(path, "rb") as f:
            st.ParseFromString(f.read())
    except Exception as exc:  # protobuf raises its own DecodeError
        raise SolverError(f"'{path}' is not a Caffe solver state: {exc}") from exc
    return st.iter, st.learned_net, st.current_step, [blob_to_array(b) for b in st.history]


def _read_state_hdf5(path):
    import h5py

    try:
        with h5py.File(path, "r") as h:
            it = int(np.asarray(h["iter"]).ravel()[0])
            learned = h["learned_net"][()] if "learned_net" in h else b""
            step = int(np.asarray(h["current_step"]).ravel()[0]) if "current_step" in h else 0
            g = h["history"]
            hist = [np.asarray(g[str(i)], np.float32) for i in range(len(g))]
    except (OSError, KeyError) as exc:
        raise SolverError(f"'{path}' is not a Caffe HDF5 solver state: {exc}") from exc
    if isinstance(learned, bytes):
        learned = learned.decode()
    return it, learned, step, hist


def locate_learned_net(learned, state_path):
    """Caffe opens ``learned_net`` relative to the current directory; a snapshot moved
    with its state file is also found beside the state."""
    if not learned or os.path.exists(learned):
        return learned
    beside = os.path.join(os.path.dirname(os.path.abspath(state_path)),
                          os.path.basename(learned))
    if os.path.exists(beside):
        return beside
    raise SolverError(f"solver state '{state_path}' names the weights file '{learned}', which "
                      "does not exist (looked in the current directory and beside the state)")
