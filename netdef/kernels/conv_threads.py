"""Running the blocked convolution's parts on all cores, one BLAS thread each.

The blocked route runs one worker thread per core; the workers draw chunks of images
from a shared queue and process each with serial numba kernels (which release the GIL,
as numpy's GEMM does), so each core keeps its own chunk in its own L2 cache and the
cores never wait for each other inside a pass.  While those threads run, OpenBLAS must not
start its own threads per call, so its thread count is set to 1 for the duration
(OpenBLAS keeps one process-wide count: its "thread-local" setter is global too) and
restored afterwards.  Only numpy's bundled OpenBLAS is recognised; with another BLAS,
or a single core, the parts run one after another in the calling thread.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from ..threads import numpy_openblas

_FOUND = numpy_openblas()
_BLAS = None if _FOUND is None else _FOUND[1:]     # (get, set) of its thread count
_POOL = [None, 0]      # the executor and its size, made at first use
_LOCK = threading.Lock()


def _forget_pool():
    """In a forked child the parent's worker threads do not exist: start afresh."""
    global _LOCK
    _POOL[:] = [None, 0]
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def worker_count():
    """How many parts a pass is split into: numba's thread count (the netdef thread
    policy), when the BLAS thread count can be controlled; else 1."""
    if _BLAS is None:
        return 1
    import numba

    return max(1, int(numba.config.NUMBA_NUM_THREADS))


def run_parts(fn, parts):
    """fn(0), ..., fn(parts - 1), concurrently when parts > 1 (BLAS single-threaded
    meanwhile); exceptions propagate."""
    if parts <= 1:
        fn(0)
        return
    with _LOCK:     # one pass at a time: the BLAS setting is process-wide
        if _POOL[1] < parts:
            _POOL[:] = [ThreadPoolExecutor(max_workers=parts - 1,
                                           thread_name_prefix="netdef-conv"), parts]
        get, put = _BLAS
        saved = get()
        if saved != 1:
            put(1)
        try:
            futures = [_POOL[0].submit(fn, p) for p in range(1, parts)]
            try:
                fn(0)
            finally:
                errors = [f.exception() for f in futures]
            for e in errors:
                if e is not None:
                    raise e
        finally:
            if saved != 1:
                put(saved)
