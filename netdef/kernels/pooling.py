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
and pick maxima with selects rather than branches.  MAX runs as two unit-stride passes
per plane (rows, then columns) that the compiler vectorises; a TEST forward whose mask
nobody reads skips the argmax (``max_pool_values``).  The 2x2 stride-2 unpadded MAX of
LeNet-style nets has its own kernel, ~3x faster than the per-window one, and so has the
3x3 stride-2 unpadded AVE of CIFAR10-quick (forward, and backward for the windows inside
the image).  AVE backward divides the top gradient by the window size in float32, as
Caffe does.
"""

import numpy as np
from numba import njit, prange

from .gate import PARALLEL_MIN, one_thread_below, set_num_threads

_U = np.uint64

_LOWEST = np.float32(-3.4028234663852886e38)
_TINY = np.float32(1.1754943508222875e-38)


@njit(cache=True, nogil=True)
def max_pool_forward(x, top, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    """top = window maxima of x; mask = plane index of each maximum (-1 for an empty window)."""
    if kernel_h == 2 and kernel_w == 2 and stride_h == 2 and stride_w == 2 and pad_h == 0 \
            and pad_w == 0 and 2 * top.shape[2] <= x.shape[2] and 2 * top.shape[3] <= x.shape[3]:
        _max_pool_2x2(x, top, mask)
    else:
        _max_pool_rows(x, top, mask, True, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w)


@njit(cache=True, nogil=True)
def max_pool_values(x, top, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    """max_pool_forward's top without the mask (a TEST forward nothing reads it from)."""
    if stride_h == 1 and stride_w == 1 and 2 * pad_h == kernel_h - 1 \
            and 2 * pad_w == kernel_w - 1 and x.shape[2] > 2 * pad_h \
            and x.shape[3] > 2 * pad_w:
        _max_pool_same(x, top, kernel_h, kernel_w, pad_h, pad_w)
    else:
        _max_pool_rows(x, top, top, False, kernel_h, kernel_w, stride_h, stride_w, pad_h,
                       pad_w)


