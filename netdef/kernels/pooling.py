"""Kernels for 2-D pooling (MAX, AVE, STOCHASTIC), one (n, c) plane per parallel task.

Window of output (ph, pw): rows [ph*sh - pad_h, ... + kernel_h) clipped to the image,
columns likewise.  MAX records in ``mask`` (float32, Caffe's top-mask convention) the
index h*W + w of the winner inside its plane; the first maximum in row-major order wins.
AVE divides by the window clipped to the padded image (H + pad_h), not to the image,
as Caffe does.  STOCHASTIC ignores padding (Caffe allows none).

Backward kernels add into ``bottom_diff``; with ``zero_first`` they clear each plane
first (one pass instead of a separate memset), SPP passes False to sum its levels.
x / bottom_diff: (N, C, H, W); top / top_diff / mask / rand: (N, C, PH, PW); float32.

Inner loops index with unsigned integers (numba then skips its negative-index test)
and pick maxima with selects rather than branches; the 2x2 stride-2 unpadded MAX of
LeNet-style nets has its own kernel, ~3x faster than the general one, and so has the
3x3 stride-2 unpadded AVE of CIFAR10-quick (forward, and backward for the windows inside
the image).  AVE backward divides the top gradient by the window size in float32, as
Caffe does.
"""

import numpy as np
from numba import njit, prange

_U = np.uint64

_LOWEST = np.float32(-3.4028234663852886e38)
_TINY = np.float32(1.1754943508222875e-38)


