"""Kernels of the normalisation layers: LRN (across and within channels), MVN, BatchNorm.

Blobs are viewed as (N, C, S) with S = H*W (or (rows, dim) for MVN); every inner loop
runs over S with unit stride.  Sums over many elements accumulate in float64.  Outputs
may alias inputs where the layer runs in place (MVN, BatchNorm): each element is read
before it is written at the same index.  Scratch arrays come from the caller.  Sums may
be reassociated, which lets the compiler vectorise them (several times faster).
"""

import numpy as np
from numba import njit, prange

from .gate import one_thread_below, set_num_threads
from .softmax import FAST


# -- LRN across channels ---------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def _times_pow_neg(out, a, s, beta):
    """out: (S,) = a * s^-beta.

    The common exponents (0.75 in AlexNet and GoogLeNet, 0.5, 1) take roots instead
    of a general pow, which runs several times faster and vectorises.
    """
    n = out.shape[0]
    one = np.float32(1.0)
    if beta == np.float32(0.75):
        for i in range(n):
            r = np.sqrt(s[i])
            out[i] = a[i] / (r * np.sqrt(r))
    elif beta == np.float32(0.5):
        for i in range(n):
            out[i] = a[i] / np.sqrt(s[i])
    elif beta == one:
        for i in range(n):
            out[i] = a[i] / s[i]
    else:
        for i in range(n):
            out[i] = a[i] * s[i] ** -beta


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def _lrn_across_sample(y, scale, x, size, alpha_over_size, k, beta):
    """One sample.  x, y, scale: (C, S); see ``_lrn_window_sums``."""
    _lrn_window_sums(scale, x, size, alpha_over_size, k)
    for c in range(x.shape[0]):
        _times_pow_neg(y[c], x[c], scale[c], beta)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def _lrn_window_sums(scale, x, size, alpha_over_size, k):
    """scale[c] = k + alpha/size * sum of x^2 over channels c-(size-1)/2 .. c+(size-1)/2,
    kept as a running sum over the channels (add the head, drop the tail).
    x, scale: (C, S)."""
    channels, spatial = x.shape
    pre = (size - 1) // 2
    for s in range(spatial):
        scale[0, s] = k
    for c in range(min(pre + 1, channels)):
        for s in range(spatial):
            scale[0, s] += alpha_over_size * (x[c, s] * x[c, s])
    for c in range(1, channels):
        head = c + pre
        tail = c - pre - 1
        for s in range(spatial):
            scale[c, s] = scale[c - 1, s]
        if head < channels:
            for s in range(spatial):
                scale[c, s] += alpha_over_size * (x[head, s] * x[head, s])
        if tail >= 0:
            for s in range(spatial):
                scale[c, s] -= alpha_over_size * (x[tail, s] * x[tail, s])


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def _lrn_across_sample_backward(dx, dy, x, y, scale, accum, size, cache_ratio, beta):
    """One sample.  dx = dy * scale^-beta - cache_ratio * x * window_sum(dy * y / scale).

    x, y, dy, dx, scale: (C, S); accum: (S,) scratch; cache_ratio = 2 alpha beta / size.
    """
    channels, spatial = x.shape
    pre = (size - 1) // 2
    for s in range(spatial):
        accum[s] = 0.0
    for c in range(min(pre, channels)):
        for s in range(spatial):
            accum[s] += dy[c, s] * y[c, s] / scale[c, s]
    for c in range(channels):
        head = c + pre
        tail = c - pre
        if head < channels:
            for s in range(spatial):
                accum[s] += dy[head, s] * y[head, s] / scale[head, s]
        _times_pow_neg(dx[c], dy[c], scale[c], beta)
        for s in range(spatial):
            dx[c, s] -= cache_ratio * (x[c, s] * accum[s])
        if tail >= 0:
            for s in range(spatial):
                accum[s] -= dy[tail, s] * y[tail, s] / scale[tail, s]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST,
      parallel=True)
def lrn_across_forward_parallel(y, scale, x, size, alpha_over_size, k, beta):
    """``lrn_across_forward`` with the samples spread over threads (big batches)."""
    for n in prange(x.shape[0]):
        _lrn_across_sample(y[n], scale[n], x[n], size, alpha_over_size, k, beta)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST,
      parallel=True)
