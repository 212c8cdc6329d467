"""The solver update kernels against plain NumPy references, over several segments of one
flat buffer with their own rates and decays (what the Solver hands them)."""

import numpy as np
import pytest

from netdef.kernels import update as K

OFFSETS = np.array([0, 6, 7, 19], np.int64)  # three parameters: 6, 1 and 12 values
RATES = np.array([0.1, 0.2, 0.0], np.float32)
DECAYS = np.array([0.01, 0.0, 0.05], np.float32)


def arrays(seed=0, n=19):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=n).astype(np.float32)
    data[3] = 0.0  # L1's sign(0) = 0
    diff = rng.normal(size=n).astype(np.float32)
    h1 = np.abs(rng.normal(size=n)).astype(np.float32)
    h2 = np.abs(rng.normal(size=n)).astype(np.float32)
    return data, diff, h1, h2


def prepared(data, diff, norm, l1):
    """Per segment: g = diff * norm + decay * (sign(w) or w), in float64."""
    g = diff.astype(np.float64) * norm
    rate = np.zeros_like(g)
    for s in range(len(OFFSETS) - 1):
        a, b = OFFSETS[s], OFFSETS[s + 1]
        reg = np.sign(data[a:b]) if l1 else data[a:b]
        g[a:b] += DECAYS[s] * reg
        rate[a:b] = RATES[s]
    return g, rate


def reference(kind, data, diff, h1, h2, norm, l1, p):
    g, r = prepared(data, diff, norm, l1)
    h1, h2 = h1.astype(np.float64), h2.astype(np.float64)
    if kind == "sgd":
        h1 = p["m"] * h1 + r * g
        u = h1
    elif kind == "nesterov":
        old = h1
        h1 = p["m"] * h1 + r * g
        u = (1 + p["m"]) * h1 - p["m"] * old
    elif kind == "adagrad":
        h1 = h1 + g * g
        u = r * g / (np.sqrt(h1) + p["delta"])
    elif kind == "rmsprop":
        h1 = p["decay"] * h1 + (1 - p["decay"]) * g * g
        u = r * g / (np.sqrt(h1) + p["delta"])
    elif kind == "adadelta":
        h1 = (1 - p["m"]) * g * g + p["m"] * h1
        step = g * np.sqrt((h2 + p["delta"]) / (h1 + p["delta"]))
        h2 = (1 - p["m"]) * step * step + p["m"] * h2
        u = r * step
    else:  # adam
        h1 = p["b1"] * h1 + (1 - p["b1"]) * g
        h2 = p["b2"] * h2 + (1 - p["b2"]) * g * g
        u = r * p["c"] * h1 / (np.sqrt(h2) + p["eps"])
    return data - u, u, h1, h2


P = {"m": 0.9, "delta": 1e-3, "decay": 0.95, "b1": 0.9, "b2": 0.99, "eps": 1e-6, "c": 0.7}


def run(kind, data, diff, h1, h2, norm, l1):
    tail = (OFFSETS, RATES, DECAYS, norm, l1)
    if kind == "sgd":
        K.sgd_update(data, diff, h1, *tail, P["m"])
    elif kind == "nesterov":
        K.nesterov_update(data, diff, h1, *tail, P["m"])
    elif kind == "adagrad":
        K.adagrad_update(data, diff, h1, *tail, P["delta"])
    elif kind == "rmsprop":
        K.rmsprop_update(data, diff, h1, *tail, P["decay"], P["delta"])
    elif kind == "adadelta":
        K.adadelta_update(data, diff, h1, h2, *tail, P["m"], P["delta"])
    else:
        K.adam_update(data, diff, h1, h2, *tail, P["b1"], P["b2"], P["eps"], P["c"])


@pytest.mark.parametrize("l1", [False, True])
@pytest.mark.parametrize("kind", ["sgd", "nesterov", "adagrad", "rmsprop", "adadelta", "adam"])
def test_kernel_matches_numpy(kind, l1):
    data, diff, h1, h2 = arrays()
    want = reference(kind, data, diff, h1, h2, 0.5, l1, P)
    run(kind, data, diff, h1, h2, 0.5, l1)
    tol = dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data, want[0], **tol)
    np.testing.assert_allclose(diff, want[1], **tol)  # the update is left in the diff
    np.testing.assert_allclose(h1, want[2], **tol)
    if kind in ("adadelta", "adam"):
        np.testing.assert_allclose(h2, want[3], **tol)


def test_all_finite():
    x = np.ones(5, np.float32)
    assert K.all_finite(x)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[3] = bad
        assert not K.all_finite(y)
    assert K.all_finite(np.zeros(0, np.float32))