@njit(cache=True, nogil=True, parallel=True)
def max_pool_forward(x, top, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    """top = window maxima of x; mask = plane index of each maximum (-1 for an empty window)."""
    N, C, H, W = x.shape
    PH, PW = top.shape[2], top.shape[3]
    if kernel_h == 2 and kernel_w == 2 and stride_h == 2 and stride_w == 2 and pad_h == 0 \
            and pad_w == 0 and 2 * PH <= H and 2 * PW <= W:
        _max_pool_2x2(x, top, mask)
        return
    xf = x.reshape(-1)
    tf = top.reshape(-1)
    mf = mask.reshape(-1)
    for plane in prange(N * C):
        xb = plane * H * W
        tb = plane * PH * PW
        for ph in range(PH):
            hs = ph * stride_h - pad_h
            he = min(hs + kernel_h, H)
            hs = max(hs, 0)
            for pw in range(PW):
                ws = pw * stride_w - pad_w
                we = min(ws + kernel_w, W)
                ws = max(ws, 0)
                best = _LOWEST
                where = -1
                for h in range(hs, he):
                    row = _U(xb + h * W)
                    for w in range(_U(ws), _U(we)):
                        v = xf[row + w]
                        better = v > best
                        best = v if better else best
                        where = (h * W + np.int64(w)) if better else where
                t = _U(tb + ph * PW + pw)
                tf[t] = best
                mf[t] = where


@njit(cache=True, nogil=True, parallel=True)
def _max_pool_2x2(x, top, mask):
    """max_pool_forward for kernel 2, stride 2, no padding, every window inside x.

    The select chain starts from the window's first pixel; windows whose result is not
    above the lowest float (NaN first, or nothing above -FLT_MAX) are redone with the
    general rule afterwards, so the result is the general kernel's bit for bit.
    """
    N, C, H, W = x.shape
    PH, PW = top.shape[2], top.shape[3]
    xf = x.reshape(-1)
    tf = top.reshape(-1)
    mf = mask.reshape(-1)
    for plane in prange(N * C):
        for ph in range(PH):
            t0 = _U((plane * PH + ph) * PW)
            r0 = np.int32(2 * ph * W)
            r1 = r0 + np.int32(W)
            s0 = _U(plane * H * W + 2 * ph * W)
            s1 = s0 + _U(W)
            for q in range(_U(PW)):
                a = xf[s0 + 2 * q]
                b = xf[s0 + 2 * q + 1]
                c = xf[s1 + 2 * q]
                d = xf[s1 + 2 * q + 1]
                q2 = np.int32(2 * q)
                best = a
                where = r0 + q2
                g = b > best
                best = b if g else best
                where = r0 + q2 + 1 if g else where
                g = c > best
                best = c if g else best
                where = r1 + q2 if g else where
                g = d > best
                best = d if g else best
                where = r1 + q2 + 1 if g else where
                tf[t0 + q] = best
                mf[t0 + q] = np.float32(where)
            for q in range(_U(PW)):
                if not tf[t0 + q] > _LOWEST:
                    best = _LOWEST
                    where = np.int32(-1)
                    for i in range(_U(4)):
                        row = s0 if i < 2 else s1
                        v = xf[row + 2 * q + (i & 1)]
                        if v > best:
                            best = v
                            where = (r0 if i < 2 else r1) + np.int32(2 * q + (i & 1))
                    tf[t0 + q] = best
                    mf[t0 + q] = np.float32(where)


@njit(cache=True, nogil=True, parallel=True)
def mask_pool_backward(top_diff, mask, bottom_diff, zero_first):
    """bottom_diff[mask] += top_diff: the gradient of MAX (and of sampled STOCHASTIC)."""
    N, C, H, W = bottom_diff.shape
    PH, PW = top_diff.shape[2], top_diff.shape[3]
    tf = top_diff.reshape(-1)
    mf = mask.reshape(-1)
    bf = bottom_diff.reshape(-1)
    for plane in prange(N * C):
        bb = plane * H * W
        tb = plane * PH * PW
        if zero_first:
            for i in range(_U(bb), _U(bb + H * W)):
                bf[i] = 0.0
        for i in range(_U(tb), _U(tb + PH * PW)):
            where = np.int64(mf[i])
            if where >= 0:
                bf[_U(bb + where)] += tf[i]


@njit(cache=True, nogil=True, parallel=True)
def ave_pool_forward(x, top, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    """top = window sums of x / the window size clipped to the padded image."""
    N, C, H, W = x.shape
    PH, PW = top.shape[2], top.shape[3]
    if kernel_h == 3 and kernel_w == 3 and stride_h == 2 and stride_w == 2 and pad_h == 0 \
            and pad_w == 0:
        _ave_pool_3x3s2(x, top)
        return
    xf = x.reshape(-1)
    tf = top.reshape(-1)
    for plane in prange(N * C):
        xb = plane * H * W
        tb = plane * PH * PW
        for ph in range(PH):
            for pw in range(PW):
                tf[_U(tb + ph * PW + pw)] = _ave_window(xf, xb, H, W, ph, pw, kernel_h,
                                                        kernel_w, stride_h, stride_w,
                                                        pad_h, pad_w)


@njit(cache=True, nogil=True, inline="always")
def _ave_window(xf, xb, H, W, ph, pw, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    """The average of window (ph, pw) of the plane at xb: its clipped sum in row-major
    order over the window size clipped to the padded image."""
    hs = ph * stride_h - pad_h
    he = min(hs + kernel_h, H + pad_h)
    size_h = he - hs
    hs = max(hs, 0)
    he = min(he, H)
    ws = pw * stride_w - pad_w
    we = min(ws + kernel_w, W + pad_w)
    size = size_h * (we - ws)
    ws = max(ws, 0)
    we = min(we, W)
    total = np.float32(0.0)
    for h in range(hs, he):
        row = _U(xb + h * W)
        for w in range(_U(ws), _U(we)):
            total += xf[row + w]
    return total / size


@njit(cache=True, nogil=True, parallel=True)
def _ave_pool_3x3s2(x, top):
    """ave_pool_forward for kernel 3, stride 2, no padding (CIFAR10-quick's pool2/pool3).

    Windows inside x sum their 9 pixels unrolled, in the general kernel's row-major
    order (so the result is the same bit for bit, ~2.4x faster); the windows that
    the ceil rounding clips at the bottom and right edges take the general path.
    """
    N, C, H, W = x.shape
    PH, PW = top.shape[2], top.shape[3]
    xf = x.reshape(-1)
    tf = top.reshape(-1)
    qh = max(0, min(PH, (H - 3) // 2 + 1))      # output rows/columns whose window fits
    qw = max(0, min(PW, (W - 3) // 2 + 1))
    nine = np.float32(9.0)
    for plane in prange(N * C):
        xb = plane * H * W
        for ph in range(qh):
            t0 = _U((plane * PH + ph) * PW)
            s0 = _U(xb + 2 * ph * W)
            s1 = s0 + _U(W)
            s2 = s1 + _U(W)
            for q in range(_U(qw)):
                c = 2 * q
                total = np.float32(0.0) + xf[s0 + c]
                total += xf[s0 + c + 1]
                total += xf[s0 + c + 2]
                total += xf[s1 + c]
                total += xf[s1 + c + 1]
                total += xf[s1 + c + 2]
                total += xf[s2 + c]
                total += xf[s2 + c + 1]
                total += xf[s2 + c + 2]
                tf[t0 + q] = total / nine
            for pw in range(qw, PW):
                tf[t0 + _U(pw)] = _ave_window(xf, xb, H, W, ph, pw, 3, 3, 2, 2, 0, 0)
        for ph in range(qh, PH):
            for pw in range(PW):
                tf[_U((plane * PH + ph) * PW + pw)] = _ave_window(xf, xb, H, W, ph, pw, 3, 3,
                                                                  2, 2, 0, 0)


@njit(cache=True, nogil=True, parallel=True)
def ave_pool_backward(top_diff, bottom_diff, kernel_h, kernel_w, stride_h, stride_w,
                      pad_h, pad_w, zero_first):
    """Each window's top_diff / window size added to every pixel of the (clipped) window."""
    N, C, H, W = bottom_diff.shape
    PH, PW = top_diff.shape[2], top_diff.shape[3]
    tf = top_diff.reshape(-1)
    bf = bottom_diff.reshape(-1)
    # 3x3 stride 2 unpadded (CIFAR10-quick): windows inside the image add their 9 pixels
    # unrolled; every window still adds in the general order, so the bits are the same
    fast = kernel_h == 3 and kernel_w == 3 and stride_h == 2 and stride_w == 2 \
        and pad_h == 0 and pad_w == 0
    qh = max(0, min(PH, (H - 3) // 2 + 1)) if fast else 0
    qw = max(0, min(PW, (W - 3) // 2 + 1)) if fast else 0
    nine = np.float32(9.0)
    for plane in prange(N * C):
        bb = plane * H * W
        tb = plane * PH * PW
        if zero_first:
            for i in range(_U(bb), _U(bb + H * W)):
                bf[i] = 0.0
        for ph in range(PH):
            if ph < qh:
                r0 = _U(bb + 2 * ph * W)
                r1 = r0 + _U(W)
                r2 = r1 + _U(W)
                t0 = _U(tb + ph * PW)
                for q in range(_U(qw)):
                    g = tf[t0 + q] / nine
                    c = 2 * q
                    bf[r0 + c] += g
                    bf[r0 + c + 1] += g
                    bf[r0 + c + 2] += g
                    bf[r1 + c] += g
                    bf[r1 + c + 1] += g
                    bf[r1 + c + 2] += g
                    bf[r2 + c] += g
                    bf[r2 + c + 1] += g
                    bf[r2 + c + 2] += g
            hs = ph * stride_h - pad_h
            he = min(hs + kernel_h, H + pad_h)
            size_h = he - hs
            hs = max(hs, 0)
            he = min(he, H)
            for pw in range(qw if ph < qh else 0, PW):
                ws = pw * stride_w - pad_w
                we = min(ws + kernel_w, W + pad_w)
                size = size_h * (we - ws)
                ws = max(ws, 0)
                we = min(we, W)
                g = tf[_U(tb + ph * PW + pw)] / np.float32(size)  # float32, as Caffe
                for h in range(hs, he):
                    row = _U(bb + h * W)
                    for w in range(_U(ws), _U(we)):
                        bf[row + w] += g


@njit(cache=True, nogil=True, parallel=True)
def stochastic_pool_train(x, top, mask, rand, kernel_h, kernel_w, stride_h, stride_w):
    """Sample one pixel per window with probability proportional to its (non-negative) value.

    ``rand``: uniforms in [0, 1); the threshold is (1 - rand) * window sum, a draw in
    (0, 1] as Caffe's, so a zero-valued pixel is never picked over a positive one.
    The first pixel whose running sum reaches the threshold wins; mask records it.
    """
    N, C, H, W = x.shape
    PH, PW = top.shape[2], top.shape[3]
    xf = x.reshape(-1)
    tf = top.reshape(-1)
    mf = mask.reshape(-1)
    rf = rand.reshape(-1)
    for plane in prange(N * C):
        xb = plane * H * W
        tb = plane * PH * PW
        for ph in range(PH):
            hs = ph * stride_h
            he = min(hs + kernel_h, H)
            for pw in range(PW):
                ws = pw * stride_w
                we = min(ws + kernel_w, W)
                total = np.float32(0.0)
                for h in range(hs, he):
                    for w in range(ws, we):
                        total += xf[xb + h * W + w]
                thres = (np.float32(1.0) - rf[tb + ph * PW + pw]) * total
                running = np.float32(0.0)
                where = (he - 1) * W + (we - 1)
                found = False
                for h in range(hs, he):
                    for w in range(ws, we):
                        running += xf[xb + h * W + w]
                        if running >= thres:
                            where = h * W + w
                            found = True
                            break
                    if found:
                        break
                tf[tb + ph * PW + pw] = xf[xb + where]
                mf[tb + ph * PW + pw] = where


@njit(cache=True, nogil=True, inline="always")
def _sums(xf, xb, W, hs, he, ws, we):
    """(sum, sum of squares) over a window, the sum started at FLT_MIN as Caffe's is."""
    total = _TINY
    squares = np.float32(0.0)
    for h in range(hs, he):
        for w in range(ws, we):
            v = xf[xb + h * W + w]
            total += v
            squares += v * v
    return total, squares


@njit(cache=True, nogil=True, parallel=True)
def stochastic_pool_test(x, top, kernel_h, kernel_w, stride_h, stride_w):
    """top = sum(v^2) / sum(v) over each window: the probability-weighted average."""
    N, C, H, W = x.shape
    PH, PW = top.shape[2], top.shape[3]
    xf = x.reshape(-1)
    tf = top.reshape(-1)
    for plane in prange(N * C):
        xb = plane * H * W
        tb = plane * PH * PW
        for ph in range(PH):
            hs = ph * stride_h
            he = min(hs + kernel_h, H)
            for pw in range(PW):
                ws = pw * stride_w
                we = min(ws + kernel_w, W)
                total, squares = _sums(xf, xb, W, hs, he, ws, we)
                tf[tb + ph * PW + pw] = squares / total


@njit(cache=True, nogil=True, parallel=True)
def stochastic_pool_test_backward(x, top_diff, bottom_diff, kernel_h, kernel_w, stride_h,
                                  stride_w, zero_first):
    """Gradient of sum(v^2)/sum(v): (2 v S - Q) / S^2 per pixel of each window."""
    N, C, H, W = x.shape
    PH, PW = top_diff.shape[2], top_diff.shape[3]
    xf = x.reshape(-1)
    tf = top_diff.reshape(-1)
    bf = bottom_diff.reshape(-1)
    for plane in prange(N * C):
        xb = plane * H * W
        tb = plane * PH * PW
        if zero_first:
            for i in range(H * W):
                bf[xb + i] = 0.0
        for ph in range(PH):
            hs = ph * stride_h
            he = min(hs + kernel_h, H)
            for pw in range(PW):
                ws = pw * stride_w
                we = min(ws + kernel_w, W)
                total, squares = _sums(xf, xb, W, hs, he, ws, we)
                g = tf[tb + ph * PW + pw] / (total * total)
                for h in range(hs, he):
                    for w in range(ws, we):
                        i = xb + h * W + w
                        bf[i] += g * (2 * xf[i] * total - squares)
