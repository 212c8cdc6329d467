"""Thread policy: how many threads BLAS and numba get, and which numba threading layer.

Decided once, when this module is first imported (``import netdef`` does it first),
through environment defaults (a value the user set always wins), because OpenBLAS
reads its thread count and wait when numpy loads it and numba fixes its pool size when
the first parallel kernel starts.  Where numpy came first, the BLAS part is applied to the
loaded OpenBLAS instead (``adopt_loaded_openblas``).

Measured (docs/performance.md) on 2 cores: with the machine to itself, BLAS and numba
on both cores trained LeNet at 1.87x PyTorch and CIFAR10-quick at 0.72x, against 1.10x
and 0.59x with one BLAS thread.  When other processes compete for the cores, OpenBLAS's
threads spin waiting for a core and the same setting runs 3-5x slower than one BLAS
thread.  netdef is normally the only heavy process (training is what the machine is
for), so the default uses every core; ``NETDEF_SHARED_CPU=1`` (or exporting
``OPENBLAS_NUM_THREADS=1``) picks the contention-proof policy -- the test suite, which
runs two workers on two cores, uses it.  Both pools sleep when idle (OpenBLAS's thread
timeout, passive OpenMP waits), so they take turns rather than fight: the GEMMs and the
glue kernels never run at the same time.

Numba's threading layer is OpenMP when numba can load it (a parallel region starts in
3-5 us while its workers are awake, against ~50 us for TBB and ~120 us for the workqueue;
netdef launches many short kernels), else whatever numba picks.  Passive waits make every
region wake its sleeping workers first, 15-100 us on the measured VM, so kernels run their
parallel loops on one thread below ``kernels.gate.PARALLEL_MIN`` work.
"""

import ctypes
import glob
import os
import sys

# OpenBLAS's worker waits 2^20 cycles (~0.35 ms) for the next GEMM before it sleeps: long
# enough to span the glue kernels between the GEMMs of one forward (GoogLeNet b1: 35.1 vs
# 39.5 ms, mean of eight adjacent pairs against 2^1), short enough to be asleep through
# numba's parallel phases in training (LeNet b64 17.8 vs 18.2 ms, CIFAR10-quick b100 65.0
# vs 67.0 ms a step); 2^24 (~6 ms) made LeNet training 10-25% slower.
BLAS_THREAD_TIMEOUT = "20"


def available_cpus():
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(cpus, shared=False):
    """(BLAS threads, numba threads) for ``cpus`` usable cores; ``shared``: other busy
    processes compete for them."""
    cpus = max(1, int(cpus))
    return (1, cpus) if shared else (cpus, cpus)


def configure_environment(environ=None):
    """Set the thread defaults in ``environ`` (os.environ); call before numpy loads.
    Returns the names it set (the ones the user had not)."""
    env = os.environ if environ is None else environ
    before = set(env)
    # Idle pool threads must sleep, not spin, or the two pools steal each other's cores
    # (a LeNet b64 forward took 31-40 ms with both spinning, 6.8 ms with passive waits).
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", BLAS_THREAD_TIMEOUT)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    shared = env.get("NETDEF_SHARED_CPU", "").strip().lower() in ("1", "true", "yes", "on")
    blas, numba_threads = default_threads(available_cpus(), shared)
    if "OMP_NUM_THREADS" not in env:        # OpenBLAS falls back to OMP_NUM_THREADS
        env.setdefault("OPENBLAS_NUM_THREADS", str(blas))
    env.setdefault("NUMBA_NUM_THREADS", str(numba_threads))
    if "NUMBA_THREADING_LAYER" not in env:
        _prefer_omp()
    return set(env) - before


def _prefer_omp():
    """Make OpenMP numba's threading layer when it loads (numba reads its own
    environment when imported, so this sets numba's config; the pool starts later)."""
    try:
        import numba
        from numba.np.ufunc import omppool  # noqa: F401
    except Exception:
        return
    numba.config.THREADING_LAYER = "omp"


def numpy_openblas():
    """numpy's bundled OpenBLAS as (library, get_num_threads, set_num_threads), or None
    (another BLAS).  Imports numpy: call it once numpy is loaded or may be."""
    import numpy as np

    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)     # numpy loaded it already: the same library
        except OSError:
            continue
        for prefix, suffix in (("scipy_", "64_"), ("scipy_", "_"), ("", "")):
            get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                return lib, get, put
    return None


def adopt_loaded_openblas(set_here, environ=None):
    """Apply the policy to an OpenBLAS that numpy loaded before ``import netdef``.

    OpenBLAS reads its settings once, when it loads: a script that imports numpy first
    (most pycaffe scripts do) kept OpenBLAS's own wait, 2^28 cycles (~0.1 s) of its idle
    worker spinning after every GEMM, which took the core from the numba kernels between
    the GEMMs (CaffeNet b1 forward 10-15% slower; docs/performance.md).  So, for the
    settings netdef chose (``set_here``; a user's own value stays): re-read the environment
    and stop the workers, as OpenBLAS itself does in a forked child -- the next threaded
    call starts them with the new wait -- and set the thread count.  Returns whether
    anything was applied.
    """
    env = os.environ if environ is None else environ
    found = numpy_openblas()
    if found is None:
        return False
    lib, get, put = found
    applied = False
    read_env = getattr(lib, "openblas_read_env", None)
    shutdown = getattr(lib, "blas_thread_shutdown_", None)
    if "OPENBLAS_THREAD_TIMEOUT" in set_here and read_env is not None \
            and shutdown is not None:
        read_env.restype, read_env.argtypes = None, []
        shutdown.restype, shutdown.argtypes = ctypes.c_int, []
        read_env()
        shutdown()
        applied = True
    if "OPENBLAS_NUM_THREADS" in set_here:
        want = int(env["OPENBLAS_NUM_THREADS"])
        if get() != want:
            put(want)
            applied = True
    return applied


def describe():
    """The effective settings, for benchmarks and bug reports."""
    import numba

    return {"cpus": available_cpus(),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"),
            "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
            "numba_threading_layer": numba.config.THREADING_LAYER}


_SET_HERE = configure_environment()
if "numpy" in sys.modules:      # too late for the environment: apply it to the loaded BLAS
    adopt_loaded_openblas(_SET_HERE)
