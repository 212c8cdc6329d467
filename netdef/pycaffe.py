"""The rest of pycaffe's surface: ``caffe.pycaffe`` names that are not a module of their own.

``Net.forward_all`` / ``forward_backward_all`` (whole arrays through a fixed-batch net),
``set_input_arrays`` for MemoryData layers, the typed solver constructors
(``SGDSolver(file)`` ... ``AdamSolver(file)``), ``Timer``, the logging and multi-GPU
switches (accepted; netdef runs on the CPU in one process unless started under MPI), and
``LayerParameter``, a small holder some pycaffe builds expose.  ``install_caffe_alias()``
lets unmodified pycaffe code (``import caffe``) run on netdef, on request.
"""

import time
from itertools import zip_longest

import numpy as np
from google.protobuf import text_format

from .errors import DataError, LayerError
from .log import logger, setup_logging
from .net import Net
from .proto import caffe_pb2
from .solvers import Solver

__all__ = ["Net", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver",
           "AdaDeltaSolver", "AdamSolver", "NCCL", "Timer", "LayerParameter", "init_log", "log",
           "has_nccl", "solver_count", "set_solver_count", "solver_rank", "set_solver_rank",
           "set_multiprocess", "forward_all", "forward_backward_all", "batches",
           "install_caffe_alias"]


# -- whole arrays through a fixed-batch net --------------------------------------------------
def batches(net, arrays):
    """Split {name: (N, ...) array} into the net's batch size; the last batch is padded
    with zeros to a full batch (pycaffe's ``Net._batch``)."""
    num = len(next(iter(arrays.values())))
    batch_size = next(iter(net.blobs.values())).shape[0]
    for start in range(0, num - num % batch_size, batch_size):
        yield {name: arr[start:start + batch_size] for name, arr in arrays.items()}
    remainder = num % batch_size
    if remainder:
        padded = {}
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            pad = np.zeros((batch_size - remainder,) + arr.shape[1:], arr.dtype)
            padded[name] = np.concatenate([arr[-remainder:], pad])
        yield padded


def _stack(collected, num):
    """{name: list of per-item arrays} -> {name: array} without the padding rows."""
    out = {}
    for name, rows in collected.items():
        arr = np.asarray(rows)
        out[name] = arr[:num] if num is not None else arr
    return out


def forward_all(net, blobs=None, **kwargs):
    """Run the net over whole input arrays (N may exceed the batch size): the outputs (and
    ``blobs``) for all N items, as pycaffe's ``Net.forward_all``."""
    collected = {name: [] for name in set(net.outputs + list(blobs or []))}
    if not kwargs:
        for name, data in net.forward(blobs=blobs).items():
            collected[name].extend(data.copy())
        return _stack(collected, None)
    for batch in batches(net, kwargs):
        for name, data in net.forward(blobs=blobs, **batch).items():
            collected[name].extend(data.copy())
    return _stack(collected, len(next(iter(kwargs.values()))))


def forward_backward_all(net, blobs=None, diffs=None, **kwargs):
    """Forward and backward over whole arrays: inputs and output diffs given by name;
    returns ({output: data}, {input: diff}) for all N items."""
    collected = {name: [] for name in set(net.outputs + list(blobs or []))}
    collected_diffs = {name: [] for name in set(net.inputs + list(diffs or []))}
    forward_in = {k: v for k, v in kwargs.items() if k in net.inputs}
    backward_in = {k: v for k, v in kwargs.items() if k in net.outputs}
    fwd = batches(net, forward_in) if forward_in else iter(())
    bwd = batches(net, backward_in) if backward_in else iter(())
    ran = False
    for fb, bb in zip_longest(fwd, bwd, fillvalue={}):
        ran = True
        for name, data in net.forward(blobs=blobs, **fb).items():
            collected[name].extend(data.copy())
        for name, diff in net.backward(diffs=diffs, **bb).items():
            collected_diffs[name].extend(diff.copy())
    if not ran:
        for name, data in net.forward(blobs=blobs).items():
            collected[name].extend(data.copy())
        for name, diff in net.backward(diffs=diffs).items():
            collected_diffs[name].extend(diff.copy())
    num = len(next(iter(kwargs.values()))) if kwargs else None
    return _stack(collected, num), _stack(collected_diffs, num)


class InputArraysError(LayerError, RuntimeError):
    """set_input_arrays on a net or arrays that cannot take them (a RuntimeError, as
    pycaffe's)."""


def set_input_arrays(net, data, labels, layer=None):
    """Feed a MemoryData layer (the first layer, or the one named ``layer``)."""
    if layer is None:
        target = net.layers[0] if net.layers else None
        where = "the first layer"
    else:
        target = net.layer_dict.get(layer)
        where = f"layer '{layer}'"
    if target is None or target.type != "MemoryData":
        raise InputArraysError(f"set_input_arrays needs a MemoryData layer as {where} of net "
                               f"'{net.name}'")
    labels = np.asarray(labels)
    try:
        target.set_input_arrays(data, labels)
    except DataError as exc:
        raise InputArraysError(str(exc)) from None


