"""Element-wise (neuron) kernels: one forward/backward pair per activation.

Array arguments are flat (1-D) C-contiguous float32 arrays of one length; outputs
are preallocated by the caller and may be the same array as an input (in-place
layers: ``y is x`` forward, ``dx is dy`` backward).  Scalar parameters arrive as
``np.float32`` so the arithmetic stays in float32, as Caffe's does.

Each kernel runs a plain loop below ``PARALLEL_MIN`` elements and a ``prange`` loop
above it, so small blobs never pay for waking the thread pool (see gate.py).  ``error_model=
"numpy"`` drops the divide-by-zero check (which blocks SIMD) and gives C's inf/nan,
as Caffe does.  Backward kernels overwrite ``dx``.
"""

import math

import numpy as np
from numba import njit, prange

from .gate import PARALLEL_MIN

kernel = njit(cache=True, nogil=True, parallel=True, error_model="numpy")
scalar = njit(cache=True, nogil=True, error_model="numpy")
# Sums may be reassociated so that they vectorise (float64 accumulators: ~15x faster,
# as accurate as the in-order float64 sum for float32 terms).
reduction = njit(cache=True, nogil=True, parallel=True, error_model="numpy",
                 fastmath={"reassoc"})

_0 = np.float32(0.0)
_HALF = np.float32(0.5)
_1 = np.float32(1.0)
_2 = np.float32(2.0)

# tanh(v) ~= v * P(v^2) / Q(v^2) on [-_TANH_CLAMP, _TANH_CLAMP] (where float32 tanh
# reaches +-1); a minimax rational fit, a few ulp from the correctly rounded value,
# branch-free so the loop vectorises (libm's tanhf does not: ~25x slower here).
_TANH_CLAMP = np.float32(7.90531110763549805)
_TANH_TINY = np.float32(4e-4)
_P1, _P3, _P5, _P7, _P9, _P11, _P13 = (np.float32(c) for c in (
    4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05,
    5.12229709037114e-08, -8.60467152213735e-11, 2.00018790482477e-13,
    -2.76076847742355e-16))
_Q0, _Q2, _Q4, _Q6 = (np.float32(c) for c in (
    4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
    1.19825839466702e-06))

# BNLL's backward clamps the exponent here, as Caffe does (exp(50) still fits).
_BNLL_THRESHOLD = np.float32(50.0)


@scalar
def tanh32(v):
    """float32 tanh, vectorisable (see _TANH_CLAMP)."""
    c = min(max(v, -_TANH_CLAMP), _TANH_CLAMP)
    c2 = c * c
    p = _P13
    p = p * c2 + _P11
    p = p * c2 + _P9
    p = p * c2 + _P7
    p = p * c2 + _P5
    p = p * c2 + _P3
    p = p * c2 + _P1
    q = _Q6
    q = q * c2 + _Q4
    q = q * c2 + _Q2
    q = q * c2 + _Q0
    r = (p * c) / q
    return r if abs(v) >= _TANH_TINY else v  # tiny v, and NaN, pass through


@scalar
def sigmoid32(v):
    """Caffe's sigmoid, 0.5 * tanh(0.5 v) + 0.5 (no overflow for any v)."""
    return _HALF * tanh32(_HALF * v) + _HALF


@scalar
def same_buffer(a, b):
    """True when the flat arrays a and b start at the same address (an in-place call).

    The compiler vectorises ``b[i] = f(a[i])`` only after a run-time test that a and b
    do not overlap; an in-place call fails it and runs the scalar loop, 2-3x slower.
    The in-place loop written with one array name, ``a[i] = f(a[i])``, needs no test.
    """
    return a.ctypes.data == b.ctypes.data


# -- ReLU ----------------------------------------------------------------------
@scalar
def _relu(v, slope):
    """Caffe's max(v, 0) + slope * min(v, 0) with std::max/min's NaN and zero rules.

    Always arithmetic, never ``v if v > 0 else ...``: in place, that form lets the
    compiler skip the store where v is kept, and the branchy loop it leaves runs 3x
    slower.  Negative v gives +0.0 at slope 0, as in Caffe.
    """
    return (_0 if v < _0 else v) + slope * (_0 if _0 < v else v)


@kernel
def relu_forward(x, y, slope):
    """y = x (x > 0), slope * x (x <= 0)."""
    n = x.size
    if same_buffer(x, y):       # in place: one name for the array (see same_buffer)
        if n < PARALLEL_MIN:
            for i in range(n):
                x[i] = _relu(x[i], slope)
        else:
            for i in prange(n):
                x[i] = _relu(x[i], slope)
    elif n < PARALLEL_MIN:
        for i in range(n):
            y[i] = _relu(x[i], slope)
    else:
        for i in prange(n):
            y[i] = _relu(x[i], slope)