def lrn_across_forward(y, scale, x, size, alpha_over_size, k, beta):
    """y, scale: (N, C, S) from x: (N, C, S), sample by sample (few samples): the window
    sums (a running sum, ``_lrn_window_sums``), then x * scale^-beta -- two roots and a
    division per element, the larger part -- with the channels spread over threads when
    the sample is big enough (``gate``).  Bit for bit ``lrn_across_forward_parallel``."""
    channels, spatial = x.shape[1], x.shape[2]
    for n in range(x.shape[0]):
        _lrn_window_sums(scale[n], x[n], size, alpha_over_size, k)
        saved = one_thread_below(8 * channels * spatial)
        for c in prange(channels):
            _times_pow_neg(y[n, c], x[n, c], scale[n, c], beta)
        set_num_threads(saved)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def lrn_across_backward(dx, dy, x, y, scale, accum, size, cache_ratio, beta):
    """dx: (N, C, S) (overwrites); accum: (N, S) scratch."""
    for n in range(x.shape[0]):
        _lrn_across_sample_backward(dx[n], dy[n], x[n], y[n], scale[n], accum[n], size,
                                    cache_ratio, beta)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST,
      parallel=True)
def lrn_across_backward_parallel(dx, dy, x, y, scale, accum, size, cache_ratio, beta):
    """``lrn_across_backward`` with the samples spread over threads (big batches)."""
    for n in prange(x.shape[0]):
        _lrn_across_sample_backward(dx[n], dy[n], x[n], y[n], scale[n], accum[n], size,
                                    cache_ratio, beta)


# -- LRN within a channel ----------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def _box_sum(out, src, tmp, pre):
    """out: (H, W) = sum of src: (H, W) over the (2 pre + 1)^2 window, clipped at the edges.

    Two separable passes (along W into tmp, then along H), each a few unit-stride sweeps.
    """
    height, width = src.shape
    for h in range(height):
        for w in range(width):
            tmp[h, w] = src[h, w]
        for d in range(1, pre + 1):
            for w in range(width - d):
                tmp[h, w] += src[h, w + d]
            for w in range(d, width):
                tmp[h, w] += src[h, w - d]
    for h in range(height):
        for w in range(width):
            out[h, w] = tmp[h, w]
        for d in range(1, pre + 1):
            if h + d < height:
                for w in range(width):
                    out[h, w] += tmp[h + d, w]
            if h - d >= 0:
                for w in range(width):
                    out[h, w] += tmp[h - d, w]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def lrn_within_forward(y, scale, x, scratch, size, alpha, beta):
    """scale = 1 + alpha * box_average(x^2); y = x * scale^-beta.

    x, y, scale: (planes, H, W); scratch: (2, H, W).  The average always divides by
    size^2: Caffe's AVE pooling with pad (size-1)/2 counts the padding.
    """
    pre = (size - 1) // 2
    area = np.float32(size * size)
    sq = scratch[0]
    tmp = scratch[1]
    height, width = x.shape[1], x.shape[2]
    for p in range(x.shape[0]):
        xp = x[p]
        sp = scale[p]
        for h in range(height):
            for w in range(width):
                sq[h, w] = xp[h, w] * xp[h, w]
        _box_sum(sp, sq, tmp, pre)
        for h in range(height):
            for w in range(width):
                sp[h, w] = np.float32(1.0) + alpha * (sp[h, w] / area)
            _times_pow_neg(y[p, h], xp[h], sp[h], beta)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def lrn_within_backward(dx, dy, x, y, scale, scratch, size, alpha, beta):
    """dx = dy * scale^-beta - 2 alpha beta / size^2 * x * box_sum(dy * y / scale).

    x, y, dy, dx, scale: (planes, H, W); scratch: (3, H, W).
    """
    pre = (size - 1) // 2
    coeff = np.float32(2.0) * alpha * beta / np.float32(size * size)
    ratio = scratch[0]
    tmp = scratch[1]
    acc = scratch[2]
    height, width = x.shape[1], x.shape[2]
    for p in range(x.shape[0]):
        for h in range(height):
            for w in range(width):
                ratio[h, w] = dy[p, h, w] * y[p, h, w] / scale[p, h, w]
        _box_sum(acc, ratio, tmp, pre)
        for h in range(height):
            _times_pow_neg(dx[p, h], dy[p, h], scale[p, h], beta)
            for w in range(width):
                dx[p, h, w] -= coeff * (x[p, h, w] * acc[h, w])


