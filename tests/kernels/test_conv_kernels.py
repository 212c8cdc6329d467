"""im2col / col2im and the layout passes against plain NumPy loops."""

import itertools

import numpy as np
import pytest

from netdef.kernels import conv as K


def out_size(size, k, s, p, d):
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def ref_im2col(x, kernel, stride, pad, dil):
    """(C*prod(kernel), N, *out) by brute force over every window position."""
    N, C = x.shape[:2]
    spatial = x.shape[2:]
    out = [out_size(s, k, st, p, d) for s, k, st, p, d in zip(spatial, kernel, stride, pad, dil)]
    col = np.zeros((C * int(np.prod(kernel)), N, *out), np.float32)
    for c in range(C):
        for ki, koff in enumerate(itertools.product(*[range(k) for k in kernel])):
            r = c * int(np.prod(kernel)) + ki
            for o in itertools.product(*[range(v) for v in out]):
                src = [o[d] * stride[d] - pad[d] + koff[d] * dil[d] for d in range(len(o))]
                if all(0 <= s < spatial[d] for d, s in enumerate(src)):
                    col[(r, slice(None), *o)] = x[(slice(None), c, *src)]
    return col


def ref_col2im(col, x_shape, kernel, stride, pad, dil):
    """The adjoint of ref_im2col: every column entry added back where it came from."""
    N, C = x_shape[:2]
    spatial = x_shape[2:]
    x = np.zeros(x_shape, np.float64)
    out = col.shape[2:]
    for c in range(C):
        for ki, koff in enumerate(itertools.product(*[range(k) for k in kernel])):
            r = c * int(np.prod(kernel)) + ki
            for o in itertools.product(*[range(v) for v in out]):
                src = [o[d] * stride[d] - pad[d] + koff[d] * dil[d] for d in range(len(o))]
                if all(0 <= s < spatial[d] for d, s in enumerate(src)):
                    x[(slice(None), c, *src)] += col[(r, slice(None), *o)]
    return x


CASES_2D = [
    # (N, C, H, W), kernel, stride, pad, dilation
    ((2, 3, 7, 9), (3, 3), (1, 1), (0, 0), (1, 1)),
    ((2, 3, 7, 9), (3, 3), (2, 2), (1, 1), (1, 1)),
    ((1, 2, 6, 5), (3, 2), (2, 1), (1, 0), (1, 1)),
    ((2, 2, 7, 8), (3, 3), (1, 2), (2, 3), (2, 2)),
    ((1, 1, 4, 4), (5, 5), (1, 1), (2, 2), (1, 1)),
    ((2, 1, 5, 6), (1, 1), (3, 2), (0, 0), (1, 1)),
    ((1, 2, 3, 3), (2, 2), (3, 3), (4, 4), (1, 1)),
]


def _geometry(shape, kernel, stride, pad, dil):
    return [out_size(s, k, st, p, d) for s, k, st, p, d in zip(shape[2:], kernel, stride, pad, dil)]


@pytest.mark.parametrize("shape,kernel,stride,pad,dil", CASES_2D)
@pytest.mark.parametrize("batched", [True, False])
def test_im2col_col2im_2d(shape, kernel, stride, pad, dil, batched):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    N, C = shape[:2]
    oh, ow = _geometry(shape, kernel, stride, pad, dil)
    rows, P = C * kernel[0] * kernel[1], oh * ow
    want = ref_im2col(x, kernel, stride, pad, dil)            # (rows, N, oh, ow)
    row_stride, n_stride = (N * P, P) if batched else (P, rows * P)
    col = np.full(rows * N * P, np.nan, np.float32)
    K.im2col_2d(x, col, row_stride, n_stride, *kernel, *stride, *pad, *dil, oh, ow)
    got = col.reshape(rows, N, P) if batched else col.reshape(N, rows, P).transpose(1, 0, 2)
    np.testing.assert_array_equal(got, want.reshape(rows, N, P))

    dcol = rng.standard_normal((rows, N, oh, ow)).astype(np.float32)
    flat = dcol.reshape(rows, N, P) if batched else dcol.reshape(rows, N, P).transpose(1, 0, 2)
    flat = np.ascontiguousarray(flat).reshape(-1)
    dx = np.full(shape, np.nan, np.float32)
    K.col2im_2d(flat, dx, row_stride, n_stride, *kernel, *stride, *pad, *dil, oh, ow,
                np.zeros(0, np.float32))
    np.testing.assert_allclose(dx, ref_col2im(dcol, shape, kernel, stride, pad, dil),
                               rtol=1e-5, atol=1e-5)
    bias = rng.standard_normal(C).astype(np.float32)
    K.col2im_2d(flat, dx, row_stride, n_stride, *kernel, *stride, *pad, *dil, oh, ow, bias)
    np.testing.assert_allclose(
        dx, ref_col2im(dcol, shape, kernel, stride, pad, dil) + bias[:, None, None],
        rtol=1e-5, atol=1e-5)