@scalar
def _relu_grad(v, g, slope):
    """Caffe's g * ((v > 0) + slope * (v <= 0)); arithmetic for the reason in _relu."""
    return g * ((_1 if v > _0 else _0) + slope * (_1 if v <= _0 else _0))


@kernel
def relu_backward(x, dy, dx, slope):
    """dx = dy * (1 if x > 0 else slope).  ``x`` may be the top when slope >= 0."""
    n = x.size
    if same_buffer(dy, dx):
        if n < PARALLEL_MIN:
            for i in range(n):
                dy[i] = _relu_grad(x[i], dy[i], slope)
        else:
            for i in prange(n):
                dy[i] = _relu_grad(x[i], dy[i], slope)
    elif n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = _relu_grad(x[i], dy[i], slope)
    else:
        for i in prange(n):
            dx[i] = _relu_grad(x[i], dy[i], slope)


# -- Sigmoid, TanH ---------------------------------------------------------------
@kernel
def sigmoid_forward(x, y):
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            y[i] = sigmoid32(x[i])
    else:
        for i in prange(n):
            y[i] = sigmoid32(x[i])


@kernel
def sigmoid_backward(y, dy, dx):
    """dx = dy * y * (1 - y), from the top alone."""
    n = y.size
    if n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = dy[i] * y[i] * (_1 - y[i])
    else:
        for i in prange(n):
            dx[i] = dy[i] * y[i] * (_1 - y[i])


@kernel
def tanh_forward(x, y):
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            y[i] = tanh32(x[i])
    else:
        for i in prange(n):
            y[i] = tanh32(x[i])


@kernel
def tanh_backward(y, dy, dx):
    """dx = dy * (1 - y^2), from the top alone."""
    n = y.size
    if n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = dy[i] * (_1 - y[i] * y[i])
    else:
        for i in prange(n):
            dx[i] = dy[i] * (_1 - y[i] * y[i])


# -- AbsVal ----------------------------------------------------------------------
@kernel
def absval_forward(x, y):
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            y[i] = abs(x[i])
    else:
        for i in prange(n):
            y[i] = abs(x[i])


@scalar
def _signed(v, g):
    """sign(v) * g with sign(0) = 0."""
    return g if v > _0 else (-g if v < _0 else _0)


