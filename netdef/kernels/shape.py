"""Kernels for the blob-shaping and utility layers (Tile, BatchReindex, Filter,
Embed, Reduction, ArgMax).

Pure copies along contiguous blocks (Concat, Slice, Crop, Split) stay in NumPy
slicing, which is already one memcpy per row; what lives here is the work with
real arithmetic or data-dependent indexing.  Every array argument is float32,
C-contiguous, viewed as 2-D or 3-D rows; outputs are preallocated by the caller.
"""

import numpy as np
from numba import njit

# Reduction operations, numbered as ReductionParameter.ReductionOp.
SUM, ASUM, SUMSQ, MEAN = 1, 2, 3, 4


# -- Tile --------------------------------------------------------------------
@njit(cache=True, nogil=True)
def tile_forward(out, inp, tiles):
    """out: (outer, tiles*inner) = each row of inp: (outer, inner) repeated ``tiles`` times."""
    outer, inner = inp.shape
    for o in range(outer):
        for t in range(tiles):
            base = t * inner
            for i in range(inner):
                out[o, base + i] = inp[o, i]


@njit(cache=True, nogil=True)
def tile_backward(dinp, dout, tiles):
    """dinp: (outer, inner) = sum over the tiles of dout: (outer, tiles*inner) (overwrites)."""
    outer, inner = dinp.shape
    for o in range(outer):
        for i in range(inner):
            dinp[o, i] = dout[o, i]
        for t in range(1, tiles):
            base = t * inner
            for i in range(inner):
                dinp[o, i] += dout[o, base + i]


# -- row gather / scatter (BatchReindex, Filter, Embed) -----------------------
@njit(cache=True, nogil=True)
def rows_from_values(rows, values, limit, require_integer):
    """Turn float indices into int64 ``rows`` (truncating as a C cast does).

    Returns the position of the first value outside [0, limit) -- or, when
    ``require_integer``, not integer-valued -- and -1 when all are good.
    """
    for n in range(values.size):
        v = values[n]
        if not (v >= 0.0 and v < limit):  # also rejects NaN
            return n
        r = int(v)
        if require_integer and float(r) != v:
            return n
        rows[n] = r
    return -1


@njit(cache=True, nogil=True)
def gather_rows(out, inp, rows):
    """out[n, :] = inp[rows[n], :]; out: (m, inner), inp: (k, inner), rows: (m,) int64."""
    inner = out.shape[1]
    for n in range(rows.size):
        r = rows[n]
        for i in range(inner):
            out[n, i] = inp[r, i]


@njit(cache=True, nogil=True)
def scatter_add_rows(dinp, dout, rows):
    """dinp[rows[n], :] += dout[n, :] (accumulates; repeated rows add up)."""
    inner = dout.shape[1]
    for n in range(rows.size):
        r = rows[n]
        for i in range(inner):
            dinp[r, i] += dout[n, i]


@njit(cache=True, nogil=True)
def embed_forward(out, weight, bias, rows, use_bias):
    """out: (m, n) = weight: (k, n)[rows] (+ bias: (n,))."""
    num_output = out.shape[1]
    for m in range(rows.size):
        r = rows[m]
        if use_bias:
            for j in range(num_output):
                out[m, j] = weight[r, j] + bias[j]
        else:
            for j in range(num_output):
                out[m, j] = weight[r, j]


@njit(cache=True, nogil=True)
def column_sum_add(dbias, dout):
    """dbias: (n,) += sum over rows of dout: (m, n) (accumulates)."""
    m, n = dout.shape
    acc = np.zeros(n, np.float64)
    for r in range(m):
        for j in range(n):
            acc[j] += dout[r, j]
    for j in range(n):
        dbias[j] += acc[j]


# -- Reduction ---------------------------------------------------------------
@njit(cache=True, nogil=True)
def reduce_forward(out, inp, op, coeff):
    """out: (num,) = coeff * reduce(inp: (num, dim)) along the rows; sums in float64."""
    num, dim = inp.shape
    for r in range(num):
        acc = 0.0
        if op == ASUM:
            for i in range(dim):
                acc += abs(inp[r, i])
        elif op == SUMSQ:
            for i in range(dim):
                x = np.float64(inp[r, i])
                acc += x * x
        else:
            for i in range(dim):
                acc += inp[r, i]
        out[r] = acc * coeff


@njit(cache=True, nogil=True)
def reduce_backward(dinp, inp, dout, op, coeff):
    """dinp: (num, dim) from dout: (num,) (overwrites)."""
    num, dim = inp.shape
    for r in range(num):
        g = np.float32(dout[r] * coeff)
        if op == ASUM:
            for i in range(dim):
                x = inp[r, i]
                s = np.float32(1.0) if x > 0 else (np.float32(-1.0) if x < 0 else np.float32(0.0))
                dinp[r, i] = s * g
        elif op == SUMSQ:
            g2 = np.float32(2.0) * g
            for i in range(dim):
                dinp[r, i] = g2 * inp[r, i]
        else:
            for i in range(dim):
                dinp[r, i] = g


# -- ArgMax ------------------------------------------------------------------
@njit(cache=True, nogil=True)
def argmax_topk(out, inp, top_k, row_stride, index_base, value_base):
    """The ``top_k`` largest entries along axis 1 of inp: (outer, dim, inner).

    Order is descending by (value, index): of equal values the larger index comes
    first.  For row (o, p), the j-th winner's index goes to
    ``out[o*row_stride + index_base + j*inner + p]`` and its value to the same place
    from ``value_base`` (a base < 0 skips that output).  ``out`` is flat float32.
    """
    outer, dim, inner = inp.shape
    best_val = np.empty(top_k, np.float32)
    best_idx = np.empty(top_k, np.int64)
    for o in range(outer):
        for p in range(inner):
            filled = 0
            for j in range(dim):
                v = inp[o, j, p]
                # j grows, so among equal values the newcomer ranks higher.
                if filled == top_k and v < best_val[top_k - 1]:
                    continue
                pos = filled if filled < top_k else top_k - 1
                while pos > 0 and best_val[pos - 1] <= v:
                    if pos < top_k:
                        best_val[pos] = best_val[pos - 1]
                        best_idx[pos] = best_idx[pos - 1]
                    pos -= 1
                if filled < top_k:
                    filled += 1
                best_val[pos] = v
                best_idx[pos] = j
            base = o * row_stride + p
            for j in range(top_k):
                if index_base >= 0:
                    out[base + index_base + j * inner] = best_idx[j]
                if value_base >= 0:
                    out[base + value_base + j * inner] = best_val[j]
