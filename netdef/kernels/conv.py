"""Kernels for convolution: im2col / col2im and the layout passes around the GEMMs.

The convolution layers turn a whole minibatch into ONE column matrix and run one GEMM
per group; everything here is the memory-bound glue around those GEMMs, written as
row copies with unit-stride inner loops (the valid range of each row is computed up
front, so the inner loops carry no bounds tests).

Column layout.  A column matrix has one row per (channel, kernel offset) -- channel
slowest, last spatial axis of the kernel fastest, as Caffe orders its weights -- and
per row a block of ``out_spatial`` entries per image.  Where image ``n``'s block of
row ``r`` starts is given by two strides, so one kernel serves both layouts we use:

* batched, (rows, N * out_spatial): ``row_stride = N * out_spatial``,
  ``n_stride = out_spatial`` (the convolution layers);
* per image, (N, rows, out_spatial): ``row_stride = out_spatial``,
  ``n_stride = rows * out_spatial`` (the Im2col layer's top).

All arrays are float32 and C-contiguous; ``col`` arguments are flat 1-D views.
"""

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def _valid_range(size_in, size_out, stride, offset):
    """[lo, hi): the outputs o with 0 <= o*stride + offset < size_in."""
    if offset >= 0:
        lo = 0
    else:
        lo = (-offset + stride - 1) // stride
    last = size_in - 1 - offset
    if last < 0:
        hi = 0
    else:
        hi = last // stride + 1
    if hi > size_out:
        hi = size_out
    if lo > hi:
        lo = hi
    return lo, hi


# -- 2-D ---------------------------------------------------------------------
@njit(cache=True, nogil=True, parallel=True)
def im2col_2d(x, col, row_stride, n_stride, kernel_h, kernel_w, stride_h, stride_w,
              pad_h, pad_w, dil_h, dil_w, out_h, out_w):
    """col[(c*kh + i)*kw + j, n, oh, ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw].

    Zero where that pixel lies in the padding.  x: (N, C, H, W); col: flat, laid out
    as the module docstring says.
    """
    N, C, H, W = x.shape
    xf = x.reshape(-1)
    kk = kernel_h * kernel_w
    for task in prange(C * kk * N):
        r = task // N
        n = task - r * N
        c = r // kk
        k = r - c * kk
        ki = k // kernel_w
        kj = k - ki * kernel_w
        off_w = kj * dil_w - pad_w
        lo, hi = _valid_range(W, out_w, stride_w, off_w)
        plane = (n * C + c) * H * W
        base = r * row_stride + n * n_stride
        for oh in range(out_h):
            dst = base + oh * out_w
            ih = oh * stride_h - pad_h + ki * dil_h
            if ih < 0 or ih >= H:
                for ow in range(out_w):
                    col[dst + ow] = 0.0
                continue
            for ow in range(lo):
                col[dst + ow] = 0.0
            src = plane + ih * W + off_w
            if stride_w == 1:
                for ow in range(lo, hi):
                    col[dst + ow] = xf[src + ow]
            else:
                for ow in range(lo, hi):
                    col[dst + ow] = xf[src + ow * stride_w]
            for ow in range(hi, out_w):
                col[dst + ow] = 0.0


@njit(cache=True, nogil=True, parallel=True)
def col2im_2d(col, x, row_stride, n_stride, kernel_h, kernel_w, stride_h, stride_w,
              pad_h, pad_w, dil_h, dil_w, out_h, out_w, bias):
    """x[n, c] = bias[c] + the sum of every column entry that im2col_2d copied from it.

    The transpose of im2col_2d; OVERWRITES x: (N, C, H, W).  ``bias``: (C,) or empty
    (then x starts from zero) -- Deconvolution's bias add rides along for free.
    """
    N, C, H, W = x.shape
    xf = x.reshape(-1)
    kk = kernel_h * kernel_w
    hw = H * W
    with_bias = bias.size > 0
    for task in prange(N * C):
        n = task // C
        c = task - n * C
        plane = task * hw
        init = bias[c] if with_bias else np.float32(0.0)
        for i in range(hw):
            xf[plane + i] = init
        for ki in range(kernel_h):
            for kj in range(kernel_w):
                r = c * kk + ki * kernel_w + kj
                base = r * row_stride + n * n_stride
                off_w = kj * dil_w - pad_w
                lo, hi = _valid_range(W, out_w, stride_w, off_w)
                for oh in range(out_h):
                    ih = oh * stride_h - pad_h + ki * dil_h
                    if ih < 0 or ih >= H:
                        continue
                    src = base + oh * out_w
                    dst = plane + ih * W + off_w
                    if stride_w == 1:
                        for ow in range(lo, hi):
                            xf[dst + ow] += col[src + ow]
                    else:
                        for ow in range(lo, hi):
                            xf[dst + ow * stride_w] += col[src + ow]


# -- N-D (any number >= 1 of spatial axes) ------------------------------------
@njit(cache=True, nogil=True)
def _kernel_offsets(k, kernel, koff):
    """Decompose the flat kernel index k into per-axis offsets (last axis fastest)."""
    for d in range(kernel.size - 1, -1, -1):
        koff[d] = k % kernel[d]
        k //= kernel[d]


@njit(cache=True, nogil=True)
def _outer_source(o, koff, in_shape, out_shape, stride, pad, dil):
    """Offset in the input plane of output row o (all axes but the last), or -1 in padding."""
    D = in_shape.size
    src = 0
    mult = in_shape[D - 1]
    for d in range(D - 2, -1, -1):
        oc = o % out_shape[d]
        o //= out_shape[d]
        ic = oc * stride[d] - pad[d] + koff[d] * dil[d]
        if ic < 0 or ic >= in_shape[d]:
            return -1
        src += ic * mult
        mult *= in_shape[d]
    return src