@njit(cache=True, nogil=True, parallel=True)
def _max_pool_same(x, top, kernel_h, kernel_w, pad_h, pad_w):
    """MAX values for stride 1 with the padding that keeps the size (kernel = 2 pad + 1:
    GoogLeNet's 3x3 pad-1 inception pools), in whole-plane passes.

    A plane and its output share one layout, so each pass is one flat unit-stride loop
    over the plane (14x14 rows are too short for the per-row loops to vectorise): the
    row maxima over the whole plane as if it were one long row, the pad_w columns at
    each edge (whose windows wrapped into the next row) redone clipped, then the same
    down the columns with the edge rows clipped.  Each pass scans its window in order
    with a strict >, from -FLT_MAX, so the result is the row-major first maximum's bits,
    as in ``_max_pool_rows``.
    """
    N, C, H, W = x.shape
    HW = H * W
    xf = x.reshape(-1)
    tf = top.reshape(-1)
    planes = N * C
    work = 3 * planes * HW
    blocks = min(planes, _BLOCKS) if work >= PARALLEL_MIN else 1
    saved = one_thread_below(work)
    for block in prange(blocks):
        rows = np.empty(HW, np.float32)
        for plane in range(block * planes // blocks, (block + 1) * planes // blocks):
            base = _U(plane * HW)
            _window_max(rows, _U(0), xf, base, _U(pad_w), _U(HW - pad_w), kernel_w, 1,
                        pad_w)
            for h in range(H):
                for w in range(pad_w):
                    _edge_max(rows, xf, base, h * W, w, W, pad_w)
                    _edge_max(rows, xf, base, h * W, W - 1 - w, W, pad_w)
            _window_max(tf, base, rows, _U(0), _U(pad_h * W), _U((H - pad_h) * W),
                        kernel_h, W, pad_h)
            for h in range(H):
                if h < pad_h or h >= H - pad_h:
                    _col_pass(rows, tf, base + _U(h * W), W, max(h - pad_h, 0),
                              min(h + pad_h + 1, H))
    set_num_threads(saved)


@njit(cache=True, nogil=True, inline="always")
def _edge_max(rows, xf, base, r, w, W, pad):
    """rows[r + w] = the first maximum of the plane's row at r over columns w +- pad,
    clipped to the row."""
    m = _LOWEST
    for j in range(max(w - pad, 0), min(w + pad + 1, W)):
        v = xf[base + _U(r + j)]
        m = v if v > m else m
    rows[r + w] = m


@njit(cache=True, nogil=True, inline="always")
def _window_max(df, d0, sf, s0, lo, hi, kernel, step, pad):
    """df[d0 + i] = the first maximum of sf[s0 + i + (j - pad) * step], j < kernel, for
    lo <= i < hi (lo >= pad * step): one flat pass per window offset (one pass in all for
    kernel 3)."""
    first = s0 + (lo - _U(pad * step))
    n = hi - lo
    d = d0 + lo
    if kernel == 3:
        for i in range(n):
            df[d + i] = _max3(sf, first + i, _U(step))
        return
    for i in range(n):
        df[d + i] = _LOWEST
    for j in range(kernel):
        at = first + _U(j * step)
        for i in range(n):
            v = sf[at + i]
            m = df[d + i]
            df[d + i] = v if v > m else m


_BLOCKS = 128   # planes are dealt out in at most this many blocks, each with its own scratch


@njit(cache=True, nogil=True, parallel=True)
def _max_pool_rows(x, top, mask, track, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    """MAX pooling in two passes per plane: each input row's window maxima (first maximum
    in the row), then the first maximum over each window's rows.  The winner is the
    row-major first maximum, bit for bit the per-window rule, and both passes run over
    unit-stride output rows that the compiler vectorises (2-7x the per-window loop with
    the mask, 4-12x without; docs/performance.md).

    Rows are copied into a scratch row padded with -FLT_MAX, which never wins (as
    Caffe's strict comparison from -FLT_MAX), so padded and clipped windows need no
    special case.  With ``track`` False the mask is not written (``mask`` is ignored).
    """
    N, C, H, W = x.shape
    PH, PW = top.shape[2], top.shape[3]
    xf = x.reshape(-1)
    tf = top.reshape(-1)
    mf = mask.reshape(-1)
    planes = N * C
    width = max((PW - 1) * stride_w + kernel_w, pad_w + W)
    work = 3 * planes * H * W
    blocks = min(planes, _BLOCKS) if work >= PARALLEL_MIN else 1     # scratch per block
    saved = one_thread_below(work)
    for block in prange(blocks):
        row = np.full(width, _LOWEST, np.float32)
        row_max = np.empty(H * PW, np.float32)
        row_at = np.empty(H * PW if track else 0, np.int32)
        col_at = np.empty(PW if track else 0, np.int32)
        for plane in range(block * planes // blocks, (block + 1) * planes // blocks):
            for h in range(H):
                src = _U((plane * H + h) * W)
                for w in range(_U(W)):
                    row[_U(pad_w) + w] = xf[src + w]
                out = _U(h * PW)
                first = np.int32(h * W - pad_w)
                if track:
                    _row_pass_at(row, row_max, row_at, out, PW, kernel_w, stride_w, first)
                else:
                    _row_pass(row, row_max, out, PW, kernel_w, stride_w)
            for ph in range(PH):
                hs = ph * stride_h - pad_h
                he = min(hs + kernel_h, H)
                hs = max(hs, 0)
                t = _U((plane * PH + ph) * PW)
                if track:
                    _col_pass_at(row_max, row_at, tf, mf, col_at, t, PW, hs, he)
                else:
                    _col_pass(row_max, tf, t, PW, hs, he)
    set_num_threads(saved)


@njit(cache=True, nogil=True, inline="always")
def _max3(src, j, step):
    """The first maximum of src[j], src[j + step], src[j + 2 step], from -FLT_MAX."""
    m = _LOWEST
    v = src[j]
    m = v if v > m else m
    v = src[j + step]
    m = v if v > m else m
    v = src[j + step + step]
    return v if v > m else m


@njit(cache=True, nogil=True, inline="always")
def _max3_at(row, j, i):
    """_max3 and its winner's index (i for row[j], ...; -1 when nothing beat -FLT_MAX)."""
    m = _LOWEST
    at = np.int32(-1)
    for k in range(3):
        v = row[j + _U(k)]
        g = v > m
        m = v if g else m
        at = i + np.int32(k) if g else at
    return m, at


@njit(cache=True, nogil=True, inline="always")
def _row_pass(row, row_max, out, PW, kernel_w, stride_w):
    """row_max[out + q] = the first maximum of window q of the padded row.  Stride 2 has
    its own loop: with the stride a constant the compiler vectorises the loads."""
    n = _U(PW)
    s = _U(stride_w)
    if kernel_w == 3 and stride_w == 2:
        for q in range(n):
            row_max[out + q] = _max3(row, q * _U(2), _U(1))
    elif kernel_w == 3:
        for q in range(n):
            row_max[out + q] = _max3(row, q * s, _U(1))
    else:
        for q in range(n):
            row_max[out + q] = _LOWEST
        for k in range(_U(kernel_w)):
            for q in range(n):
                v = row[q * s + k]
                m = row_max[out + q]
                row_max[out + q] = v if v > m else m


@njit(cache=True, nogil=True, inline="always")
def _row_pass_at(row, row_max, row_at, out, PW, kernel_w, stride_w, first):
    """_row_pass, also recording the winner's plane index (``first`` is padded column 0's)."""
    n = _U(PW)
    s = _U(stride_w)
    if kernel_w == 3 and stride_w == 2:
        for q in range(n):
            j = q * _U(2)
            row_max[out + q], row_at[out + q] = _max3_at(row, j, np.int32(j) + first)
    elif kernel_w == 3:
        for q in range(n):
            j = q * s
            row_max[out + q], row_at[out + q] = _max3_at(row, j, np.int32(j) + first)
    else:
        for q in range(n):
            row_max[out + q] = _LOWEST
            row_at[out + q] = -1
        for k in range(_U(kernel_w)):
            for q in range(n):
                v = row[q * s + k]
                m = row_max[out + q]
                g = v > m
                row_max[out + q] = v if g else m
                row_at[out + q] = (np.int32(q * s + k) + first) if g else row_at[out + q]


@njit(cache=True, nogil=True, inline="always")
def _three_rows(hs, n):
    """Offsets of rows hs, hs + 1, hs + 2 of a scratch with n columns."""
    r0 = _U(hs) * n
    return r0, r0 + n, r0 + n + n


@njit(cache=True, nogil=True, inline="always")
def _col_pass(row_max, tf, t, PW, hs, he):
    """tf[t + q] = the first maximum of row_max rows hs..he-1 at column q."""
    n = _U(PW)
    if he - hs == 3:
        r0 = _U(hs) * n
        for q in range(n):
            tf[t + q] = _max3(row_max, r0 + q, n)
    else:
        for q in range(n):
            tf[t + q] = _LOWEST
        for h in range(_U(hs), _U(he)):
            r = h * n
            for q in range(n):
                v = row_max[r + q]
                m = tf[t + q]
                tf[t + q] = v if v > m else m


@njit(cache=True, nogil=True, inline="always")
def _col_pass_at(row_max, row_at, tf, mf, col_at, t, PW, hs, he):
    """_col_pass, also writing the winner's plane index to mf (col_at: PW scratch)."""
    n = _U(PW)
    if he - hs == 3:
        r0, r1, r2 = _three_rows(hs, n)
        for q in range(n):
            m = _LOWEST
            at = np.int32(-1)
            v = row_max[r0 + q]
            g = v > m
            m = v if g else m
            at = row_at[r0 + q] if g else at
            v = row_max[r1 + q]
            g = v > m
            m = v if g else m
            at = row_at[r1 + q] if g else at
            v = row_max[r2 + q]
            g = v > m
            m = v if g else m
            at = row_at[r2 + q] if g else at
            tf[t + q] = m
            mf[t + q] = np.float32(at)
    else:
        for q in range(n):
            tf[t + q] = _LOWEST
            col_at[q] = -1
        for h in range(_U(hs), _U(he)):
            r = h * n
            for q in range(n):
                v = row_max[r + q]
                m = tf[t + q]
                g = v > m
                tf[t + q] = v if g else m
                col_at[q] = row_at[r + q] if g else col_at[q]
        for q in range(n):
            mf[t + q] = np.float32(col_at[q])


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
    saved = one_thread_below(N * C * (H * W + 2 * PH * PW))
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
    set_num_threads(saved)


@njit(cache=True, nogil=True, parallel=True)
def mask_pool_backward(top_diff, mask, bottom_diff, zero_first):
    """bottom_diff[mask] += top_diff: the gradient of MAX (and of sampled STOCHASTIC)."""
    N, C, H, W = bottom_diff.shape
    PH, PW = top_diff.shape[2], top_diff.shape[3]
    tf = top_diff.reshape(-1)
    mf = mask.reshape(-1)
    bf = bottom_diff.reshape(-1)
    saved = one_thread_below(N * C * (H * W + 2 * PH * PW))
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
    set_num_threads(saved)


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
    saved = one_thread_below(N * C * PH * PW * kernel_h * kernel_w)
    for plane in prange(N * C):
        xb = plane * H * W
        tb = plane * PH * PW
        for ph in range(PH):
            for pw in range(PW):
                tf[_U(tb + ph * PW + pw)] = _ave_window(xf, xb, H, W, ph, pw, kernel_h,
                                                        kernel_w, stride_h, stride_w,
                                                        pad_h, pad_w)
    set_num_threads(saved)


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
    saved = one_thread_below(N * C * (H * W + PH * PW))
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
    set_num_threads(saved)


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
    saved = one_thread_below(N * C * (H * W + PH * PW * kernel_h * kernel_w))
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
    set_num_threads(saved)


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
    saved = one_thread_below(2 * N * C * PH * PW * kernel_h * kernel_w)
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
    set_num_threads(saved)


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
    saved = one_thread_below(2 * N * C * PH * PW * kernel_h * kernel_w)
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
    set_num_threads(saved)


@njit(cache=True, nogil=True, parallel=True)
def stochastic_pool_test_backward(x, top_diff, bottom_diff, kernel_h, kernel_w, stride_h,
                                  stride_w, zero_first):
    """Gradient of sum(v^2)/sum(v): (2 v S - Q) / S^2 per pixel of each window."""
    N, C, H, W = x.shape
    PH, PW = top_diff.shape[2], top_diff.shape[3]
    xf = x.reshape(-1)
    tf = top_diff.reshape(-1)
    bf = bottom_diff.reshape(-1)
    saved = one_thread_below(2 * N * C * PH * PW * kernel_h * kernel_w)
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
    set_num_threads(saved)
