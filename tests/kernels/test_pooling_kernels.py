"""Pooling kernels against plain NumPy loops written from Caffe's definitions."""

import math

import numpy as np
import pytest

from netdef.kernels import pooling as K


def pooled(size, k, s, p, ceil=True):
    n = (math.ceil if ceil else math.floor)((size + 2 * p - k) / s) + 1
    if p and (n - 1) * s >= size + p:
        n -= 1
    return n


def windows(H, W, PH, PW, k, s, p, clip_to_pad=False):
    """Yield (ph, pw, rows, cols, pool_size) with Caffe's window arithmetic."""
    for ph in range(PH):
        for pw in range(PW):
            hs, ws = ph * s[0] - p[0], pw * s[1] - p[1]
            he, we = min(hs + k[0], H + p[0]), min(ws + k[1], W + p[1])
            size = (he - hs) * (we - ws)
            rows = range(max(hs, 0), min(he, H))
            cols = range(max(ws, 0), min(we, W))
            yield ph, pw, rows, cols, size


def ref_max(x, k, s, p, PH, PW):
    N, C, H, W = x.shape
    top = np.full((N, C, PH, PW), -np.finfo(np.float32).max, np.float32)
    mask = np.full((N, C, PH, PW), -1, np.float32)
    for n in range(N):
        for c in range(C):
            for ph, pw, rows, cols, _ in windows(H, W, PH, PW, k, s, p):
                for h in rows:
                    for w in cols:
                        if x[n, c, h, w] > top[n, c, ph, pw]:
                            top[n, c, ph, pw] = x[n, c, h, w]
                            mask[n, c, ph, pw] = h * W + w
    return top, mask


def ref_ave(x, k, s, p, PH, PW):
    N, C, H, W = x.shape
    top = np.zeros((N, C, PH, PW), np.float64)
    for ph, pw, rows, cols, size in windows(H, W, PH, PW, k, s, p):
        if len(rows) and len(cols):
            top[:, :, ph, pw] = x[:, :, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].sum(
                axis=(2, 3)) / size
    return top


def ref_ave_backward(dtop, shape, k, s, p):
    N, C, H, W = shape
    dx = np.zeros(shape, np.float64)
    for ph, pw, rows, cols, size in windows(H, W, dtop.shape[2], dtop.shape[3], k, s, p):
        for h in rows:
            for w in cols:
                dx[:, :, h, w] += dtop[:, :, ph, pw] / size
    return dx


GEOMETRIES = [
    # (N, C, H, W), kernel, stride, pad
    ((2, 3, 6, 6), (3, 3), (2, 2), (0, 0)),
    ((2, 3, 7, 9), (3, 3), (2, 2), (1, 1)),
    ((1, 2, 6, 6), (3, 3), (2, 2), (1, 1)),        # last window clipped at H + pad
    ((1, 2, 8, 8), (3, 3), (3, 3), (1, 1)),
    ((2, 2, 7, 9), (2, 2), (2, 2), (0, 0)),
    ((2, 3, 6, 8), (2, 2), (2, 2), (0, 0)),        # the 2x2 stride-2 fast path
    ((1, 2, 5, 7), (3, 2), (1, 2), (1, 1)),
    ((2, 1, 5, 4), (5, 4), (1, 1), (0, 0)),
]


@pytest.mark.parametrize("shape,k,s,p", GEOMETRIES)
def test_max_forward_backward(shape, k, s, p):
    rng = np.random.default_rng(0)
    x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float32)
    PH, PW = pooled(shape[2], k[0], s[0], p[0]), pooled(shape[3], k[1], s[1], p[1])
    top = np.empty((shape[0], shape[1], PH, PW), np.float32)
    mask = np.empty_like(top)
    K.max_pool_forward(x, top, mask, *k, *s, *p)
    want_top, want_mask = ref_max(x, k, s, p, PH, PW)
    np.testing.assert_array_equal(top, want_top)
    np.testing.assert_array_equal(mask, want_mask)

    dtop = rng.standard_normal(top.shape).astype(np.float32)
    dx = np.full(shape, np.nan, np.float32)
    K.mask_pool_backward(dtop, mask, dx, True)
    want = np.zeros(shape, np.float64)
    flat = want.reshape(shape[0], shape[1], -1)
    for n in range(shape[0]):
        for c in range(shape[1]):
            for i, m in enumerate(want_mask[n, c].ravel()):
                flat[n, c, int(m)] += dtop[n, c].ravel()[i]
    np.testing.assert_allclose(dx, want, rtol=1e-6, atol=1e-6)
    K.mask_pool_backward(dtop, mask, dx, False)          # accumulates
    np.testing.assert_allclose(dx, 2 * want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])                 # general kernel; 2x2 fast path
