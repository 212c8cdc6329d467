"""Thread policy: how many threads BLAS and numba get, and which numba threading layer.

Decided once, when this module is first imported (``import netdef`` does it first),
through environment defaults (a value the user set always wins), because OpenBLAS
reads its thread count when numpy loads it and numba fixes its pool size when the
first parallel kernel starts.

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

import os

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
    """Set the thread defaults in ``environ`` (os.environ); call before numpy loads."""
    env = os.environ if environ is None else environ
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


def _prefer_omp():
    """Make OpenMP numba's threading layer when it loads (numba reads its own
    environment when imported, so this sets numba's config; the pool starts later)."""
    try:
        import numba
        from numba.np.ufunc import omppool  # noqa: F401
    except Exception:
        return
    numba.config.THREADING_LAYER = "omp"


def describe():
    """The effective settings, for benchmarks and bug reports."""
    import numba

    return {"cpus": available_cpus(),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"),
            "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
            "numba_threading_layer": numba.config.THREADING_LAYER}


configure_environment()
