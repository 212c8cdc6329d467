"""Seeding: one SeedSequence feeds every Net, and each layer gets its own child stream.

A child stream per layer keeps runs reproducible even when a data layer draws numbers in
its prefetch thread while Dropout draws in the main thread.
"""

import numpy as np

_root = np.random.SeedSequence()


def set_random_seed(seed):
    """As pycaffe's ``caffe.set_random_seed``: later Nets draw from this seed."""
    global _root
    _root = np.random.SeedSequence(int(seed))


def next_seed_sequence():
    return _root.spawn(1)[0]


def child_rng(seed_seq):
    """A new Generator on the next child of ``seed_seq``."""
    return np.random.default_rng(seed_seq.spawn(1)[0])