@njit(cache=True, nogil=True, parallel=True)
def im2col_nd(x, col, row_stride, n_stride, in_shape, out_shape, kernel, stride, pad, dil):
    """N-D im2col.  x: (N, C, prod(in_shape)); shape arguments: int64 (D,) arrays."""
    N, C, P = x.shape
    xf = x.reshape(-1)
    D = in_shape.size
    kk = 1
    for d in range(D):
        kk *= kernel[d]
    w_in = in_shape[D - 1]
    w_out = out_shape[D - 1]
    outer = 1
    for d in range(D - 1):
        outer *= out_shape[d]
    for task in prange(C * kk * N):
        r = task // N
        n = task - r * N
        c = r // kk
        koff = np.empty(D, np.int64)
        _kernel_offsets(r - c * kk, kernel, koff)
        off_w = koff[D - 1] * dil[D - 1] - pad[D - 1]
        sw = stride[D - 1]
        lo, hi = _valid_range(w_in, w_out, sw, off_w)
        plane = (n * C + c) * P
        base = r * row_stride + n * n_stride
        for o in range(outer):
            dst = base + o * w_out
            src = _outer_source(o, koff, in_shape, out_shape, stride, pad, dil)
            if src < 0:
                for ow in range(w_out):
                    col[dst + ow] = 0.0
                continue
            for ow in range(lo):
                col[dst + ow] = 0.0
            src += plane + off_w
            for ow in range(lo, hi):
                col[dst + ow] = xf[src + ow * sw]
            for ow in range(hi, w_out):
                col[dst + ow] = 0.0


@njit(cache=True, nogil=True, parallel=True)
def col2im_nd(col, x, row_stride, n_stride, in_shape, out_shape, kernel, stride, pad, dil,
              bias):
    """The transpose of im2col_nd; OVERWRITES x: (N, C, prod(in_shape)) with bias[c] + sums."""
    N, C, P = x.shape
    xf = x.reshape(-1)
    D = in_shape.size
    kk = 1
    for d in range(D):
        kk *= kernel[d]
    w_in = in_shape[D - 1]
    w_out = out_shape[D - 1]
    outer = 1
    for d in range(D - 1):
        outer *= out_shape[d]
    with_bias = bias.size > 0
    for task in prange(N * C):
        n = task // C
        c = task - n * C
        plane = task * P
        init = bias[c] if with_bias else np.float32(0.0)
        for i in range(P):
            xf[plane + i] = init
        koff = np.empty(D, np.int64)
        sw = stride[D - 1]
        for k in range(kk):
            _kernel_offsets(k, kernel, koff)
            r = c * kk + k
            base = r * row_stride + n * n_stride
            off_w = koff[D - 1] * dil[D - 1] - pad[D - 1]
            lo, hi = _valid_range(w_in, w_out, sw, off_w)
            for o in range(outer):
                src = _outer_source(o, koff, in_shape, out_shape, stride, pad, dil)
                if src < 0:
                    continue
                dst = plane + src + off_w
                s = base + o * w_out
                for ow in range(lo, hi):
                    xf[dst + ow * sw] += col[s + ow]


# -- layout passes around the GEMMs -------------------------------------------
@njit(cache=True, nogil=True, parallel=True)
def cn_to_nc(src, dst, bias):
    """dst[n, c, :] = src[c, n*P:(n+1)*P] + bias[c].

    src: (C, N*P) GEMM output; dst: (N, C, P); bias: (C,) or empty for none.
    """
    N, C, P = dst.shape
    sf = src.reshape(-1)
    df = dst.reshape(-1)
    with_bias = bias.size > 0
    for task in prange(N * C):
        n = task // C
        c = task - n * C
        b = bias[c] if with_bias else np.float32(0.0)
        s = (c * N + n) * P
        d = task * P
        for p in range(P):
            df[d + p] = sf[s + p] + b


@njit(cache=True, nogil=True, parallel=True)
def nc_to_cn(src, dst, bias_diff):
    """dst[c, n*P:(n+1)*P] = src[n, c, :]; bias_diff[c] += the sum of what was moved.

    src: (N, C, P) a top diff; dst: (C, N*P) GEMM operand; bias_diff: (C,) or empty.
    """
    N, C, P = src.shape
    sf = src.reshape(-1)
    df = dst.reshape(-1)
    with_bias = bias_diff.size > 0
    for c in prange(C):
        total = 0.0
        for n in range(N):
            s = (n * C + c) * P
            d = (c * N + n) * P
            for p in range(P):
                v = sf[s + p]
                df[d + p] = v
                total += v
        if with_bias:
            bias_diff[c] += total


@njit(cache=True, nogil=True, parallel=True)
def add_channel_bias(x, bias):
    """x[n, c, :] += bias[c].  x: (N, C, P); bias: (C,)."""
    N, C, P = x.shape
    for task in prange(N * C):
        n = task // C
        c = task - n * C
        b = bias[c]
        for p in range(P):
            x[n, c, p] += b


@njit(cache=True, nogil=True)
def channel_sum(x, out):
    """out[c] += sum over n and p of x[n, c, p].  x: (N, C, P); out: (C,)."""
    N, C, P = x.shape
    for c in range(C):
        total = 0.0
        for n in range(N):
            for p in range(P):
                total += x[n, c, p]
        out[c] += total
