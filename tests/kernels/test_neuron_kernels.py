"""Neuron and eltwise kernels: the prange path (arrays of PARALLEL_MIN elements and
more) gives bit for bit what the plain loop gives chunk by chunk, and the
vectorisable float32 tanh stays within a few ulp of the true value."""

import numpy as np
import pytest

from netdef.kernels import eltwise as E
from netdef.kernels import neuron as K

N = K.PARALLEL_MIN + 3
f = np.float32


def chunks():
    step = K.PARALLEL_MIN // 2 + 1
    return [slice(i, min(i + step, N)) for i in range(0, N, step)]


# kernel, number of array inputs, number of float32 outputs, trailing scalars
FLAT = [
    (K.relu_forward, 1, 1, (f(0.1),)),
    (K.relu_backward, 2, 1, (f(0.1),)),
    (K.sigmoid_forward, 1, 1, ()),
    (K.sigmoid_backward, 2, 1, ()),
    (K.tanh_forward, 1, 1, ()),
    (K.tanh_backward, 2, 1, ()),
    (K.absval_forward, 1, 1, ()),
    (K.absval_backward, 2, 1, ()),
    (K.bnll_forward, 1, 1, ()),
    (K.bnll_backward, 2, 1, ()),
    (K.clip_forward, 1, 1, (f(-0.5), f(0.7))),
    (K.clip_backward, 2, 1, (f(-0.5), f(0.7))),
    (K.elu_forward, 1, 1, (f(0.7),)),
    (K.elu_backward, 3, 1, (f(0.7),)),
    (K.exp_forward, 1, 1, (f(0.3), f(1.2))),
    (K.exp_backward, 2, 1, (f(0.3),)),
    (K.log_forward, 1, 1, (f(2), f(5), f(0.4))),
    (K.log_backward, 2, 1, (f(2), f(5), f(0.8))),
    (K.power_forward, 1, 1, (f(1.5), f(0.5), f(3))),
    (K.power_backward, 3, 1, (f(1.5), f(0.5), f(3))),
    (K.power_backward, 3, 1, (f(1.5), f(0.5), f(0))),
    (K.square_backward, 2, 1, (f(2), f(0.5))),
    (K.scale_backward, 1, 1, (f(3),)),
    (K.swish_forward, 1, 2, (f(1.5),)),
    (K.swish_backward, 3, 1, (f(1.5),)),
    (K.threshold_forward, 1, 1, (f(0.2),)),
    (K.dropout_forward, 2, 1, (f(0.3), f(1 / 0.7))),
    (K.dropout_backward, 2, 1, (f(0.3), f(1 / 0.7))),
    (E.mul, 2, 1, ()),
    (E.div, 2, 1, ()),
]


@pytest.mark.parametrize("kernel,n_in,n_out,scalars", FLAT,
                         ids=[f"{k.__name__}-{i}" for i, (k, *_) in enumerate(FLAT)])
def test_parallel_path_matches_serial_loop(kernel, n_in, n_out, scalars):
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(N).astype(np.float32) for _ in range(n_in)]
    whole = [np.zeros(N, np.float32) for _ in range(n_out)]
    pieces = [np.zeros(N, np.float32) for _ in range(n_out)]
    with np.errstate(all="ignore"):
        kernel(*inputs, *whole, *scalars)
        for s in chunks():
            kernel(*[a[s] for a in inputs], *[o[s] for o in pieces], *scalars)
    for w, p in zip(whole, pieces):
        np.testing.assert_array_equal(w, p)


def test_parallel_scale_axpy_and_max():
    rng = np.random.default_rng(1)
    a, b, c = (rng.standard_normal(N).astype(np.float32) for _ in range(3))
    out = np.empty(N, np.float32)
    E.scale(f(2.5), a, out)
    np.testing.assert_array_equal(out, f(2.5) * a)
    E.axpy(f(-1.5), b, out)
    np.testing.assert_array_equal(out, f(2.5) * a + f(-1.5) * b)
    arg = np.empty(N, np.int32)
    E.max_first(a, b, out, arg)
    E.max_next(c, 2, out, arg)
    np.testing.assert_array_equal(out, np.maximum(np.maximum(a, b), c))
    np.testing.assert_array_equal(arg, np.argmax(np.stack([a, b, c]), axis=0))
    dx = np.empty(N, np.float32)
    E.max_backward(a, arg, 2, dx)
    np.testing.assert_array_equal(dx, np.where(arg == 2, a, 0))


def channel_case(seed, shape=(4, 3, K.PARALLEL_MIN // 12 + 5)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    v = rng.standard_normal(shape[1]).astype(np.float32)
    return x, dy, v


def test_parallel_channel_kernels():
    x, dy, v = channel_case(2)
    y = np.empty_like(x)
    E.channel_add(x, v, y)
    np.testing.assert_array_equal(y, x + v[:, None])
    E.channel_mul(x, v, y)
    np.testing.assert_array_equal(y, x * v[:, None])
    E.channel_mul_add(x, v, v, y)
    np.testing.assert_array_equal(y, x * v[:, None] + v[:, None])
    sums = np.ones(3, np.float32)
    E.channel_sum(dy, sums, True)
    np.testing.assert_allclose(sums, dy.astype(np.float64).sum(axis=(0, 2)) + 1, rtol=1e-6)
    E.channel_dot(dy, x, sums, False)
    np.testing.assert_allclose(sums, (dy.astype(np.float64) * x).sum(axis=(0, 2)), rtol=1e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_parallel_prelu_matches_reference(shared):
    x, dy, slope = channel_case(3)
    if shared:
        slope = slope[:1]
    a = slope[0] if shared else slope[:, None]
    y = np.empty_like(x)
    K.prelu_forward(x, y, slope, shared)
    np.testing.assert_array_equal(y, np.where(x > 0, x, a * x))
    dx = np.empty_like(x)
    dslope = np.zeros_like(slope)
    K.prelu_backward(x, dy, dx, slope, dslope, shared, True, True)
    np.testing.assert_array_equal(dx, np.where(x > 0, dy, a * dy))
    per_channel = np.where(x > 0, 0, dy.astype(np.float64) * x).sum(axis=(0, 2))
    want = per_channel.sum(keepdims=True) if shared else per_channel
    np.testing.assert_allclose(dslope, want, rtol=1e-5)


def test_tanh32_accuracy():
    x = np.concatenate([
        np.linspace(-12, 12, 200001), np.geomspace(1e-30, 10, 20001),
        -np.geomspace(1e-30, 10, 20001), [0.0, 3.9e-4, 4.1e-4, 7.9, 8.0, 1e30, -1e30],
    ]).astype(np.float32)
    y = np.empty_like(x)
    K.tanh_forward(x, y)
    want = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(y - want) / ulp) < 8
    special = np.array([np.inf, -np.inf, np.nan], np.float32)
    out = np.empty_like(special)
    K.tanh_forward(special, out)
    np.testing.assert_array_equal(out[:2], [1, -1])
    assert np.isnan(out[2])
