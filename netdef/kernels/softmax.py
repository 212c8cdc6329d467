"""Softmax over one axis of a blob viewed as (outer, channels, inner).

The channel axis is the strided one; for inner > 1 every inner loop runs over ``inner``
with unit stride, using scratch rows of ``inner`` floats passed in by the caller (the
kernels allocate nothing); inner == 1 (classifier outputs) takes a row-wise path.
Output and input may be the same array (in-place Softmax): every element is read before
it is written at the same index.

Kernel options used across the kernels of this family: ``error_model="numpy"`` lets a
division by zero give inf/nan as in C instead of a per-division check that stops the
compiler from vectorising (measured 17x on a divide-and-sqrt loop); ``fastmath=FAST``
lets sums be reassociated so reductions vectorise too.
"""

import numpy as np
from numba import njit

FAST = {"reassoc", "nsz", "contract"}  # vectorised sums; NaN and Inf still honoured


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def _softmax_rows(y, x):
    """y: (outer, C) = softmax of each row of x: (outer, C)."""
    outer, channels = x.shape
    for o in range(outer):
        top = x[o, 0]
        for c in range(1, channels):
            if x[o, c] > top:
                top = x[o, c]
        total = np.float32(0.0)
        for c in range(channels):
            e = np.exp(x[o, c] - top)
            y[o, c] = e
            total += e
        for c in range(channels):
            y[o, c] /= total


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def softmax_forward(y, x, row_max, row_sum):
    """y: (outer, C, inner) = exp(x - max_c x) / sum_c exp(x - max_c x).

    x: (outer, C, inner); row_max, row_sum: (inner,) float32 scratch.
    """
    outer, channels, inner = x.shape
    if inner == 1:
        _softmax_rows(y.reshape(outer, channels), x.reshape(outer, channels))
        return
    for o in range(outer):
        for j in range(inner):
            row_max[j] = x[o, 0, j]
        for c in range(1, channels):
            for j in range(inner):
                v = x[o, c, j]
                if v > row_max[j]:
                    row_max[j] = v
        for j in range(inner):
            row_sum[j] = 0.0
        for c in range(channels):
            for j in range(inner):
                e = np.exp(x[o, c, j] - row_max[j])
                y[o, c, j] = e
                row_sum[j] += e
        for c in range(channels):
            for j in range(inner):
                y[o, c, j] /= row_sum[j]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def softmax_backward(dx, dy, y, row_dot):
    """dx: (outer, C, inner) = (dy - sum_c dy * y) * y (overwrites; may alias dy).

    dy, y: (outer, C, inner); row_dot: (inner,) float32 scratch.
    """
    outer, channels, inner = y.shape
    if inner == 1:
        for o in range(outer):
            dot = np.float32(0.0)
            for c in range(channels):
                dot += dy[o, c, 0] * y[o, c, 0]
            for c in range(channels):
                dx[o, c, 0] = (dy[o, c, 0] - dot) * y[o, c, 0]
        return
    for o in range(outer):
        for j in range(inner):
            row_dot[j] = 0.0
        for c in range(channels):
            for j in range(inner):
                row_dot[j] += dy[o, c, j] * y[o, c, j]
        for c in range(channels):
            for j in range(inner):
                dx[o, c, j] = (dy[o, c, j] - row_dot[j]) * y[o, c, j]
