"""netdef: Caffe, reborn in Python.  ``import netdef as caffe`` works like pycaffe."""

import os as _os

# Thread policy (docs/performance.md): idle worker threads must sleep, not spin, or
# numba's OpenMP pool and OpenBLAS's pool steal each other's cores (measured on 2 cores:
# a LeNet b64 forward took 31-40 ms spinning, 6.8 ms with passive waits).  These must be
# set before numpy loads BLAS and before numba starts its pool; a user's setting wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from . import threads as _threads  # noqa: E402,F401,I001  (thread policy, before the rest)

from . import draw, io, layers  # noqa: E402,F401  (pycaffe's caffe.draw, caffe.io, caffe.layers)
from .blob import Blob  # noqa: E402
from .classifier import Classifier  # noqa: E402
from .errors import NetdefError  # noqa: E402
from .layer import Layer, layer_type_list, register  # noqa: E402
from .net import TEST, TRAIN, Net  # noqa: E402
from .net_spec import NetSpec, params, to_proto  # noqa: E402
from .rng import set_random_seed  # noqa: E402
from .solvers import Solver, get_solver  # noqa: E402

__version__ = "0.1.0"


def set_mode_cpu():
    """pycaffe compatibility: netdef always runs on the CPU."""


def set_mode_gpu():
    """pycaffe compatibility: there is no GPU path; computation stays on the CPU."""


def set_device(device_id):
    """pycaffe compatibility: accepted and ignored (CPU only)."""


def SGDSolver(solver_file):  # noqa: N802  (pycaffe's names)
    return get_solver(solver_file)


NesterovSolver = AdaGradSolver = RMSPropSolver = AdaDeltaSolver = AdamSolver = SGDSolver

__all__ = ["Blob", "Classifier", "Layer", "Net", "NetSpec", "NetdefError", "Solver", "TEST",
           "TRAIN", "draw", "get_solver", "io", "layers", "params", "to_proto",
           "layer_type_list", "register", "set_device", "set_mode_cpu", "set_mode_gpu",
           "set_random_seed", "SGDSolver"]