# -- solvers -----------------------------------------------------------------------------------
def _read_solver(solver_file):
    from .prototxt import read_solver_param

    if isinstance(solver_file, caffe_pb2.SolverParameter):
        return solver_file, None
    return read_solver_param(str(solver_file)), str(solver_file)


def _with_type(param, type_name):
    out = caffe_pb2.SolverParameter()
    out.CopyFrom(param)
    out.ClearField("solver_type")
    out.type = type_name
    return out


class SGDSolver(Solver):
    """A solver with this class's update rule, whatever the file's ``type`` says (as
    pycaffe's ``caffe.SGDSolver(file)``; the other rules subclass it, as there)."""

    update_rule = "SGD"

    def __init__(self, solver_file):
        param, path = _read_solver(solver_file)
        super().__init__(_with_type(param, self.update_rule), solver_path=path)


class NesterovSolver(SGDSolver):
    update_rule = "Nesterov"


class AdaGradSolver(SGDSolver):
    update_rule = "AdaGrad"


class RMSPropSolver(SGDSolver):
    update_rule = "RMSProp"


class AdaDeltaSolver(SGDSolver):
    update_rule = "AdaDelta"


class AdamSolver(SGDSolver):
    update_rule = "Adam"


# -- timing, logging, multi-GPU switches --------------------------------------------------------
class Timer:
    """pycaffe's ``caffe.Timer``: ``start()``, ``stop()``, ``ms`` (elapsed milliseconds)."""

    def __init__(self):
        self._start = None
        self._elapsed = 0.0

    def start(self):
        self._start = time.perf_counter()

    def stop(self):
        if self._start is not None:
            self._elapsed = time.perf_counter() - self._start
            self._start = None

    @property
    def ms(self):
        if self._start is not None:
            return (time.perf_counter() - self._start) * 1000.0
        return self._elapsed * 1000.0


def init_log(level=0, stderr=False):
    """Caffe-style log lines on stderr (glog's minimum level: 0 INFO, 1 WARNING, 2 ERROR)."""
    setup_logging([20, 30, 40, 50][max(0, min(int(level), 3))])


def log(message):
    """One INFO line through netdef's logger."""
    logger.info("%s", message)


def has_nccl():
    """netdef has no NCCL (CPU only; data-parallel training goes through MPI)."""
    return False


_solver_count, _solver_rank, _multiprocess = 1, 0, False


def solver_count():
    return _solver_count


def set_solver_count(count):
    global _solver_count
    _solver_count = int(count)


def solver_rank():
    return _solver_rank


def set_solver_rank(rank):
    global _solver_rank
    _solver_rank = int(rank)


def set_multiprocess(flag):
    global _multiprocess
    _multiprocess = bool(flag)


class NCCL:
    """pycaffe's multi-GPU helper; netdef has no GPUs, so constructing one says so."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("NCCL multi-GPU training is not available: netdef runs on the CPU "
                           "(use MPI data parallelism instead)")

    @staticmethod
    def new_uid():
        raise RuntimeError("NCCL is not available: netdef runs on the CPU")


# -- LayerParameter holder ------------------------------------------------------------------
class LayerParameter:
    """A LayerParameter made from prototxt text or a ``caffe_pb2.LayerParameter``, with
    ``to_python()`` / ``from_python()`` (exposed by some pycaffe builds)."""

    def __init__(self, source=""):
        self._param = caffe_pb2.LayerParameter()
        if isinstance(source, caffe_pb2.LayerParameter):
            self._param.CopyFrom(source)
        elif source:
            text_format.Parse(source, self._param)

    def from_python(self, param):
        self._param = caffe_pb2.LayerParameter()
        self._param.CopyFrom(param)

    def to_python(self):
        out = caffe_pb2.LayerParameter()
        out.CopyFrom(self._param)
        return out

    def __getattr__(self, name):
        return getattr(self.__dict__["_param"], name)

    def __str__(self):
        return str(self._param)


# -- `import caffe` for code that cannot be edited --------------------------------------------
CAFFE_SUBMODULES = ("io", "draw", "net_spec", "coord_map", "classifier", "detector", "pycaffe",
                    "proto", "proto.caffe_pb2")


def install_caffe_alias(force=False):
    """Make ``import caffe`` (and ``caffe.io``, ``from caffe.proto import caffe_pb2`` ...)
    give netdef in this process, for scripts and Python-layer modules written for pycaffe.

    Opt-in, never automatic: a real Caffe (already imported, or installed where ``import
    caffe`` would find it) is left alone unless ``force`` is true.  Returns netdef.
    """
    import importlib
    import importlib.util
    import sys

    import netdef

    current = sys.modules.get("caffe")
    if current is netdef:
        return netdef
    if not force:
        if current is not None:
            raise RuntimeError(f"a 'caffe' module is already imported ({current!r}); pass "
                               "force=True to replace it with netdef in this process")
        spec = importlib.util.find_spec("caffe")
        if spec is not None:
            raise RuntimeError(f"a real Caffe is installed ({spec.origin}); pass force=True "
                               "to use netdef as 'caffe' in this process anyway")
    sys.modules["caffe"] = netdef
    for name in CAFFE_SUBMODULES:
        sys.modules[f"caffe.{name}"] = importlib.import_module(f"netdef.{name}")
    return netdef