def test_max_ties_pick_the_first_and_nan_never_wins(stride):
    x = np.zeros((1, 1, 2, 2), np.float32)
    top = np.empty((1, 1, 1, 1), np.float32)
    mask = np.empty_like(top)
    K.max_pool_forward(x, top, mask, 2, 2, stride, stride, 0, 0)
    assert mask[0, 0, 0, 0] == 0 and top[0, 0, 0, 0] == 0
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 1, 0] = -1.0
    K.max_pool_forward(x, top, mask, 2, 2, stride, stride, 0, 0)
    assert mask[0, 0, 0, 0] == 1 and top[0, 0, 0, 0] == 0
    x[...] = -np.inf                        # nothing beats -FLT_MAX: Caffe's empty result
    K.max_pool_forward(x, top, mask, 2, 2, stride, stride, 0, 0)
    assert mask[0, 0, 0, 0] == -1 and top[0, 0, 0, 0] == -np.finfo(np.float32).max


SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf,
                    -np.finfo(np.float32).max, 2.0], np.float32)


@pytest.mark.parametrize("shape,k,s,p", GEOMETRIES + [
    ((2, 3, 11, 10), (3, 3), (2, 2), (0, 0)),      # CIFAR/CaffeNet-style, ceil-clipped edge
    ((1, 4, 7, 7), (3, 3), (1, 1), (1, 1)),        # GoogLeNet's 3x3 stride 1 pad 1
    ((2, 3, 14, 14), (3, 3), (1, 1), (1, 1)),      # ... whole-plane passes, values only
    ((1, 2, 3, 3), (3, 3), (1, 1), (1, 1)),
    ((1, 2, 6, 9), (5, 3), (1, 1), (2, 1)),
    ((1, 2, 5, 8), (1, 5), (1, 1), (0, 2)),
    ((1, 2, 5, 4), (5, 5), (1, 1), (2, 2)),        # kernel wider than the plane: rows
    ((1, 2, 6, 9), (4, 3), (3, 2), (2, 1)),
])
@pytest.mark.parametrize("seed", range(4))
def test_max_is_the_row_major_first_maximum_bit_for_bit(shape, k, s, p, seed):
    """Ties of +0.0/-0.0, NaN, infinities and -FLT_MAX: the value's bits and the mask are
    the per-window rule's, with and without the mask being written."""
    rng = np.random.default_rng(seed)
    x = rng.choice(SPECIAL, size=shape).astype(np.float32)
    PH, PW = pooled(shape[2], k[0], s[0], p[0]), pooled(shape[3], k[1], s[1], p[1])
    top = np.empty((shape[0], shape[1], PH, PW), np.float32)
    mask = np.empty_like(top)
    K.max_pool_forward(x, top, mask, *k, *s, *p)
    want_top, want_mask = ref_max(x, k, s, p, PH, PW)
    np.testing.assert_array_equal(top.view(np.int32), want_top.view(np.int32))
    np.testing.assert_array_equal(mask, want_mask)
    values = np.full_like(top, 7.0)
    K.max_pool_values(x, values, *k, *s, *p)
    np.testing.assert_array_equal(values.view(np.int32), want_top.view(np.int32))


