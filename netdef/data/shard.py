"""Data sharding for data-parallel training: record i of an epoch goes to rank i mod N.

The data layers of a TRAIN net read ``current(layer)`` in ``setup``.  Outside a
data-parallel run it is None and nothing changes.  ``netdef.parallel`` sets the shard
before the solver builds its nets, as Caffe's multi-GPU DataLayer skips every record whose
offset modulo the solver count is not its rank.

The global record stream of a layer is what one process would read; rank r of N reads
stream positions r, r + N, r + 2N, ...  So batch k of rank r (batch size B) holds stream
positions (kB + j) N + r, j < B, and the ranks' batch k together are exactly the records
of batch k of one process with batch size N B.  Shuffles permute the stream per epoch
before it is dealt out, so each record still goes to exactly one rank per epoch; that
needs the permutation (and ``rand_skip``) to be the same on every rank, hence
``order_rng``, which draws from a seed shared by all ranks instead of the layer's own
(per-rank) generator.
"""

import zlib

import numpy as np

_shard = None


class Shard:
    """This process's share of every TRAIN data stream: ``rank`` of ``size``; ``seed`` is
    the same on every rank (it orders shuffles)."""

    def __init__(self, rank, size, seed):
        if not 0 <= int(rank) < int(size):
            raise ValueError(f"shard rank {rank} is not in [0, {size})")
        self.rank, self.size, self.seed = int(rank), int(size), int(seed)

    def order_rng(self, layer):
        """A generator for the layer's record order, identical on every rank."""
        name = zlib.crc32(layer.layer_param.name.encode("utf-8"))
        return np.random.default_rng([self.seed, name])

    def reader(self, reader):
        return ShardedReader(reader, self.rank, self.size)

    def __repr__(self):
        return f"Shard(rank={self.rank}, size={self.size})"


def set_shard(rank, size, seed=0):
    """Deal TRAIN data out to ``size`` ranks from now on (this process is ``rank``);
    ``size`` 1 turns sharding off.  Affects data layers set up afterwards."""
    global _shard
    _shard = Shard(rank, size, seed) if int(size) > 1 else None
    return _shard


def clear_shard():
    global _shard
    _shard = None


def current(layer=None):
    """The shard a data layer must read (None: all records), given its phase: only TRAIN
    nets are sharded (rank 0 alone runs the test nets, on all of their data)."""
    if _shard is None or (layer is not None and layer.phase != 0):
        return None
    return _shard


class ShardedReader:
    """A database cursor showing every ``size``-th record, from record ``rank``: its record
    j is record j * size + rank of ``reader`` (which wraps around at its end)."""

    def __init__(self, reader, rank, size):
        self.reader, self.rank, self.size = reader, int(rank), int(size)

    def __len__(self):
        return len(self.reader)

    def first(self):
        return self.reader.first()

    def next(self):
        item = self.reader.next()
        self.reader.skip(self.size - 1)
        return item

    def skip(self, n):
        self.reader.skip(int(n) * self.size)

    def seek(self, index):
        self.reader.seek(int(index) * self.size + self.rank)

    def close(self):
        self.reader.close()
