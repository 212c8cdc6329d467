"""The blocked convolution route's kernels against NumPy, and its worker helper."""

import threading

import numpy as np
import pytest

from netdef.kernels import conv as K
from netdef.kernels import conv_blocked as KB
from netdef.kernels import conv_threads as TH

# (N, C, H, W), kernel, stride, pad, dilation
GEOMETRIES = [
    ((2, 3, 6, 5), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((1, 2, 7, 8), (2, 3), (2, 1), (0, 2), (1, 1)),
    ((2, 1, 9, 7), (3, 2), (1, 2), (2, 1), (2, 1)),
    ((1, 4, 5, 5), (5, 5), (1, 1), (4, 4), (1, 1)),
]


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def reference_columns(x, kernel, stride, pad, dil):
    """(N, C*kh*kw, out_h, out_w) im2col in plain NumPy."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, pad, dil
    oh, ow = out_size(H, kh, sh, ph, dh), out_size(W, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    col = np.zeros((N, C, kh, kw, oh, ow), np.float32)
    for i in range(kh):
        for j in range(kw):
            col[:, :, i, j] = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                 j * dw: j * dw + sw * (ow - 1) + 1: sw]
    return col.reshape(N, C * kh * kw, oh, ow)


@pytest.mark.parametrize("shape,kernel,stride,pad,dil", GEOMETRIES)
@pytest.mark.parametrize("batched", [False, True])
def test_im2col_padded(shape, kernel, stride, pad, dil, batched):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want = reference_columns(x, kernel, stride, pad, dil)
    N, rows, oh, ow = want.shape
    P = oh * ow
    col = np.full(N * rows * P, np.nan, np.float32)
    strides = (N * P, P) if batched else (P, rows * P)
    KB.im2col_padded(x, col, *strides, *kernel, *stride, *pad, *dil, oh, ow)
    got = col.reshape(rows, N, P).transpose(1, 0, 2) if batched else col.reshape(N, rows, P)
    np.testing.assert_array_equal(got, want.reshape(N, rows, P))
    # the same as the parallel general kernel
    other = np.empty_like(col)
    K.im2col_2d(x, other, *strides, *kernel, *stride, *pad, *dil, oh, ow)
    np.testing.assert_array_equal(col, other)


@pytest.mark.parametrize("shape,kernel,stride,pad,dil",
                         [g for g in GEOMETRIES if g[4] == (1, 1)])
def test_im2col_pixels(shape, kernel, stride, pad, dil):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    want = reference_columns(x, kernel, stride, pad, dil)
    N, rows, oh, ow = want.shape
    C = shape[1]
    col = np.full(N * oh * ow * rows, np.nan, np.float32)
    KB.im2col_pixels(x, col, *kernel, *stride, *pad, oh, ow)
    # row (n, oh, ow), column (i, j, c)
    want = want.reshape(N, C, kernel[0], kernel[1], oh, ow).transpose(0, 4, 5, 2, 3, 1)
    np.testing.assert_array_equal(col.reshape(want.shape), want)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("relu,slope", [(False, 0.0), (True, 0.0), (True, 0.1)])
def test_output_passes(bias, relu, slope):
    rng = np.random.default_rng(2)
    N, C, P = 2, 3, 5
    b = rng.standard_normal(C).astype(np.float32) if bias else np.zeros(0, np.float32)
    z_pixels = rng.standard_normal((N * P, C)).astype(np.float32)
    z = z_pixels.reshape(N, P, C).transpose(0, 2, 1) + (b.reshape(1, C, 1) if bias else 0)
    want = np.maximum(z, 0) + slope * np.minimum(z, 0) if relu else z
    y = np.empty((N, C, P), np.float32)
    KB.pixels_to_nchw(z_pixels, y, b, relu, slope)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    y = np.ascontiguousarray(z_pixels.reshape(N, P, C).transpose(0, 2, 1))
    KB.bias_act(y, b, relu, slope)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    y = np.ascontiguousarray(z_pixels.reshape(N, P, C).transpose(0, 2, 1))
    K.add_channel_bias(y, b, relu, slope)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sums", [True, False])
def test_to_channel_rows(sums):
    src = np.random.default_rng(3).standard_normal((3, 2, 4)).astype(np.float32)
    dst = np.empty((2, 12), np.float32)
    acc = np.ones(2) if sums else np.zeros(0)
    KB.to_channel_rows(src, dst, acc)
    np.testing.assert_array_equal(dst, src.transpose(1, 0, 2).reshape(2, 12))
    if sums:
        np.testing.assert_allclose(acc, 1 + src.sum(axis=(0, 2)), rtol=1e-6)


def test_run_parts_runs_every_part_and_raises():
    seen, names = [], set()

    def part(p):
        seen.append(p)
        names.add(threading.current_thread().name)

    TH.run_parts(part, 3)
    assert sorted(seen) == [0, 1, 2]
    TH.run_parts(part, 1)
    assert len(seen) == 4

    def failing(p):
        if p == 1:
            raise ValueError("part 1")

    with pytest.raises(ValueError, match="part 1"):
        TH.run_parts(failing, 2)
    if TH._BLAS is not None:        # the BLAS thread count is back where it was
        get, _ = TH._BLAS
        before = get()
        TH.run_parts(lambda p: None, 2)
        assert get() == before


def test_run_parts_works_in_a_forked_child():
    import os

    TH.run_parts(lambda p: None, 2)             # the parent has a pool now
    pid = os.fork()
    if pid == 0:                                # child: must not wait on absent threads
        try:
            out = []
            TH.run_parts(out.append, 2)
            os._exit(0 if sorted(out) == [0, 1] else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
