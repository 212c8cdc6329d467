"""Background batch loading, as Caffe's BasePrefetchingDataLayer.

A daemon thread fills ``Batch`` buffers a few ahead of the net (``depth`` of them cycle
between a free and a full queue, so nothing is allocated per batch once shapes settle).
The loader runs numba kernels with the GIL released and Pillow decodes without it, so
reading overlaps the net's compute.  An exception in the thread is handed to the consumer
and raised there, with its message; ``stop()`` (called when the owning layer goes away or
the interpreter exits) ends the thread cleanly.
"""

import atexit
import concurrent.futures
import math
import os
import queue
import threading
import weakref

import numpy as np

from ..errors import DataError, NetdefError


class Batch:
    """Reusable (data, label) arrays; ``reshape`` reallocates only to grow."""

    __slots__ = ("data", "label", "_data_buf", "_label_buf")

    def __init__(self):
        self._data_buf = np.zeros(0, np.float32)
        self._label_buf = np.zeros(0, np.float32)
        self.data = self._data_buf
        self.label = self._label_buf

    def reshape(self, data_shape, label_shape=None):
        self.data, self._data_buf = _view(self._data_buf, data_shape)
        if label_shape is not None:
            self.label, self._label_buf = _view(self._label_buf, label_shape)


def _view(buf, shape):
    n = math.prod(shape)
    if n > buf.size:
        buf = np.empty(n, np.float32)
    return buf[:n].reshape(shape), buf


class _Failure:
    def __init__(self, exc):
        self.exc = exc


_live = weakref.WeakSet()


class Prefetcher:
    """Run ``load(batch)`` in a daemon thread over ``depth`` recycled batches.

    ``load`` must not hold a reference to the object that owns the prefetcher, so that the
    owner can be collected (its finalizer calls ``stop``).
    """

    def __init__(self, load, depth=4, name="prefetch"):
        self._free = queue.Queue()
        self._full = queue.Queue()
        for _ in range(max(1, int(depth))):
            self._free.put(Batch())
        self._stop = threading.Event()
        self._failure = None
        self._current = None
        self._thread = threading.Thread(target=_worker, name=name, daemon=True,
                                        args=(load, self._free, self._full, self._stop))
        self._thread.start()
        _live.add(self)

    def next(self):
        """The next full batch (the previous one is recycled); re-raises loader errors."""
        if self._current is not None:
            self._free.put(self._current)
            self._current = None
        if self._failure is not None:
            _reraise(self._failure)
        while True:
            try:
                item = self._full.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    raise DataError("the data prefetch thread stopped") from None
        if isinstance(item, _Failure):
            self._failure = item.exc
            _reraise(item.exc)
        self._current = item
        return item

    def stop(self, timeout=2.0):
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self):
        return self._thread.is_alive()


def _reraise(exc):
    if isinstance(exc, NetdefError):
        raise type(exc)(str(exc)) from exc
    raise DataError(f"{type(exc).__name__}: {exc}") from exc


def _worker(load, free, full, stop):
    while not stop.is_set():
        try:
            batch = free.get(timeout=0.1)
        except queue.Empty:
            continue
        try:
            load(batch)
        except BaseException as exc:  # handed to the consumer, raised in forward
            full.put(_Failure(exc))
            return
        if stop.is_set():
            return
        full.put(batch)


class SyncLoader:
    """The same interface without a thread (``prefetch: 0``, or for debugging)."""

    def __init__(self, load):
        self._load = load
        self._batch = Batch()

    def next(self):
        self._load(self._batch)
        return self._batch

    def stop(self, timeout=None):
        pass

    running = False


def make_loader(load, depth, name="prefetch"):
    return Prefetcher(load, depth, name) if depth > 0 else SyncLoader(load)


# -- batches as a pure function of (seed, index), for resumable runs -----------------------
def batch_rng(seed, index):
    """The generator of batch ``index`` of a layer whose stream is seeded with ``seed``."""
    return np.random.default_rng([seed, index])


class IndexedLoad:
    """``load(batch)`` for batches k = 0, 1, 2, ... where batch k depends on (seed, k) only.

    A prefetch thread reads ahead, so a layer's generator state says nothing about the
    batch the net last consumed.  Here every batch gets its own generator
    ``batch_rng(seed, k)`` (handed to each object of ``rng_users`` as its ``rng`` before
    loading), and ``position(k)`` puts the record cursor where batch k starts.  Resuming
    at batch k is then ``seek(k)`` before (re)starting the thread.  ``position`` runs in
    the loading thread; it is called before the first batch only when ``start_seek``
    (e.g. a ``rand_skip`` to apply), and after every ``seek``.
    """

    def __init__(self, load, seed, rng_users=(), position=None, start_seek=False):
        self.load = load
        self.seed = int(seed)
        self.rng_users = list(rng_users)
        self.position = position
        self.next_index = 0
        self._seek_pending = bool(start_seek and position is not None)

    def seek(self, index):
        """The next call loads batch ``index``."""
        self.next_index = int(index)
        self._seek_pending = self.position is not None

    def __call__(self, batch):
        k = self.next_index
        if self._seek_pending:
            self.position(k)
            self._seek_pending = False
        rng = batch_rng(self.seed, k)
        for user in self.rng_users:
            user.rng = rng
        self.load(batch)
        self.next_index = k + 1


@atexit.register
def _stop_all():
    for p in list(_live):
        p.stop(timeout=0.5)


# -- a small shared pool for decoding encoded images in parallel -------------------------
_pool = None
_pool_lock = threading.Lock()


def decode_pool():
    """Threads for per-image work (Pillow decode and numba kernels release the GIL)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = max(1, min(8, (os.cpu_count() or 2)))
            _pool = concurrent.futures.ThreadPoolExecutor(workers,
                                                          thread_name_prefix="netdef-decode")
        return _pool
