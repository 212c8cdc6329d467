"""``netdef device_query``: Caffe's tool; netdef computes on the CPU, so it describes that."""

HELP = "show the compute device (netdef runs on the CPU) and its thread settings"


def add_arguments(p):
    p.add_argument("--gpu", default=None, help="accepted for compatibility")


def run(args):
    import os

    import numba
    import numpy as np

    print(f"Device: CPU ({os.cpu_count()} logical cores)")
    print(f"numpy {np.__version__}, numba {numba.__version__} "
          f"(threading layer: {numba.config.THREADING_LAYER}, "
          f"threads: {numba.config.NUMBA_NUM_THREADS})")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                "OPENBLAS_CORETYPE"):
        print(f"{var}={os.environ.get(var, '(unset)')}")
    return 0
