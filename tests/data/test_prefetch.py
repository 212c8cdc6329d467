"""The prefetch thread: batches in order, errors raised in the consumer, clean stop."""

import threading
import time

import numpy as np
import pytest

from netdef.data.prefetch import Batch, Prefetcher, SyncLoader
from netdef.errors import DataError


class Counter:
    def __init__(self, fail_at=None):
        self.n = 0
        self.fail_at = fail_at

    def __call__(self, batch):
        if self.n == self.fail_at:
            raise DataError(f"record 'k{self.n}' is broken")
        batch.reshape((2, 3), (2,))
        batch.data[...] = self.n
        batch.label[...] = -self.n
        self.n += 1


def test_batches_arrive_in_order_and_buffers_are_reused():
    p = Prefetcher(Counter(), depth=3)
    seen, buffers = [], set()
    for _ in range(10):
        b = p.next()
        seen.append(float(b.data[0, 0]))
        buffers.add(id(b))
    assert seen == list(range(10))
    assert len(buffers) <= 3
    assert p._thread.daemon
    p.stop()
    assert not p.running


def test_error_in_thread_is_raised_with_its_message_every_time():
    p = Prefetcher(Counter(fail_at=2), depth=2)
    p.next()
    p.next()
    for _ in range(2):
        with pytest.raises(DataError, match="record 'k2' is broken"):
            p.next()
    assert not p.running


def test_foreign_exceptions_become_data_errors():
    def boom(batch):
        raise ValueError("bad value")
    p = Prefetcher(boom)
    with pytest.raises(DataError, match="ValueError: bad value"):
        p.next()


def test_stop_ends_a_thread_blocked_on_a_full_queue():
    p = Prefetcher(Counter(), depth=2)
    time.sleep(0.05)
    before = threading.active_count()
    p.stop()
    assert not p.running and threading.active_count() == before - 1


def test_batch_reshape_grows_only():
    b = Batch()
    b.reshape((4, 5), (4,))
    buf = b._data_buf
    b.reshape((2, 5), (2,))
    assert b._data_buf is buf and b.data.shape == (2, 5)
    b.reshape((10, 5))
    assert b._data_buf is not buf


def test_sync_loader():
    s = SyncLoader(Counter())
    assert np.all(s.next().data == 0) and np.all(s.next().data == 1)