@kernel
def absval_backward(x, dy, dx):
    """dx = sign(x) * dy."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = _signed(x[i], dy[i])
    else:
        for i in prange(n):
            dx[i] = _signed(x[i], dy[i])


# -- BNLL (softplus) -------------------------------------------------------------
@scalar
def _bnll(v):
    """log(1 + e^v) = max(v, 0) + log1p(e^-|v|), without overflow or cancellation.

    log1p(e) is formed as log(t) * e / (t - 1), t = 1 + e (exact to float32
    round-off, and about 3x cheaper than libm's log1p here).
    """
    e = math.exp(-abs(v))
    t = _1 + e
    return max(v, _0) + (e if t == _1 else math.log(t) * (e / (t - _1)))


@kernel
def bnll_forward(x, y):
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            y[i] = _bnll(x[i])
    else:
        for i in prange(n):
            y[i] = _bnll(x[i])


@scalar
def _bnll_grad(v, g):
    e = math.exp(min(v, _BNLL_THRESHOLD))
    return g * e / (e + _1)


@kernel
def bnll_backward(x, dy, dx):
    """dx = dy * e^x / (1 + e^x)."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = _bnll_grad(x[i], dy[i])
    else:
        for i in prange(n):
            dx[i] = _bnll_grad(x[i], dy[i])


# -- Clip ------------------------------------------------------------------------
@kernel
def clip_forward(x, y, lo, hi):
    """y = max(lo, min(x, hi))."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            y[i] = max(lo, min(x[i], hi))
    else:
        for i in prange(n):
            y[i] = max(lo, min(x[i], hi))


@scalar
def _clip_grad(v, g, lo, hi):
    return g if (v >= lo and v <= hi) else _0


@kernel
def clip_backward(x, dy, dx, lo, hi):
    """dx = dy where lo <= x <= hi, else 0."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = _clip_grad(x[i], dy[i], lo, hi)
    else:
        for i in prange(n):
            dx[i] = _clip_grad(x[i], dy[i], lo, hi)


# -- ELU -------------------------------------------------------------------------
@scalar
def _elu(v, alpha):
    # exp for every element, then a select: a branch on x's sign would be
    # mispredicted half the time.
    neg = alpha * (math.exp(min(v, _0)) - _1)
    return v if v > _0 else neg


@kernel
def elu_forward(x, y, alpha):
    """y = x (x > 0), alpha * (e^x - 1) (x <= 0)."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            y[i] = _elu(x[i], alpha)
    else:
        for i in prange(n):
            y[i] = _elu(x[i], alpha)


@scalar
def _elu_grad(v, out, g, alpha):
    return g if v > _0 else g * (out + alpha)


@kernel
def elu_backward(x, y, dy, dx, alpha):
    """dx = dy (x > 0), dy * (y + alpha) = dy * alpha * e^x (x <= 0).

    ``x`` may be the top itself when alpha >= 0: the sign of x survives in y.
    """
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = _elu_grad(x[i], y[i], dy[i], alpha)
    else:
        for i in prange(n):
            dx[i] = _elu_grad(x[i], y[i], dy[i], alpha)


# -- Exp, Log --------------------------------------------------------------------
@kernel
def exp_forward(x, y, inner_scale, outer_scale):
    """y = outer_scale * e^(inner_scale * x)  (= base^(shift + scale * x))."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            y[i] = math.exp(inner_scale * x[i]) * outer_scale
    else:
        for i in prange(n):
            y[i] = math.exp(inner_scale * x[i]) * outer_scale


@kernel
def exp_backward(y, dy, dx, inner_scale):
    """dx = dy * y * inner_scale, from the top alone."""
    n = y.size
    if n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = y[i] * dy[i] * inner_scale
    else:
        for i in prange(n):
            dx[i] = y[i] * dy[i] * inner_scale


@kernel
def log_forward(x, y, scale, shift, base_scale):
    """y = base_scale * ln(scale * x + shift)  (= log_base(shift + scale * x))."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            y[i] = math.log(scale * x[i] + shift) * base_scale
    else:
        for i in prange(n):
            y[i] = math.log(scale * x[i] + shift) * base_scale


@kernel
def log_backward(x, dy, dx, scale, shift, numerator):
    """dx = dy * numerator / (scale * x + shift), numerator = scale * base_scale."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = _1 / (scale * x[i] + shift) * numerator * dy[i]
    else:
        for i in prange(n):
            dx[i] = _1 / (scale * x[i] + shift) * numerator * dy[i]


# -- Power -----------------------------------------------------------------------
@kernel
def power_forward(x, y, power, scale, shift):
    """y = (shift + scale * x)^power  (the constant case is the layer's)."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            y[i] = (scale * x[i] + shift) ** power
    else:
        for i in prange(n):
            y[i] = (scale * x[i] + shift) ** power


@kernel
def power_backward(x, y, dy, dx, power, scale, shift):
    """dx = dy * power * scale * (shift + scale * x)^(power - 1), as Caffe forms it:
    from y / x when shift == 0, else y / (shift + scale * x).  (power 1 or 2, and
    a constant output, are the layer's cheaper special cases.)"""
    n = x.size
    if shift == _0:
        if n < PARALLEL_MIN:
            for i in range(n):
                dx[i] = y[i] / x[i] * power * dy[i]
        else:
            for i in prange(n):
                dx[i] = y[i] / x[i] * power * dy[i]
    else:
        diff_scale = power * scale
        if n < PARALLEL_MIN:
            for i in range(n):
                dx[i] = y[i] / (scale * x[i] + shift) * diff_scale * dy[i]
        else:
            for i in prange(n):
                dx[i] = y[i] / (scale * x[i] + shift) * diff_scale * dy[i]


@kernel
def square_backward(x, dy, dx, a, b):
    """dx = dy * (a * x + b): Power's gradient for power == 2 (a = 2 scale^2,
    b = 2 scale shift)."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = (a * x[i] + b) * dy[i]
    else:
        for i in prange(n):
            dx[i] = (a * x[i] + b) * dy[i]


@kernel
def scale_backward(dy, dx, a):
    """dx = a * dy: a constant derivative (Power with power 1, or a constant output)."""
    n = dy.size
    if n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = a * dy[i]
    else:
        for i in prange(n):
            dx[i] = a * dy[i]


# -- Swish -----------------------------------------------------------------------
@kernel
def swish_forward(x, y, sig, beta):
    """sig = sigmoid(beta * x); y = x * sig (sig is kept for backward)."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            s = sigmoid32(beta * x[i])
            sig[i] = s
            y[i] = x[i] * s
    else:
        for i in prange(n):
            s = sigmoid32(beta * x[i])
            sig[i] = s
            y[i] = x[i] * s


@kernel
def swish_backward(y, sig, dy, dx, beta):
    """dx = dy * (beta y + sig (1 - beta y)), from the top and the kept sigmoid."""
    n = y.size
    if n < PARALLEL_MIN:
        for i in range(n):
            by = beta * y[i]
            dx[i] = dy[i] * (by + sig[i] * (_1 - by))
    else:
        for i in prange(n):
            by = beta * y[i]
            dx[i] = dy[i] * (by + sig[i] * (_1 - by))


# -- Threshold -------------------------------------------------------------------
@kernel
def threshold_forward(x, y, threshold):
    """y = 1 where x > threshold, else 0 (no gradient)."""
    n = x.size
    if n < PARALLEL_MIN:
        for i in range(n):
            y[i] = _1 if x[i] > threshold else _0
    else:
        for i in prange(n):
            y[i] = _1 if x[i] > threshold else _0


# -- Dropout ---------------------------------------------------------------------
@scalar
def _dropped(v, draw, ratio, scale):
    """Caffe's v * mask * scale, mask = 1 where the uniform draw >= ratio, else 0."""
    return v * (_1 if draw >= ratio else _0) * scale


@kernel
def dropout_forward(x, u, y, ratio, scale):
    """Keep x (times scale = 1 / (1 - ratio)) where the uniform draw u >= ratio."""
    n = x.size
    if same_buffer(x, y):
        if n < PARALLEL_MIN:
            for i in range(n):
                x[i] = _dropped(x[i], u[i], ratio, scale)
        else:
            for i in prange(n):
                x[i] = _dropped(x[i], u[i], ratio, scale)
    elif n < PARALLEL_MIN:
        for i in range(n):
            y[i] = _dropped(x[i], u[i], ratio, scale)
    else:
        for i in prange(n):
            y[i] = _dropped(x[i], u[i], ratio, scale)


@kernel
def dropout_backward(u, dy, dx, ratio, scale):
    """dx = dy * scale where forward kept the unit (u >= ratio), else 0."""
    n = u.size
    if same_buffer(dy, dx):
        if n < PARALLEL_MIN:
            for i in range(n):
                dy[i] = _dropped(dy[i], u[i], ratio, scale)
        else:
            for i in prange(n):
                dy[i] = _dropped(dy[i], u[i], ratio, scale)
    elif n < PARALLEL_MIN:
        for i in range(n):
            dx[i] = _dropped(dy[i], u[i], ratio, scale)
    else:
        for i in prange(n):
            dx[i] = _dropped(dy[i], u[i], ratio, scale)


# -- PReLU -----------------------------------------------------------------------
@kernel
def prelu_forward(x, y, slope, shared):
    """x, y: (num, channels, dim); slope: (channels,), or (1,) when ``shared``."""
    num, channels, dim = x.shape
    rows = num * channels
    if x.size < PARALLEL_MIN:
        for r in range(rows):
            n, c = r // channels, r % channels
            a = slope[0] if shared else slope[c]
            for i in range(dim):
                y[n, c, i] = _relu(x[n, c, i], a)
    else:
        for r in prange(rows):
            n, c = r // channels, r % channels
            a = slope[0] if shared else slope[c]
            for i in range(dim):
                y[n, c, i] = _relu(x[n, c, i], a)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _prelu_channel(x, dy, dx, slope, c, want_dx):
    """One channel's sum of dy * min(x, 0) (float64); writes dx[:, c] if asked.

    Branch-free (min, select) so that it vectorises: x's sign is random, and a
    branch on it would be mispredicted half the time.
    """
    num, _, dim = x.shape
    acc = 0.0
    for n in range(num):
        if want_dx:
            for i in range(dim):
                v = x[n, c, i]
                g = dy[n, c, i]
                acc += np.float64(g) * np.float64(min(v, _0))
                dx[n, c, i] = _relu_grad(v, g, slope)
        else:
            for i in range(dim):
                acc += np.float64(dy[n, c, i]) * np.float64(min(x[n, c, i], _0))
    return acc


@reduction
def prelu_backward(x, dy, dx, slope, dslope, shared, want_dx, want_dslope):
    """x (the input), dy, dx: (num, channels, dim).

    dx = dy * (1 if x > 0 else slope[c]) (overwrites, when ``want_dx``);
    dslope[c] += sum over x <= 0 of dy * x (summed into dslope[0] when ``shared``).
    dy may be dx (in place): each element is read before it is written.
    """
    channels = x.shape[1]
    sums = np.empty(channels, np.float64)  # (no array expressions here: under
    # parallel=True each would start the thread pool)
    if x.size < PARALLEL_MIN:
        for c in range(channels):
            a = slope[0] if shared else slope[c]
            sums[c] = _prelu_channel(x, dy, dx, a, c, want_dx)
    else:
        for c in prange(channels):
            a = slope[0] if shared else slope[c]
            sums[c] = _prelu_channel(x, dy, dx, a, c, want_dx)
    if want_dslope:
        if shared:
            total = 0.0
            for c in range(channels):
                total += sums[c]
            dslope[0] += np.float32(total)
        else:
            for c in range(channels):
                dslope[c] += np.float32(sums[c])
