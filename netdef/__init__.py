"""netdef: Caffe, reborn in Python.  ``import netdef as caffe`` works like pycaffe."""

# Thread policy (netdef/threads.py, docs/performance.md): set before numpy loads BLAS and
# before numba starts its pool; a user's setting wins.
from . import threads as _threads  # noqa: F401,I001  (thread policy, before the rest)

# pycaffe's submodules: caffe.io, caffe.draw, caffe.net_spec, caffe.coord_map, caffe.classifier,
# caffe.detector, caffe.pycaffe, caffe.proto.caffe_pb2 (``from netdef.proto import caffe_pb2``).
from . import (  # noqa: E402,F401
    classifier,
    coord_map,
    detector,
    draw,
    io,
    layers,
    net_spec,
    proto,
    pycaffe,
)
from .blob import Blob  # noqa: E402
from .classifier import Classifier  # noqa: E402
from .detector import Detector  # noqa: E402
from .errors import NetdefError  # noqa: E402
from .layer import Layer, create_layer, layer_type_list, register  # noqa: E402
from .net import TEST, TRAIN, Net  # noqa: E402
from .net_spec import NetSpec, params, to_proto  # noqa: E402
from .proto import caffe_pb2  # noqa: E402,F401
from .pycaffe import (  # noqa: E402
    NCCL,
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    LayerParameter,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
    Timer,
    has_nccl,
    init_log,
    install_caffe_alias,
    log,
    set_multiprocess,
    set_solver_count,
    set_solver_rank,
    solver_count,
    solver_rank,
)
from .rng import set_random_seed  # noqa: E402
from .solvers import Solver, get_solver  # noqa: E402

__version__ = "0.1.0"


def set_mode_cpu():
    """pycaffe compatibility: netdef always runs on the CPU."""


def set_mode_gpu():
    """pycaffe compatibility: there is no GPU path; computation stays on the CPU."""


def set_device(device_id):
    """pycaffe compatibility: accepted and ignored (CPU only)."""


__all__ = ["AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "Blob", "Classifier", "Detector",
           "Layer", "LayerParameter", "NCCL", "Net", "NetSpec", "NetdefError",
           "NesterovSolver", "RMSPropSolver", "SGDSolver", "Solver", "TEST", "TRAIN", "Timer",
           "caffe_pb2", "classifier", "coord_map", "create_layer", "detector", "draw",
           "get_solver", "has_nccl", "init_log", "install_caffe_alias", "io",
           "layer_type_list", "layers", "log", "net_spec", "params", "proto", "pycaffe",
           "register", "set_device", "set_mode_cpu", "set_mode_gpu", "set_multiprocess",
           "set_random_seed", "set_solver_count", "set_solver_rank", "solver_count",
           "solver_rank", "to_proto"]