@pytest.mark.parametrize("shape,k,s,p", GEOMETRIES)
def test_ave_forward_backward(shape, k, s, p):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    PH, PW = pooled(shape[2], k[0], s[0], p[0]), pooled(shape[3], k[1], s[1], p[1])
    top = np.empty((shape[0], shape[1], PH, PW), np.float32)
    K.ave_pool_forward(x, top, *k, *s, *p)
    np.testing.assert_allclose(top, ref_ave(x, k, s, p, PH, PW), rtol=1e-5, atol=1e-6)
    dtop = rng.standard_normal(top.shape).astype(np.float32)
    dx = np.full(shape, np.nan, np.float32)
    K.ave_pool_backward(dtop, dx, *k, *s, *p, True)
    np.testing.assert_allclose(dx, ref_ave_backward(dtop, shape, k, s, p), rtol=1e-5, atol=1e-6)


def test_ave_pool_size_counts_padding():
    # H=W=3, k=3, s=1, pad=1: the corner window holds 2x2 pixels, but Caffe divides by
    # the window clipped to the PADDED image, rows and cols [-1, 2) -> 3x3 = 9.
    x = np.ones((1, 1, 3, 3), np.float32)
    top = np.empty((1, 1, 3, 3), np.float32)
    K.ave_pool_forward(x, top, 3, 3, 1, 1, 1, 1)
    assert top[0, 0, 0, 0] == pytest.approx(4 / 9)
    assert top[0, 0, 1, 1] == pytest.approx(1.0)


def test_stochastic_train_samples_proportionally():
    x = np.array([[[[0.0, 1.0], [3.0, 0.0]]]], np.float32)     # P(1)=0.25, P(3)=0.75
    top = np.empty((1, 1, 1, 1), np.float32)
    mask = np.empty_like(top)
    picks = []
    for u in np.linspace(0.0, 0.999, 40):
        rand = np.full((1, 1, 1, 1), u, np.float32)
        K.stochastic_pool_train(x, top, mask, rand, 2, 2, 2, 2)
        assert top[0, 0, 0, 0] == x.ravel()[int(mask[0, 0, 0, 0])]
        picks.append(int(mask[0, 0, 0, 0]))
    assert set(picks) == {1, 2}                      # zeros never chosen
    assert picks.count(2) == 30                      # threshold (1-u)*4 > 1 for 3/4 of u
    dtop = np.full((1, 1, 1, 1), 2.0, np.float32)
    dx = np.empty_like(x)
    K.mask_pool_backward(dtop, mask, dx, True)
    assert dx.ravel()[int(mask[0, 0, 0, 0])] == 2.0 and dx.sum() == 2.0


def test_stochastic_test_weighted_average_and_gradient():
    rng = np.random.default_rng(2)
    x = rng.uniform(0.1, 1.0, (2, 2, 4, 5)).astype(np.float32)
    top = np.empty((2, 2, 2, 2), np.float32)
    K.stochastic_pool_test(x, top, 3, 3, 2, 2)
    for ph in range(2):
        for pw in range(2):
            win = x[:, :, 2 * ph:2 * ph + 3, 2 * pw:2 * pw + 3].astype(np.float64)
            want = (win ** 2).sum(axis=(2, 3)) / win.sum(axis=(2, 3))
            np.testing.assert_allclose(top[:, :, ph, pw], want, rtol=1e-5)
    dtop = rng.standard_normal(top.shape).astype(np.float32)
    dx = np.empty_like(x)
    K.stochastic_pool_test_backward(x, dtop, dx, 3, 3, 2, 2, True)
    eps = 1e-3
    xd = x.astype(np.float64)
    for idx in [(0, 0, 0, 0), (1, 1, 2, 2), (0, 1, 3, 4), (1, 0, 2, 1)]:
        plus, minus = xd.copy(), xd.copy()
        plus[idx] += eps
        minus[idx] -= eps
        t1, t2 = np.empty_like(top), np.empty_like(top)
        K.stochastic_pool_test(plus.astype(np.float32), t1, 3, 3, 2, 2)
        K.stochastic_pool_test(minus.astype(np.float32), t2, 3, 3, 2, 2)
        numeric = ((t1 - t2) * dtop).sum() / (2 * eps)
        assert dx[idx] == pytest.approx(numeric, rel=2e-2, abs=2e-3)