CASES_ND = [
    ((2, 3, 9), (3,), (2,), (1,), (1,)),
    ((2, 2, 7), (2,), (1,), (0,), (3,)),
    ((1, 2, 7, 9), (3, 2), (2, 1), (1, 0), (1, 2)),
    ((2, 2, 4, 5, 5), (2, 3, 2), (1, 1, 1), (1, 1, 1), (1, 1, 1)),
    ((1, 2, 5, 4, 6), (3, 2, 3), (2, 1, 2), (1, 0, 2), (1, 2, 1)),
]


@pytest.mark.parametrize("shape,kernel,stride,pad,dil", CASES_ND)
def test_im2col_col2im_nd(shape, kernel, stride, pad, dil):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    N, C = shape[:2]
    out = _geometry(shape, kernel, stride, pad, dil)
    rows, P = C * int(np.prod(kernel)), int(np.prod(out))
    geo = [np.array(v, np.int64) for v in (shape[2:], out, kernel, stride, pad, dil)]
    col = np.full(rows * N * P, np.nan, np.float32)
    K.im2col_nd(x.reshape(N, C, -1), col, N * P, P, *geo)
    want = ref_im2col(x, kernel, stride, pad, dil)
    np.testing.assert_array_equal(col.reshape(rows, N, P), want.reshape(rows, N, P))

    dcol = rng.standard_normal((rows, N, *out)).astype(np.float32)
    dx = np.full((N, C, int(np.prod(shape[2:]))), np.nan, np.float32)
    K.col2im_nd(dcol.reshape(-1), dx, N * P, P, *geo, np.zeros(0, np.float32))
    np.testing.assert_allclose(dx.reshape(shape), ref_col2im(dcol, shape, kernel, stride, pad, dil),
                               rtol=1e-5, atol=1e-5)


def test_nd_agrees_with_2d():
    rng = np.random.default_rng(2)
    shape, kernel, stride, pad, dil = (2, 3, 8, 7), (3, 3), (2, 1), (1, 2), (1, 2)
    x = rng.standard_normal(shape).astype(np.float32)
    out = _geometry(shape, kernel, stride, pad, dil)
    n = 3 * 9 * 2 * out[0] * out[1]
    a, b = np.empty(n, np.float32), np.empty(n, np.float32)
    P = out[0] * out[1]
    K.im2col_2d(x, a, 2 * P, P, *kernel, *stride, *pad, *dil, *out)
    geo = [np.array(v, np.int64) for v in (shape[2:], out, kernel, stride, pad, dil)]
    K.im2col_nd(x.reshape(2, 3, -1), b, 2 * P, P, *geo)
    np.testing.assert_array_equal(a, b)


def test_layout_passes():
    rng = np.random.default_rng(3)
    N, C, P = 3, 4, 5
    src = rng.standard_normal((C, N * P)).astype(np.float32)
    bias = rng.standard_normal(C).astype(np.float32)
    dst = np.empty((N, C, P), np.float32)
    K.cn_to_nc(src, dst, bias, False, 0.0)
    z = src.reshape(C, N, P).transpose(1, 0, 2) + bias[:, None]
    np.testing.assert_allclose(dst, z, rtol=1e-6)
    K.cn_to_nc(src, dst, bias, True, 0.5)      # with a fused leaky ReLU
    np.testing.assert_allclose(dst, np.maximum(z, 0) + 0.5 * np.minimum(z, 0), rtol=1e-6)
    K.cn_to_nc(src, dst, np.zeros(0, np.float32), False, 0.0)
    np.testing.assert_array_equal(dst, src.reshape(C, N, P).transpose(1, 0, 2))

    back = np.empty((C, N * P), np.float32)
    acc = np.ones(C, np.float32)
    K.nc_to_cn(dst, back, acc)
    np.testing.assert_array_equal(back, src)
    np.testing.assert_allclose(acc, 1 + src.sum(axis=1), rtol=1e-5)

    x = dst.copy()
    K.add_channel_bias(x, bias, False, 0.0)
    np.testing.assert_allclose(x, dst + bias[:, None], rtol=1e-6)
    out = np.ones(C, np.float32)
    K.channel_sum(dst, out)
    np.testing.assert_allclose(out, 1 + dst.sum(axis=(0, 2)), rtol=1e-5)
