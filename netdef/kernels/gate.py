"""When a parallel loop is worth its threads: the one rule for netdef's ``prange`` kernels.

numba's OpenMP workers wait passively (the thread policy in netdef/threads.py), so every
parallel region first wakes them, which on the measured 2-core VM costs 15-100 us and
varies from minute to minute (docs/performance.md, ``benchmarks/bench_gate.py``): a bias +
ReLU pass over 262k floats ran 1.2x faster on two threads in one run and 2x slower in the
next, and two threads only won in every run from ~4M floats.  A batch-1 GoogLeNet forward
starts ~150 regions, most of them over less than that.  So a kernel whose work is below
``PARALLEL_MIN`` (a pass over 512k floats: ~0.2-0.3 ms on one core) runs its ``prange``
loops on the calling thread alone:

    saved = one_thread_below(work)
    for i in prange(n):
        ...
    set_num_threads(saved)

``work`` counts the floats a plain pass over the kernel's data would move (read +
written); kernels that compute more per float scale it up.  Element-wise kernels in
neuron.py / eltwise.py pick between a ``range`` and a ``prange`` copy of their loop by
comparing their element count with the same constant.

The thread count is numba's per-thread setting, reached through the symbols its
threading layer registers when it starts, which it does before it compiles or loads any
parallel kernel -- the only kind that calls these.  (``numba.set_num_threads`` inside a
kernel would hold ctypes pointers, and numba refuses to cache kernels that do; starting
the layer at import instead would make a fork after ``import netdef`` unsafe.)
"""

from numba import config, njit, types

PARALLEL_MIN = 1 << 20

if config.DISABLE_JIT:      # kernels run as plain Python (a debugging mode): nothing to gate
    def _get_threads():
        return 1

    def _set_threads(count):
        pass
else:   # the signatures numba itself declares them with (parallel loops call the first)
    _get_threads = types.ExternalFunction("get_num_threads", types.intp())
    _set_threads = types.ExternalFunction("set_num_threads", types.void(types.intc))


@njit(cache=True, nogil=True, inline="always")
def one_thread_below(work):
    """Restrict the calling thread's numba parallel loops to one thread when ``work`` <
    PARALLEL_MIN; returns the thread count to restore with ``set_num_threads``."""
    saved = _get_threads()
    if work < PARALLEL_MIN:
        _set_threads(1)
    return saved


@njit(cache=True, nogil=True, inline="always")
def set_num_threads(count):
    """Set the calling thread's numba thread count (what ``one_thread_below`` returned)."""
    _set_threads(count)
