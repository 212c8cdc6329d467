"""The update kernels' threaded path (segments cut into chunks) and the vectorised finite
check: the same float32 bits as the element-by-element rule, whatever the chunking."""

import numpy as np
import pytest

from netdef.kernels import update as K

F = np.float32


def buffers(n, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=n).astype(F)
    data[::97] = 0.0  # L1's sign(0) = 0
    diff = rng.normal(size=n).astype(F)
    h1 = np.abs(rng.normal(size=n)).astype(F)
    h2 = np.abs(rng.normal(size=n)).astype(F)
    return data, diff, h1, h2


def gradient(data, diff, norm, decay, l1):
    """Caffe's order in float32: diff * norm, then + decay * (sign(w) or w) unless decay is 0."""
    g = diff * F(norm)
    if decay != 0:
        g = g + F(decay) * (np.sign(data).astype(F) if l1 else data)
    return g


# one segment big enough for the threaded path, one small, one without decay
COUNTS = (K.PARALLEL_MIN + K.CHUNK // 2 + 3, 1000, 37)


@pytest.mark.parametrize("l1", [False, True])
@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_chunked_update_is_bit_exact(rule, l1):
    offsets = np.concatenate([[0], np.cumsum(COUNTS)]).astype(np.int64)
    rates = np.array([0.01, 0.02, 0.03], F)
    decays = np.array([5e-4, 1e-3, 0.0], F)
    data, diff, h1, h2 = buffers(int(offsets[-1]))
    want_data, want_diff, want_h1, want_h2 = data.copy(), diff.copy(), h1.copy(), h2.copy()
    norm, m, b2, eps, c = 0.5, F(0.9), F(0.999), F(1e-8), F(0.7)
    for s in range(len(COUNTS)):
        sl = slice(offsets[s], offsets[s + 1])
        g = gradient(want_data[sl], want_diff[sl], norm, decays[s], l1)
        if rule == "sgd":
            u = m * want_h1[sl] + rates[s] * g
            want_h1[sl] = u
        else:
            mm = m * want_h1[sl] + (F(1) - m) * g
            vv = b2 * want_h2[sl] + (F(1) - b2) * (g * g)
            want_h1[sl], want_h2[sl] = mm, vv
            u = (rates[s] * c) * (mm / (np.sqrt(vv) + eps))
        want_diff[sl] = u
        want_data[sl] -= u
    if rule == "sgd":
        K.sgd_update(data, diff, h1, offsets, rates, decays, norm, l1, m)
    else:
        K.adam_update(data, diff, h1, h2, offsets, rates, decays, norm, l1, m, b2, eps, c)
    np.testing.assert_array_equal(data, want_data)
    np.testing.assert_array_equal(diff, want_diff)
    np.testing.assert_array_equal(h1, want_h1)
    np.testing.assert_array_equal(h2, want_h2)


@pytest.mark.parametrize("n", [1, 1000, K.PARALLEL_MIN + 5])
def test_all_finite_finds_any_bad_value(n):
    x = np.random.default_rng(1).normal(size=n).astype(F)
    assert K.all_finite(x)
    x[0] = F(np.finfo(F).max)  # the largest finite value is finite
    assert K.all_finite(x)
    for where in {0, n // 2, n - 1}:
        for bad in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[where] = bad
            assert not K.all_finite(y), (n, where, bad)
