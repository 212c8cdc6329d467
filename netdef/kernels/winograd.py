"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution with 16 multiplies per 2x2 output tile
instead of 36 (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks").

The work splits into three numba transforms and one batched GEMM through numpy:

    U[e, k, c] = (G g[k, c] G^T)[e]           weights, (16, K, C)
    V[e, c, t] = (B^T d[c, t] B)[e]            4x4 input tiles d (stride 2), (16, C, T)
    M[e]       = U[e] @ V[e]                    np.matmul, (16, K, T)
    y[tile]    = A^T M[:, k, t] A (+ bias)      2x2 outputs per tile

with T = N * tiles_h * tiles_w and e the 16 positions of a 4x4 tile.  Input pixels in
the padding (and past the image, for the last tile row/column) read as zero; output
pixels past the image are dropped.  Only the forward pass lives here; the data gradient
of a convolution is this same product with the filters rotated by 180 degrees and their
in/out channels swapped (winograd_general.flip_filters) and padding 2 - pad.
"""

import numpy as np
from numba import njit, prange

from .gate import one_thread_below, set_num_threads
from .winograd_general import group_blocks, tiles

_U = np.uint64

TILE = 2        # outputs per tile side
ALPHA = 4       # input tile side (TILE + 3 - 1)


@njit(cache=True, nogil=True, parallel=True)
def transform_filters(w, u):
    """u[:, k, c] = G w[k, c] G^T flattened; w: (K, C, 3, 3); u: (16, K, C)."""
    K, C = w.shape[0], w.shape[1]
    saved = one_thread_below(4 * u.size)
    for k in prange(K):
        t = np.empty((4, 3), np.float32)
        for c in range(C):
            g = w[k, c]
            for j in range(3):      # t = G g (4x3)
                t[0, j] = g[0, j]
                t[1, j] = 0.5 * (g[0, j] + g[1, j] + g[2, j])
                t[2, j] = 0.5 * (g[0, j] - g[1, j] + g[2, j])
                t[3, j] = g[2, j]
            for i in range(4):      # (G g) G^T (4x4)
                u[4 * i + 0, k, c] = t[i, 0]
                u[4 * i + 1, k, c] = 0.5 * (t[i, 0] + t[i, 1] + t[i, 2])
                u[4 * i + 2, k, c] = 0.5 * (t[i, 0] - t[i, 1] + t[i, 2])
                u[4 * i + 3, k, c] = t[i, 2]
    set_num_threads(saved)


@njit(cache=True, nogil=True, parallel=True)
def transform_input(x, v, pad_h, pad_w, tiles_h, tiles_w):
    """v[e, c*T + t] = (B^T d B)[e], d the 4x4 input tile t of channel c (zero outside x).

    x: (N, C, H, W); v: (16, >= C*T), T = N * tiles_h * tiles_w (see ``Workspace`` for
    why the rows may be longer).  One parallel task per channel.
    Per tile row, the 4 input rows are first copied into a zero-padded scratch (so the
    tile loop has no bounds tests); the tile loop then writes 16 unit-stride streams.
    """
    N, C, H, W = x.shape
    xf = x.reshape(-1)
    vf = v.reshape(-1)
    T = N * tiles_h * tiles_w
    plane_v = _U(v.shape[1])
    wp = 2 * tiles_w + 2
    half = wp // 2
    # the scratch columns 2j (j in [lo_e, hi_e)) and 2j + 1 (j in [lo_o, hi_o)) inside x
    lo_e, hi_e = (pad_w + 1) // 2, min(half, (W - 1 + pad_w) // 2 + 1)
    lo_o, hi_o = pad_w // 2, min(half, (W - 2 + pad_w) // 2 + 1)
    saved = one_thread_below(4 * v.size)
    for c in prange(C):
        buf = np.zeros(4 * wp, np.float32)     # padding columns stay zero throughout
        for n in range(N):
            xb = (n * C + c) * H * W
            for th in range(tiles_h):
                h0 = 2 * th - pad_h
                for i in range(4):
                    h = h0 + i
                    even = _U(i * wp)            # column 2j at even + j, 2j + 1 at odd + j
                    odd = even + _U(half)
                    if 0 <= h < H:
                        row = xb + h * W - pad_w
                        for j in range(lo_e, hi_e):
                            buf[even + _U(j)] = xf[_U(row + 2 * j)]
                        for j in range(lo_o, hi_o):
                            buf[odd + _U(j)] = xf[_U(row + 2 * j + 1)]
                    else:
                        for j in range(lo_e, hi_e):
                            buf[even + _U(j)] = 0.0
                        for j in range(lo_o, hi_o):
                            buf[odd + _U(j)] = 0.0
                t0 = _U(c * T + (n * tiles_h + th) * tiles_w)
                _input_tile_row(buf, vf, t0, plane_v, tiles_w, wp)
    set_num_threads(saved)


@njit(cache=True, nogil=True, inline="always")
def _input_tile_row(buf, vf, t0, plane_v, tiles_w, wp):
    """B^T d B for the tiles_w tiles of one tile row held in ``buf`` (4 rows of wp)."""
    half = _U(wp // 2)
    e0, e1, e2, e3 = _U(0), _U(wp), _U(2 * wp), _U(3 * wp)
    for tw in range(_U(tiles_w)):
        # row i of the tile: even[tw], odd[tw], even[tw + 1], odd[tw + 1]
        # r = B^T d, per column: d0 - d2, d1 + d2, d2 - d1, d1 - d3
        x00, x01 = buf[e0 + tw], buf[e0 + half + tw]
        x02, x03 = buf[e0 + tw + 1], buf[e0 + half + tw + 1]
        x10, x11 = buf[e1 + tw], buf[e1 + half + tw]
        x12, x13 = buf[e1 + tw + 1], buf[e1 + half + tw + 1]
        x20, x21 = buf[e2 + tw], buf[e2 + half + tw]
        x22, x23 = buf[e2 + tw + 1], buf[e2 + half + tw + 1]
        x30, x31 = buf[e3 + tw], buf[e3 + half + tw]
        x32, x33 = buf[e3 + tw + 1], buf[e3 + half + tw + 1]
        a0, a1, a2, a3 = x00 - x20, x01 - x21, x02 - x22, x03 - x23
        b0, b1, b2, b3 = x10 + x20, x11 + x21, x12 + x22, x13 + x23
        c0, c1, c2, c3 = x20 - x10, x21 - x11, x22 - x12, x23 - x13
        d0, d1, d2, d3 = x10 - x30, x11 - x31, x12 - x32, x13 - x33
        t = t0 + tw
        vf[t] = a0 - a2
        vf[t + plane_v] = a1 + a2
        vf[t + 2 * plane_v] = a2 - a1
        vf[t + 3 * plane_v] = a1 - a3
        vf[t + 4 * plane_v] = b0 - b2
        vf[t + 5 * plane_v] = b1 + b2
        vf[t + 6 * plane_v] = b2 - b1
        vf[t + 7 * plane_v] = b1 - b3
        vf[t + 8 * plane_v] = c0 - c2
        vf[t + 9 * plane_v] = c1 + c2
        vf[t + 10 * plane_v] = c2 - c1
        vf[t + 11 * plane_v] = c1 - c3
        vf[t + 12 * plane_v] = d0 - d2
        vf[t + 13 * plane_v] = d1 + d2
        vf[t + 14 * plane_v] = d2 - d1
        vf[t + 15 * plane_v] = d1 - d3


@njit(cache=True, nogil=True, parallel=True)
def transform_output(m, y, bias, tiles_h, tiles_w, relu, slope):
    """y[n, k, 2th:2th+2, 2tw:2tw+2] = act(A^T m[:, k, t] A + bias[k]) (cropped to y);
    act: a fused (leaky) ReLU max(z, 0) + slope * min(z, 0) when ``relu``.

    m: (16, >= K*T) as ``v`` in transform_input; y: (N, K, OH, OW); bias: (K,) or
    empty.  One task per (image, k); per tile row, the tile loop reads 16 unit-stride
    streams into a 2-row scratch, which is then copied (cropped) into y.
    """
    N, K, OH, OW = y.shape
    T = N * tiles_h * tiles_w
    mf = m.reshape(-1)
    yf = y.reshape(-1)
    plane_m = _U(m.shape[1])
    with_bias = bias.size > 0
    wp = 2 * tiles_w
    sl = np.float32(slope)
    zero = np.float32(0.0)
    saved = one_thread_below(4 * m.size)
    for task in prange(N * K):
        n = task // K
        k = task - n * K
        b = bias[k] if with_bias else np.float32(0.0)
        buf = np.empty(2 * wp, np.float32)
        for th in range(tiles_h):
            t0 = _U(k * T + (n * tiles_h + th) * tiles_w)
            _output_tile_row(mf, buf, t0, plane_m, tiles_w, wp, b)
            for i in range(2):
                oh = 2 * th + i
                if oh < OH:
                    dst = _U(task * OH * OW + oh * OW)
                    src = _U(i * wp)
                    if relu:
                        for q in range(_U(OW)):
                            z = buf[src + q]
                            yf[dst + q] = max(z, zero) + sl * min(z, zero)
                    else:
                        for q in range(_U(OW)):
                            yf[dst + q] = buf[src + q]
    set_num_threads(saved)


@njit(cache=True, nogil=True, inline="always")
def _output_tile_row(mf, buf, t0, plane_m, tiles_w, wp, b):
    """A^T m A + b for one tile row: 2 output rows of 2 * tiles_w into ``buf``."""
    row1 = _U(wp)
    for tw in range(_U(tiles_w)):
        t = t0 + tw
        p = plane_m
        # s = A^T m (2 x 4): rows m0 + m1 + m2 and m1 - m2 - m3 of the 4x4 tile
        m4, m5, m6, m7 = mf[t + 4 * p], mf[t + 5 * p], mf[t + 6 * p], mf[t + 7 * p]
        m8, m9, m10, m11 = mf[t + 8 * p], mf[t + 9 * p], mf[t + 10 * p], mf[t + 11 * p]
        s0 = mf[t] + m4 + m8
        s1 = mf[t + p] + m5 + m9
        s2 = mf[t + 2 * p] + m6 + m10
        s3 = mf[t + 3 * p] + m7 + m11
        u0 = m4 - m8 - mf[t + 12 * p]
        u1 = m5 - m9 - mf[t + 13 * p]
        u2 = m6 - m10 - mf[t + 14 * p]
        u3 = m7 - m11 - mf[t + 15 * p]
        q = 2 * tw
        buf[q] = s0 + s1 + s2 + b
        buf[q + 1] = s1 - s2 - s3 + b
        buf[row1 + q] = u0 + u1 + u2 + b
        buf[row1 + q + 1] = u1 - u2 - u3 + b


# Floats added to each of the 16 rows of V and M: the transforms write/read 16 streams a
# row apart, and rows a multiple of 4 KiB long put all 16 in one L1 cache set (measured:
# the input transform ran 5x slower at VGG's 64 x 56 x 56).
ROW_PAD = 16


class Workspace:
    """Buffers for one input shape, reused across calls (the hot path allocates nothing);
    with ``group`` > 1 the filters are (K, C / group, 3, 3) and each group's blocks of U,
    V and M multiply each other only."""

    def __init__(self, num, channels, num_output, out_h, out_w, group=1):
        self.tiles_h, self.tiles_w = tiles(out_h, out_w, TILE)
        count = num * self.tiles_h * self.tiles_w
        self.blocks = group_blocks(num_output, channels, group)
        self.u = np.empty((16, num_output, channels // group), np.float32)
        self.v_rows = np.empty((16, channels * count + ROW_PAD), np.float32)
        self.m_rows = np.empty((16, num_output * count + ROW_PAD), np.float32)
        # the same memory as batched GEMM operands: (16, C, T) and (16, K, T) views
        self.v = self.v_rows[:, :channels * count].reshape(16, channels, count)
        self.m = self.m_rows[:, :num_output * count].reshape(16, num_output, count)


def conv3x3(x, w, bias, y, pad_h, pad_w, work, filters_ready=False, relu_slope=None):
    """y = conv(x, w) + bias, 3x3 kernel, stride 1, via F(2x2, 3x3).

    x: (N, C, H, W); w: (K, C / group, 3, 3); y: (N, K, OH, OW); bias: (K,) or empty.
    ``filters_ready``: ``work.u`` already holds the transformed ``w``; ``relu_slope``:
    not None fuses a (leaky) ReLU of that slope into the output transform.
    """
    if not filters_ready:
        transform_filters(w, work.u)
    transform_input(x, work.v_rows, pad_h, pad_w, work.tiles_h, work.tiles_w)
    for k, c in work.blocks:
        np.matmul(work.u[:, k], work.v[:, c], out=work.m[:, k])
    transform_output(work.m_rows, y, bias, work.tiles_h, work.tiles_w,
                     relu_slope is not None, float(relu_slope or 0.0))