# -- MVN -------------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def mvn_forward(y, x, std, normalize_variance, eps):
    """Per row of x: (rows, dim): y = x - mean, then / (sqrt(var) + eps) when asked.

    std: (rows,) receives sqrt(var) + eps (1 when the variance is not normalised).
    """
    rows, dim = x.shape
    for r in range(rows):
        acc = 0.0
        for i in range(dim):
            acc += x[r, i]
        mean = np.float32(acc / dim)
        for i in range(dim):
            y[r, i] = x[r, i] - mean
        if normalize_variance:
            acc = 0.0
            for i in range(dim):
                acc += y[r, i] * y[r, i]
            sd = np.float32(np.sqrt(np.float32(acc / dim))) + eps
            std[r] = sd
            for i in range(dim):
                y[r, i] /= sd
        else:
            std[r] = 1.0


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def mvn_backward(dx, dy, y, std, normalize_variance):
    """Per row: dx = (dy - mean(dy) - y * mean(dy * y)) / std, or dy - mean(dy).

    Caffe's formula, which treats std + eps as std.  dx may alias dy.
    """
    rows, dim = y.shape
    for r in range(rows):
        s_dy = 0.0
        s_dyy = 0.0
        for i in range(dim):
            s_dy += dy[r, i]
            s_dyy += dy[r, i] * y[r, i]
        m_dy = np.float32(s_dy / dim)
        if normalize_variance:
            m_dyy = np.float32(s_dyy / dim)
            sd = std[r]
            for i in range(dim):
                dx[r, i] = (dy[r, i] - (m_dy + y[r, i] * m_dyy)) / sd
        else:
            for i in range(dim):
                dx[r, i] = dy[r, i] - m_dy


# -- BatchNorm -----------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def batch_norm_stats(mean, var, x):
    """mean, var: (C,) = the biased mean and variance of x: (N, C, S) over N and S."""
    num, channels, spatial = x.shape
    m = num * spatial
    for c in range(channels):
        acc = 0.0
        for n in range(num):
            for s in range(spatial):
                acc += x[n, c, s]
        mu = np.float32(acc / m)
        acc = 0.0
        for n in range(num):
            for s in range(spatial):
                d = x[n, c, s] - mu
                acc += d * d
        mean[c] = mu
        var[c] = acc / m


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def batch_norm_forward(y, x_norm, x, mean, std, keep_norm):
    """y: (N, C, S) = (x - mean) / std per channel; copied to x_norm when ``keep_norm``.

    y may alias x (in place).  x_norm keeps the normalised values for backward, since a
    later in-place layer may overwrite y.
    """
    num, channels, spatial = x.shape
    for n in range(num):
        for c in range(channels):
            mu = mean[c]
            sd = std[c]
            for s in range(spatial):
                v = (x[n, c, s] - mu) / sd
                y[n, c, s] = v
            if keep_norm:
                for s in range(spatial):
                    x_norm[n, c, s] = y[n, c, s]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def batch_norm_backward(dx, dy, x_norm, std, sums):
    """Batch statistics: dx = (dy - mean(dy) - x_norm * mean(dy * x_norm)) / std.

    Means over N and S per channel; dx may alias dy; sums: (2, C) float64 scratch.
    """
    num, channels, spatial = dy.shape
    m = num * spatial
    for c in range(channels):
        sums[0, c] = 0.0
        sums[1, c] = 0.0
    for n in range(num):
        for c in range(channels):
            a = 0.0
            b = 0.0
            for s in range(spatial):
                g = dy[n, c, s]
                a += g
                b += g * x_norm[n, c, s]
            sums[0, c] += a
            sums[1, c] += b
    for n in range(num):
        for c in range(channels):
            m_dy = np.float32(sums[0, c] / m)
            m_dyy = np.float32(sums[1, c] / m)
            sd = std[c]
            for s in range(spatial):
                dx[n, c, s] = (dy[n, c, s] - (m_dy + x_norm[n, c, s] * m_dyy)) / sd


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def batch_norm_backward_global(dx, dy, std):
    """Stored statistics: dx: (N, C, S) = dy / std per channel (may alias dy)."""
    num, channels, spatial = dy.shape
    for n in range(num):
        for c in range(channels):
            sd = std[c]
            for s in range(spatial):
                dx[n, c, s] = dy[n, c, s] / sd
