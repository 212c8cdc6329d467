"""ReLU and Dropout kernels: in-place calls (their own loops) give the out-of-place bits,
on both the serial and the threaded path, with Caffe's arithmetic (sign of zero, NaN)."""

import numpy as np
import pytest

from netdef.kernels import neuron as K
from netdef.kernels import pooling as KP

F = np.float32
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN and inf inputs
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.5, 1e-40, -1e-40], F)


def values(n, seed=0):
    x = np.random.default_rng(seed).standard_normal(n).astype(F)
    x[: SPECIAL.size] = SPECIAL
    return x


def same_bits(a, b):
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("n", [SPECIAL.size, K.PARALLEL_MIN + 3])
@pytest.mark.parametrize("slope", [0.0, 0.25])
def test_relu_in_place_matches_caffe(n, slope):
    x = values(n)
    s = F(slope)
    # Caffe: max(x, 0) + slope * min(x, 0) with std::max/min (NaN passes through)
    want = np.where(x < 0, F(0), x) + s * np.where(F(0) < x, F(0), x)
    y = np.empty_like(x)
    K.relu_forward(x, y, s)
    same_bits(y, want)
    z = x.copy()
    K.relu_forward(z, z, s)
    same_bits(z, want)
    dy = values(n, 1)
    # Caffe: dy * ((x > 0) + slope * (x <= 0))
    want_dx = dy * ((x > 0).astype(F) + s * (x <= 0).astype(F))
    dx = np.empty_like(x)
    K.relu_backward(x, dy, dx, s)
    same_bits(dx, want_dx)
    K.relu_backward(x, dy, dy, s)
    same_bits(dy, want_dx)


def test_relu_zero_slope_gives_positive_zero():
    x = np.array([-3.0, -0.0, 2.0], F)
    K.relu_forward(x, x, F(0))
    assert not np.signbit(x[0]) and np.signbit(x[1]) and x[2] == 2.0


@pytest.mark.parametrize("n", [SPECIAL.size, K.PARALLEL_MIN + 3])
def test_dropout_in_place_matches_caffe(n):
    x = values(n)
    u = np.random.default_rng(2).random(n, dtype=F)
    ratio, scale = F(0.5), F(2.0)
    want = x * (u >= ratio).astype(F) * scale  # Caffe: x * mask * scale
    y = np.empty_like(x)
    K.dropout_forward(x, u, y, ratio, scale)
    same_bits(y, want)
    K.dropout_forward(x, u, x, ratio, scale)
    same_bits(x, want)
    dy = values(n, 3)
    want_dx = dy * (u >= ratio).astype(F) * scale
    dx = np.empty_like(dy)
    K.dropout_backward(u, dy, dx, ratio, scale)
    same_bits(dx, want_dx)
    K.dropout_backward(u, dy, dy, ratio, scale)
    same_bits(dy, want_dx)


@pytest.mark.parametrize("H, W", [(7, 7), (8, 9), (2, 5)])
def test_ave_pool_backward_divides_in_float32(H, W):
    """Caffe adds top_diff / pool_size computed in float32 to each pixel of the window, window
    after window (the 3x3 stride-2 fast path for inner windows keeps that order)."""
    rng = np.random.default_rng(4)
    PH, PW = -(-(H - 3) // 2) + 1, -(-(W - 3) // 2) + 1
    top = rng.standard_normal((1, 2, PH, PW)).astype(F)
    dx = np.empty((1, 2, H, W), F)
    KP.ave_pool_backward(top, dx, 3, 3, 2, 2, 0, 0, True)
    want = np.zeros_like(dx)
    for ph in range(PH):
        for pw in range(PW):
            hs, ws = 2 * ph, 2 * pw
            he, we = min(hs + 3, H), min(ws + 3, W)
            g = top[:, :, ph, pw] / F((he - hs) * (we - ws))
            for h in range(hs, he):
                for w in range(ws, we):
                    want[:, :, h, w] += g
    same_bits(dx, want)
