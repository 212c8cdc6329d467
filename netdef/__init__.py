"""netdef: Caffe, reborn in Python.  ``import netdef as caffe`` works like pycaffe."""

import os as _os

# Small machines: keep BLAS from spinning against numba's threads (measured: a LeNet
# step went from 26 to 18 ms on 2 cores).  Must be set before numpy loads BLAS.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")

from . import io  # noqa: E402,F401  (pycaffe's caffe.io)
from .blob import Blob  # noqa: E402
from .errors import NetdefError  # noqa: E402
from .layer import Layer, layer_type_list, register  # noqa: E402
from .net import TEST, TRAIN, Net  # noqa: E402
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

__all__ = ["Blob", "Layer", "Net", "NetdefError", "Solver", "TEST", "TRAIN", "get_solver",
           "layer_type_list", "register", "set_device", "set_mode_cpu", "set_mode_gpu",
           "set_random_seed", "SGDSolver"]
