"""Refuse allocations the machine cannot hold before making them.

A net whose shapes ask for terabytes should fail at once with the figures, not after
the operating system has started swapping or killing processes.  The budget is the
smaller of the memory the kernel reports as available and what the address-space limit
(``ulimit -v``) still allows.
"""

import os
import resource
import sys
import threading

from .errors import MemoryLimitError


def available_bytes():
    """Bytes this process can still allocate, or None when that cannot be told."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError):
        pass
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(max(soft - _address_space_bytes(), 0))
    return min(limits) if limits else None


def _address_space_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def human(nbytes):
    """1536 -> '1.5 KiB'."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.3g} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.3g} EiB"


_SMALL = 64 << 20
_running = threading.local()


def begin_estimate(what, depth=0):
    """Start adding up the blob allocations of ``what`` (a net being built).

    Fresh zeroed buffers cost nothing until touched, so each blob on its own can fit
    while all of them together cannot; the running total is held against the memory
    that was available when the build began.  The estimate lasts while the caller
    (``depth`` > 0: the function that many frames further up) is still running."""
    frame = sys._getframe(depth + 1)
    _running.frame = (id(frame), frame.f_code)
    _running.what = what
    _running.total = 0
    _running.free = available_bytes()


def _building():
    """True while the build that began the estimate is still on this thread's stack."""
    marker = getattr(_running, "frame", None)
    if marker is None:
        return False
    frame = sys._getframe(2)
    while frame is not None:
        if id(frame) == marker[0] and frame.f_code is marker[1]:
            return True
        frame = frame.f_back
    _running.frame = None  # that build is over: later allocations stand alone
    return False


def check_allocation(nbytes, what):
    """Raise MemoryLimitError naming ``what`` when ``nbytes`` exceeds what is available,
    or when the running total of the net being built does."""
    total = None
    if _building():
        total = _running.total = _running.total + nbytes
    if nbytes < _SMALL and (total is None or total < _SMALL):
        return  # small requests are never the problem; skip the lookup
    free = available_bytes()
    if free is not None and nbytes > free:
        raise MemoryLimitError(f"{what} needs {human(nbytes)} ({nbytes:,} bytes) but only "
                               f"{human(free)} of memory is available")
    budget = _running.free if total is not None else None
    if budget is not None and total > budget:
        raise MemoryLimitError(f"{_running.what} needs at least {human(total)} for its blobs "
                               f"(data + diff, reached at {what}) but only {human(budget)} "
                               "of memory is available")
