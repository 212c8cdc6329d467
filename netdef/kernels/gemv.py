"""y = W x + b for one input row and a large row-major W: the batch-1 fully connected
layer, which only streams W from memory.

OpenBLAS's SGEMV read CaffeNet's fc6 (4096 x 9216, 151 MB) at 29-33 GB/s in the net on the
2-core VM where OpenCV's own kernel reached ~41 (docs/performance.md).  This one keeps four
rows in flight per thread (four independent read streams, each reduced in vector lanes:
``fastmath`` allows the reassociation a vectorised sum needs, nothing else), which measured
10-15% faster on fc6 alone.  The sum order differs from OpenBLAS's, as OpenBLAS's differs
between its own kernels: float32 round-off of a 9216-term dot product.
"""

import numpy as np
from numba import njit, prange

from .gate import one_thread_below, set_num_threads

# Weights below this many floats stay with np.dot (they fit the caches, or the call is
# too short for the difference to matter).
GEMV_MIN = 1 << 20

_SUMS = {"reassoc", "contract"}


@njit(cache=True, nogil=True, parallel=True, fastmath=_SUMS)
def gemv_rows(w, x, bias, y):
    """y[r] = dot(w[r], x) (+ bias[r] when ``bias`` has entries); w: (R, K) C-contiguous."""
    rows, k = w.shape
    with_bias = bias.size > 0
    saved = one_thread_below(w.size)
    for block in prange((rows + 3) // 4):
        r = block * 4
        if r + 4 <= rows:
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s2 = np.float32(0.0)
            s3 = np.float32(0.0)
            for j in range(k):
                xj = x[j]
                s0 += w[r, j] * xj
                s1 += w[r + 1, j] * xj
                s2 += w[r + 2, j] * xj
                s3 += w[r + 3, j] * xj
            y[r], y[r + 1], y[r + 2], y[r + 3] = s0, s1, s2, s3
        else:
            for q in range(r, rows):
                s = np.float32(0.0)
                for j in range(k):
                    s += w[q, j] * x[j]
                y[q] = s
        if with_bias:
            for q in range(r, min(rows, r + 4)):
                y[q] += bias[q]
    set_num_threads(saved)
