"""Kernels of the blocked convolution route: a few images at a time, one thread each.

The blocked route (layers/conv.py) turns a chunk of images small enough for one core's
L2 cache into a column matrix, multiplies it right away and moves on, one worker thread
per core taking chunks from a shared queue.  So these kernels are serial (the
parallelism is across chunks).  ``im2col_padded`` (channel-major columns) is tuned for
short rows: every input plane is first copied into a zero-bordered scratch plane, after
which each column-matrix row of one output row is a fixed-length copy with no bounds
tests (CIFAR-size rows are 8-32 floats, where the general kernel's per-row range
bookkeeping cost more than the copy: 2x faster).  ``im2col_pixels`` writes the
pixel-major layout, whose copies are longer still.

Column layout as in kernels/conv.py: row (c, ki, kj), image n's block at
``r * row_stride + n * n_stride``; per image (rows, out_h * out_w) is
``row_stride = P, n_stride = rows * P`` and batched (rows, n * P) is
``row_stride = n * P, n_stride = P``.
"""

import numpy as np
from numba import njit

_U = np.uint64


@njit(cache=True, nogil=True)
def im2col_padded(x, col, row_stride, n_stride, kernel_h, kernel_w, stride_h, stride_w,
                  pad_h, pad_w, dil_h, dil_w, out_h, out_w):
    """col[(c*kh + i)*kw + j, n, oh, ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
    (zero in the padding).  x: (N, C, H, W) float32; col: flat float32; pads >= 0."""
    N, C, H, W = x.shape
    hp = max(H + 2 * pad_h, (out_h - 1) * stride_h + (kernel_h - 1) * dil_h + 1)
    wp = max(W + 2 * pad_w, (out_w - 1) * stride_w + (kernel_w - 1) * dil_w + 1)
    plane = np.zeros(hp * wp, np.float32)      # borders stay zero; interior rewritten
    xf = x.reshape(-1)
    kk = kernel_h * kernel_w
    ow_n = _U(out_w)
    for n in range(N):
        for c in range(C):
            src = _U((n * C + c) * H * W)
            for h in range(H):
                d = _U((h + pad_h) * wp + pad_w)
                s = src + _U(h * W)
                for q in range(_U(W)):
                    plane[d + q] = xf[s + q]
            for ki in range(kernel_h):
                for kj in range(kernel_w):
                    r = c * kk + ki * kernel_w + kj
                    dst = _U(r * row_stride + n * n_stride)
                    for oh in range(out_h):
                        s = _U((oh * stride_h + ki * dil_h) * wp + kj * dil_w)
                        d = dst + _U(oh * out_w)
                        if stride_w == 1:
                            for q in range(ow_n):
                                col[d + q] = plane[s + q]
                        else:
                            st = _U(stride_w)
                            for q in range(ow_n):
                                col[d + q] = plane[s + q * st]


@njit(cache=True, nogil=True)
def bias_act(y, bias, relu, slope):
    """y[n, c, :] = act(y[n, c, :] + bias[c]) in place; act: max(z, 0) + slope * min(z, 0)
    when ``relu``, else none.  y: (N, C, P); bias: (C,) or empty."""
    N, C, P = y.shape
    yf = y.reshape(-1)
    with_bias = bias.size > 0
    zero = np.float32(0.0)
    sl = np.float32(slope)
    for task in range(N * C):
        b = bias[task % C] if with_bias else zero
        s = _U(task * P)
        if relu:
            for p in range(_U(P)):
                z = yf[s + p] + b
                yf[s + p] = max(z, zero) + sl * min(z, zero)
        else:
            for p in range(_U(P)):
                yf[s + p] += b


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def to_channel_rows(src, dst, sums):
    """dst[c, n*P:(n+1)*P] = src[n, c, :]; sums[c] += the sum of what was moved (when
    ``sums`` is not empty).  src: (N, C, P); dst: (C, N*P); sums: (C,) float64."""
    N, C, P = src.shape
    sf = src.reshape(-1)
    df = dst.reshape(-1)
    with_sums = sums.size > 0
    for n in range(N):
        for c in range(C):
            s = _U((n * C + c) * P)
            d = _U((c * N + n) * P)
            for p in range(_U(P)):
                df[d + p] = sf[s + p]
            if with_sums:
                part = np.float32(0.0)
                for p in range(_U(P)):
                    part += df[d + p]
                sums[c] += part


# -- pixel-major ("NHWC") columns: one row per output pixel -----------------------------
@njit(cache=True, nogil=True)
def im2col_pixels(x, col, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h,
                  out_w):
    """col[(n*out_h + oh)*out_w + ow, (i*kw + j)*C + c] = x[n, c, oh*sh - ph + i,
    ow*sw - pw + j] (zero in the padding); undilated kernels.

    The transpose of the usual column matrix, with the kernel offsets ordered
    (i, j, c): each image is first copied channel-last into a zero-bordered scratch,
    after which the kw * C entries of one kernel row are one contiguous run (160 floats
    for a 5-wide kernel over 32 channels, against 8-32 in the channel-major layout).
    x: (N, C, H, W); col: flat, N * out_h * out_w rows of kh * kw * C.
    """
    N, C, H, W = x.shape
    hp = max(H + 2 * pad_h, (out_h - 1) * stride_h + kernel_h)
    wp = max(W + 2 * pad_w, (out_w - 1) * stride_w + kernel_w)
    xp = np.zeros(hp * wp * C, np.float32)
    xf = x.reshape(-1)
    run = _U(kernel_w * C)
    k_all = _U(kernel_h * kernel_w * C)
    for n in range(N):
        for c in range(C):
            src = _U((n * C + c) * H * W)
            for h in range(H):
                d = _U(((h + pad_h) * wp + pad_w) * C + c)
                s = src + _U(h * W)
                for q in range(_U(W)):
                    xp[d + q * _U(C)] = xf[s + q]
        for oh in range(out_h):
            for ow in range(out_w):
                row = _U((n * out_h + oh) * out_w + ow) * k_all
                for ki in range(kernel_h):
                    s = _U(((oh * stride_h + ki) * wp + ow * stride_w) * C)
                    d = row + _U(ki) * run
                    for q in range(run):
                        col[d + q] = xp[s + q]


@njit(cache=True, nogil=True)
def pixels_to_nchw(src, dst, bias, relu, slope):
    """dst[n, c, p] = act(src[n*P + p, c] + bias[c]); act as in ``bias_act``.
    src: (N*P, C) a GEMM output by pixel; dst: (N, C, P); bias: (C,) or empty."""
    N, C, P = dst.shape
    sf = src.reshape(-1)
    df = dst.reshape(-1)
    with_bias = bias.size > 0
    zero = np.float32(0.0)
    sl = np.float32(slope)
    for n in range(N):
        for c in range(C):
            b = bias[c] if with_bias else zero
            d = _U((n * C + c) * P)
            s = _U(n * P * C + c)
            if relu:
                for p in range(_U(P)):
                    z = sf[s + p * _U(C)] + b
                    df[d + p] = max(z, zero) + sl * min(z, zero)
            else:
                for p in range(_U(P)):
                    df[d + p] = sf[s + p * _U(C)] + b
