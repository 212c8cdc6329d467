"""Tiny data sets, nets and solvers for the data-parallel tests, and an mpiexec runner."""

import os
import subprocess
import sys

import numpy as np
import pytest

from netdef.data.datum import array_to_datum
from netdef.data.lmdb_io import LMDBWriter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mpiexec():
    """The mpiexec next to this Python, else on PATH; skip the test when there is none."""
    from netdef.errors import NetdefError
    from netdef.parallel.launch import find_mpiexec

    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed (pip install 'netdef[mpi]')")
    try:
        return find_mpiexec()
    except NetdefError:
        pytest.skip("no mpiexec (pip install 'netdef[mpi]')")


def write_records(path, n, shape=(1, 4, 4), seed=0, bad=(), classes=3):
    """An LMDB of ``n`` raw records: record i has label i % classes and random pixels;
    the indices in ``bad`` hold bytes that are not a Datum."""
    rng = np.random.default_rng(seed)
    with LMDBWriter(str(path)) as w:
        for i in range(n):
            value = b"\xff\x00 not a datum" if i in bad else array_to_datum(
                rng.integers(0, 256, shape, dtype=np.uint8), i % classes).SerializeToString()
            w.put(f"{i:08d}", value)
    return str(path)


NET = """
name: "tiny"
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{db}" batch_size: {batch} backend: LMDB }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param {{ num_output: 5 weight_filler {{ type: "gaussian" std: 0.3 }}
    bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 3 weight_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""

SOLVER = """
net: "{net}"
base_lr: 0.5
momentum: 0.9
weight_decay: 0.01
lr_policy: "fixed"
max_iter: {iters}
iter_size: {iter_size}
clip_gradients: {clip}
display: 1
random_seed: 7
snapshot: {snapshot}
snapshot_prefix: "{prefix}"
"""


def write_solver(folder, db, batch, iters, iter_size=1, clip=-1, snapshot=0, name="run"):
    """A solver prototxt training NET on ``db``; returns (solver path, snapshot prefix)."""
    folder = str(folder)
    net = os.path.join(folder, f"{name}_net.prototxt")
    with open(net, "w") as f:
        f.write(NET.format(db=db, batch=batch))
    prefix = os.path.join(folder, name)
    path = os.path.join(folder, f"{name}_solver.prototxt")
    with open(path, "w") as f:
        f.write(SOLVER.format(net=net, iters=iters, iter_size=iter_size, clip=clip,
                              snapshot=snapshot, prefix=prefix))
    return path, prefix


def environment():
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("NUMBA_NUM_THREADS", "1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def netdef_command(*args):
    return [sys.executable, "-m", "netdef.tools.main", *args]


def run_mpi(n, args, timeout=120, cwd=None):
    """``mpiexec -n n netdef <args>``; returns the CompletedProcess (text output)."""
    cmd = [mpiexec(), "-n", str(n), *netdef_command(*args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=environment())
