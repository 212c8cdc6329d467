"""Kernels for Eltwise (element-wise PROD/SUM/MAX over blobs) and for Bias/Scale
(a per-channel operand broadcast over a blob viewed as (outer, dim, inner)).

Flat arrays are 1-D C-contiguous float32 of one length; "channel" arrays are 3-D
(outer, dim, inner) views with a (dim,) operand.  Outputs are preallocated and may
be the same array as an input where the docstring says so.  Large arrays run a
``prange`` loop (see ``neuron.PARALLEL_MIN``); reductions sum in float64.
"""

import numpy as np
from numba import prange

from .neuron import PARALLEL_MIN, kernel, reduction, scalar

_0 = np.float32(0.0)


# -- flat element-wise arithmetic ---------------------------------------------------
@kernel
def mul(a, b, out):
    """out = a * b (out may be a or b)."""
    n = a.size
    if n < PARALLEL_MIN:
        for i in range(n):
            out[i] = a[i] * b[i]
    else:
        for i in prange(n):
            out[i] = a[i] * b[i]


@kernel
def div(a, b, out):
    """out = a / b (out may be a or b)."""
    n = a.size
    if n < PARALLEL_MIN:
        for i in range(n):
            out[i] = a[i] / b[i]
    else:
        for i in prange(n):
            out[i] = a[i] / b[i]


@kernel
def scale(alpha, x, out):
    """out = alpha * x (out may be x)."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            out[i] = alpha * x[i]
    else:
        for i in prange(n):
            out[i] = alpha * x[i]


@kernel
def axpy(alpha, x, y):
    """y += alpha * x."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            y[i] += alpha * x[i]
    else:
        for i in prange(n):
            y[i] += alpha * x[i]


# -- Eltwise MAX ---------------------------------------------------------------------
@kernel
def max_first(a, b, y, arg):
    """y = max(a, b); arg = 0 where a > b, else 1 (ties go to b, as in Caffe)."""
    n = a.size
    if n < PARALLEL_MIN:
        for i in range(n):
            if a[i] > b[i]:
                y[i], arg[i] = a[i], 0
            else:
                y[i], arg[i] = b[i], 1
    else:
        for i in prange(n):
            if a[i] > b[i]:
                y[i], arg[i] = a[i], 0
            else:
                y[i], arg[i] = b[i], 1


@kernel
def max_next(b, index, y, arg):
    """Where b > y (strictly: ties keep the earlier blob): y = b, arg = index."""
    n = b.size
    if n < PARALLEL_MIN:
        for i in range(n):
            _max_step(b, index, y, arg, i)
    else:
        for i in prange(n):
            _max_step(b, index, y, arg, i)


@scalar
def _max_step(b, index, y, arg, i):
    """Branch-free (selects), so the loop vectorises and nothing is mispredicted."""
    take = b[i] > y[i]
    y[i] = b[i] if take else y[i]
    arg[i] = index if take else arg[i]


@kernel
def max_backward(dy, arg, index, dx):
    """dx = dy where blob ``index`` won the max, else 0."""
    n = dy.size
    if n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = dy[i] if arg[i] == index else _0
    else:
        for i in prange(n):
            dx[i] = dy[i] if arg[i] == index else _0


# -- Bias / Scale: (outer, dim, inner) with a (dim,) operand --------------------------
@kernel
def channel_add(x, b, y):
    """y[o, d, :] = x[o, d, :] + b[d] (y may be x)."""
    outer, dim, inner = x.shape
    rows = outer * dim
    if x.size < PARALLEL_MIN:
        for r in range(rows):
            o, d = r // dim, r % dim
            bd = b[d]
            for i in range(inner):
                y[o, d, i] = x[o, d, i] + bd
    else:
        for r in prange(rows):
            o, d = r // dim, r % dim
            bd = b[d]
            for i in range(inner):
                y[o, d, i] = x[o, d, i] + bd


@kernel
def channel_mul(x, s, y):
    """y[o, d, :] = x[o, d, :] * s[d] (y may be x)."""
    outer, dim, inner = x.shape
    rows = outer * dim
    if x.size < PARALLEL_MIN:
        for r in range(rows):
            o, d = r // dim, r % dim
            sd = s[d]
            for i in range(inner):
                y[o, d, i] = x[o, d, i] * sd
    else:
        for r in prange(rows):
            o, d = r // dim, r % dim
            sd = s[d]
            for i in range(inner):
                y[o, d, i] = x[o, d, i] * sd


@kernel
def channel_mul_add(x, s, b, y):
    """y[o, d, :] = x[o, d, :] * s[d] + b[d] (y may be x)."""
    outer, dim, inner = x.shape
    rows = outer * dim
    if x.size < PARALLEL_MIN:
        for r in range(rows):
            o, d = r // dim, r % dim
            sd, bd = s[d], b[d]
            for i in range(inner):
                y[o, d, i] = x[o, d, i] * sd + bd
    else:
        for r in prange(rows):
            o, d = r // dim, r % dim
            sd, bd = s[d], b[d]
            for i in range(inner):
                y[o, d, i] = x[o, d, i] * sd + bd


@reduction
def channel_sum(dy, out, accumulate):
    """out[d] (+)= sum over o, i of dy[o, d, i]: the gradient of a broadcast bias."""
    outer, dim, inner = dy.shape
    if dy.size < PARALLEL_MIN:
        for d in range(dim):
            acc = 0.0
            for o in range(outer):
                for i in range(inner):
                    acc += dy[o, d, i]
            out[d] = np.float32(acc + out[d]) if accumulate else np.float32(acc)
    else:
        for d in prange(dim):
            acc = 0.0
            for o in range(outer):
                for i in range(inner):
                    acc += dy[o, d, i]
            out[d] = np.float32(acc + out[d]) if accumulate else np.float32(acc)


@reduction
def channel_dot(dy, x, out, accumulate):
    """out[d] (+)= sum over o, i of dy[o, d, i] * x[o, d, i]: a broadcast scale's
    gradient."""
    outer, dim, inner = dy.shape
    if dy.size < PARALLEL_MIN:
        for d in range(dim):
            acc = 0.0
            for o in range(outer):
                for i in range(inner):
                    acc += np.float64(dy[o, d, i]) * np.float64(x[o, d, i])
            out[d] = np.float32(acc + out[d]) if accumulate else np.float32(acc)
    else:
        for d in prange(dim):
            acc = 0.0
            for o in range(outer):
                for i in range(inner):
                    acc += np.float64(dy[o, d, i]) * np.float64(x[o, d, i])
            out[d] = np.float32(acc + out[d]) if accumulate else np.float32(acc)
