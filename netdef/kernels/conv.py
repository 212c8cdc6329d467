"""Kernels for convolution: im2col / col2im and the layout passes around the GEMMs.

The convolution layers turn a whole minibatch into ONE column matrix and run one GEMM
per group; everything here is the memory-bound glue around those GEMMs, written as
row copies with unit-stride inner loops.  The valid (non-padding) range of each row
is computed once up front, so the inner loops carry no bounds tests, and their
indices are unsigned: numba then drops its negative-index wraparound test and LLVM
vectorizes the copies.  The row helpers are inlined at numba level (LLVM alone does
not inline them).  Both together made im2col at LeNet's 8- and 24-wide rows 3-4x
faster, within ~1.5x of a plain memory copy of the column matrix.

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

from .gate import one_thread_below, set_num_threads

_U = np.uint64


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


@njit(cache=True, nogil=True, inline="always")
def _zero(a, start, stop):
    """a[start:stop] = 0 (unsigned offsets)."""
    for i in range(_U(start), _U(stop)):
        a[i] = 0.0


@njit(cache=True, nogil=True, inline="always")
def _copy_row(dst, d0, src, s0, count, step):
    """dst[d0 + i] = src[s0 + i*step] for i < count.  Stride 2 (AlexNet's and GoogLeNet's
    first layers) has its own loop: with the stride a constant, the compiler vectorises
    it with shuffles instead of loading element by element."""
    d = _U(d0)
    s = _U(s0)
    if step == 1:
        for i in range(_U(count)):
            dst[d + i] = src[s + i]
    elif step == 2:
        for i in range(_U(count)):
            dst[d + i] = src[s + i * _U(2)]
    else:
        st = _U(step)
        for i in range(_U(count)):
            dst[d + i] = src[s + i * st]


@njit(cache=True, nogil=True, inline="always")
def _add_row(dst, d0, src, s0, count, step):
    """dst[d0 + i*step] += src[s0 + i] for i < count."""
    d = _U(d0)
    s = _U(s0)
    if step == 1:
        for i in range(_U(count)):
            dst[d + i] += src[s + i]
    else:
        st = _U(step)
        for i in range(_U(count)):
            dst[d + i * st] += src[s + i]


@njit(cache=True, nogil=True, inline="always")
def _zero_borders(col, base, out_h, out_w, oh_lo, oh_hi, lo, hi):
    """Zero one image's (out_h, out_w) block at ``base`` outside rows [oh_lo, oh_hi) and
    columns [lo, hi): the entries that fall into the padding."""
    if oh_lo >= oh_hi or lo >= hi:
        _zero(col, base, base + out_h * out_w)
        return
    _zero(col, base, base + oh_lo * out_w)
    _zero(col, base + oh_hi * out_w, base + out_h * out_w)
    if lo > 0 or hi < out_w:
        for a in range(oh_lo, oh_hi):
            row = base + a * out_w
            _zero(col, row, row + lo)
            _zero(col, row + hi, row + out_w)


# -- 2-D ---------------------------------------------------------------------
@njit(cache=True, nogil=True, parallel=True)
def im2col_2d(x, col, row_stride, n_stride, kernel_h, kernel_w, stride_h, stride_w,
              pad_h, pad_w, dil_h, dil_w, out_h, out_w):
    """col[(c*kh + i)*kw + j, n, oh, ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw].

    Zero where that pixel lies in the padding.  x: (N, C, H, W); col: flat, laid out
    as the module docstring says.  One parallel task per column-matrix row.
    """
    N, C, H, W = x.shape
    xf = x.reshape(-1)
    kk = kernel_h * kernel_w
    saved = one_thread_below(2 * C * kk * N * out_h * out_w)
    for r in prange(C * kk):
        c = r // kk
        k = r - c * kk
        ki = k // kernel_w
        kj = k - ki * kernel_w
        off_h = ki * dil_h - pad_h
        off_w = kj * dil_w - pad_w
        oh_lo, oh_hi = _valid_range(H, out_h, stride_h, off_h)
        lo, hi = _valid_range(W, out_w, stride_w, off_w)
        for n in range(N):
            base = r * row_stride + n * n_stride
            _zero_borders(col, base, out_h, out_w, oh_lo, oh_hi, lo, hi)
            plane = (n * C + c) * H * W + lo * stride_w + off_w
            for a in range(oh_lo, oh_hi):
                _copy_row(col, base + a * out_w + lo, xf,
                          plane + (a * stride_h + off_h) * W, hi - lo, stride_w)
    set_num_threads(saved)


@njit(cache=True, nogil=True, parallel=True)
def col2im_2d(col, x, row_stride, n_stride, kernel_h, kernel_w, stride_h, stride_w,
              pad_h, pad_w, dil_h, dil_w, out_h, out_w, bias):
    """x[n, c] = bias[c] + the sum of every column entry that im2col_2d copied from it.

    The transpose of im2col_2d; OVERWRITES x: (N, C, H, W).  ``bias``: (C,) or empty
    (then x starts from zero) -- Deconvolution's bias add rides along for free.
    Parallel over channels (and blocks of images when channels are few): each task
    owns its planes, so the accumulation needs no synchronisation.
    """
    N, C, H, W = x.shape
    xf = x.reshape(-1)
    kk = kernel_h * kernel_w
    hw = H * W
    blocks = min(N, max(1, (8 + C - 1) // C))
    per_block = (N + blocks - 1) // blocks
    with_bias = bias.size > 0
    saved = one_thread_below(x.size + C * kk * N * out_h * out_w)
    for task in prange(C * blocks):
        c = task // blocks
        n0 = (task - c * blocks) * per_block
        n1 = min(n0 + per_block, N)
        init = bias[c] if with_bias else np.float32(0.0)
        for n in range(n0, n1):
            plane = (n * C + c) * hw
            for i in range(_U(plane), _U(plane + hw)):
                xf[i] = init
        for ki in range(kernel_h):
            off_h = ki * dil_h - pad_h
            oh_lo, oh_hi = _valid_range(H, out_h, stride_h, off_h)
            for kj in range(kernel_w):
                off_w = kj * dil_w - pad_w
                lo, hi = _valid_range(W, out_w, stride_w, off_w)
                if lo >= hi:
                    continue
                r = c * kk + ki * kernel_w + kj
                for n in range(n0, n1):
                    base = r * row_stride + n * n_stride + lo
                    plane = (n * C + c) * hw + lo * stride_w + off_w
                    for a in range(oh_lo, oh_hi):
                        _add_row(xf, plane + (a * stride_h + off_h) * W, col,
                                 base + a * out_w, hi - lo, stride_w)
    set_num_threads(saved)


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


@njit(cache=True, nogil=True)
def _nd_sizes(in_shape, out_shape, kernel):
    kk = 1
    for d in range(kernel.size):
        kk *= kernel[d]
    outer = 1
    for d in range(out_shape.size - 1):
        outer *= out_shape[d]
    return kk, outer


@njit(cache=True, nogil=True, parallel=True)
def im2col_nd(x, col, row_stride, n_stride, in_shape, out_shape, kernel, stride, pad, dil):
    """N-D im2col.  x: (N, C, prod(in_shape)); shape arguments: int64 (D,) arrays."""
    N, C, P = x.shape
    xf = x.reshape(-1)
    D = in_shape.size
    kk, outer = _nd_sizes(in_shape, out_shape, kernel)
    w_in = in_shape[D - 1]
    w_out = out_shape[D - 1]
    sw = stride[D - 1]
    saved = one_thread_below(2 * C * kk * N * outer * w_out)
    for r in prange(C * kk):
        c = r // kk
        koff = np.empty(D, np.int64)
        _kernel_offsets(r - c * kk, kernel, koff)
        off_w = koff[D - 1] * dil[D - 1] - pad[D - 1]
        lo, hi = _valid_range(w_in, w_out, sw, off_w)
        for o in range(outer):
            src = _outer_source(o, koff, in_shape, out_shape, stride, pad, dil)
            for n in range(N):
                dst = r * row_stride + n * n_stride + o * w_out
                if src < 0 or lo >= hi:
                    _zero(col, dst, dst + w_out)
                    continue
                _zero(col, dst, dst + lo)
                _copy_row(col, dst + lo, xf, (n * C + c) * P + src + off_w + lo * sw,
                          hi - lo, sw)
                _zero(col, dst + hi, dst + w_out)
    set_num_threads(saved)


@njit(cache=True, nogil=True, parallel=True)
def col2im_nd(col, x, row_stride, n_stride, in_shape, out_shape, kernel, stride, pad, dil,
              bias):
    """The transpose of im2col_nd; OVERWRITES x: (N, C, prod(in_shape)) with bias[c] + sums."""
    N, C, P = x.shape
    xf = x.reshape(-1)
    D = in_shape.size
    kk, outer = _nd_sizes(in_shape, out_shape, kernel)
    w_in = in_shape[D - 1]
    w_out = out_shape[D - 1]
    sw = stride[D - 1]
    with_bias = bias.size > 0
    saved = one_thread_below(x.size + C * kk * N * outer * w_out)
    for c in prange(C):
        init = bias[c] if with_bias else np.float32(0.0)
        for n in range(N):
            plane = (n * C + c) * P
            for i in range(_U(plane), _U(plane + P)):
                xf[i] = init
        koff = np.empty(D, np.int64)
        for k in range(kk):
            _kernel_offsets(k, kernel, koff)
            r = c * kk + k
            off_w = koff[D - 1] * dil[D - 1] - pad[D - 1]
            lo, hi = _valid_range(w_in, w_out, sw, off_w)
            if lo >= hi:
                continue
            for o in range(outer):
                src = _outer_source(o, koff, in_shape, out_shape, stride, pad, dil)
                if src < 0:
                    continue
                for n in range(N):
                    _add_row(xf, (n * C + c) * P + src + off_w + lo * sw, col,
                             r * row_stride + n * n_stride + o * w_out + lo, hi - lo, sw)
    set_num_threads(saved)


# -- layout passes around the GEMMs -------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _bias_row(df, d, sf, s, count, b, relu, slope):
    """df[d + p] = act(sf[s + p] + b) for p < count; act is Caffe's ReLU
    max(z, 0) + slope * min(z, 0) when ``relu``, else the identity."""
    if relu:
        for p in range(_U(count)):
            z = sf[s + p] + b
            df[d + p] = max(z, np.float32(0.0)) + slope * min(z, np.float32(0.0))
    else:
        for p in range(_U(count)):
            df[d + p] = sf[s + p] + b


@njit(cache=True, nogil=True, parallel=True)
def cn_to_nc(src, dst, bias, relu=False, slope=0.0):
    """dst[n, c, :] = act(src[c, n*P:(n+1)*P] + bias[c]).

    src: (C, N*P) GEMM output; dst: (N, C, P); bias: (C,) or empty for none; ``relu``
    applies a fused (leaky) ReLU of ``slope`` on the way (see ``_bias_row``).
    """
    N, C, P = dst.shape
    sf = src.reshape(-1)
    df = dst.reshape(-1)
    with_bias = bias.size > 0
    sl = np.float32(slope)
    saved = one_thread_below(2 * dst.size)
    for task in prange(N * C):
        n = task // C
        c = task - n * C
        b = bias[c] if with_bias else np.float32(0.0)
        _bias_row(df, _U(task * P), sf, _U((c * N + n) * P), P, b, relu, sl)
    set_num_threads(saved)


@njit(cache=True, nogil=True, parallel=True, fastmath={"reassoc"})
def nc_to_cn(src, dst, bias_diff):
    """dst[c, n*P:(n+1)*P] = src[n, c, :]; bias_diff[c] += the sum of what was moved.

    src: (N, C, P) a top diff; dst: (C, N*P) GEMM operand; bias_diff: (C,) or empty.
    Reassociation is allowed so the sums vectorize (float32 partials per image row,
    accumulated in float64).
    """
    N, C, P = src.shape
    sf = src.reshape(-1)
    df = dst.reshape(-1)
    with_bias = bias_diff.size > 0
    saved = one_thread_below(2 * src.size)
    for c in prange(C):
        total = 0.0
        for n in range(N):
            s = _U((n * C + c) * P)
            d = _U((c * N + n) * P)
            for p in range(_U(P)):
                df[d + p] = sf[s + p]
            if with_bias:       # summed from the copy just written (in L1): two simple
                part = np.float32(0.0)     # loops vectorize better than one fused loop
                for p in range(_U(P)):
                    part += df[d + p]
                total += part
        if with_bias:
            bias_diff[c] += total
    set_num_threads(saved)


@njit(cache=True, nogil=True, parallel=True)
def add_channel_bias(x, bias, relu=False, slope=0.0):
    """x[n, c, :] = act(x[n, c, :] + bias[c]).  x: (N, C, P); bias: (C,) or empty;
    ``relu``/``slope`` as in cn_to_nc."""
    N, C, P = x.shape
    xf = x.reshape(-1)
    with_bias = bias.size > 0
    sl = np.float32(slope)
    saved = one_thread_below(2 * x.size)
    for task in prange(N * C):
        b = bias[task % C] if with_bias else np.float32(0.0)
        start = _U(task * P)
        _bias_row(xf, start, xf, start, P, b, relu, sl)
    set_num_threads(saved)


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def channel_sum(x, out):
    """out[c] += sum over n and p of x[n, c, p].  x: (N, C, P); out: (C,)."""
    N, C, P = x.shape
    xf = x.reshape(-1)
    for c in range(C):
        total = 0.0
        for n in range(N):
            start = _U((n * C + c) * P)
            for p in range(_U(P)):
                total += xf[start + p]
        out[c] += total
