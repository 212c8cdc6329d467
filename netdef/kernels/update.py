"""Solver update kernels: one pass over the flat parameter buffers per iteration.

Parameters are segments ``[offset, offset+count)`` of one contiguous float32 buffer
(data, diff, history), each with its own learning rate (rate * lr_mult) and decay
(weight_decay * decay_mult).  The order within a step is Caffe's: the caller has
already clipped; here we normalise by iter_size, regularise, apply the rule and
subtract the update from the data -- all in one fused loop per element, so each
buffer is read and written once (a separate regularisation pass cost a third more
memory traffic).  Segments of ``PARALLEL_MIN`` elements or more are cut into chunks
spread over threads (CaffeNet's fc6 alone is 37M parameters); smaller ones run on
the calling thread.  The per-element arithmetic is the same sequence of float32
operations as Caffe's, so results do not depend on the chunking.
"""

import numpy as np
from numba import njit, prange

PARALLEL_MIN = 1 << 18
CHUNK = 1 << 16

_U = np.uint64  # unsigned indices: numba then skips its negative-index wraparound test
_0 = np.float32(0.0)
_1 = np.float32(1.0)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _sign(w):
    return _1 if w > 0 else (-_1 if w < 0 else _0)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _reg_mode(decay, l1):
    return 0 if decay == 0.0 else (2 if l1 else 1)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _chunks(a, b):
    """Number of CHUNK-sized pieces of [a, b) when it is worth threads, else 0."""
    n = b - a
    return (n + CHUNK - 1) // CHUNK if n >= PARALLEL_MIN else 0


# -- SGD -------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _sgd_at(data, diff, hist, i, g, r, m):
    h = m * hist[i] + r * g
    hist[i] = h
    diff[i] = h
    data[i] -= h


@njit(cache=True, nogil=True, error_model="numpy")
def _sgd(data, diff, hist, lo, hi, norm, decay, reg, r, m):
    """[lo, hi) with the regulariser's loop chosen outside the element loop (a branch
    inside it stops vectorisation)."""
    if reg == 0:
        for i in range(_U(lo), _U(hi)):
            _sgd_at(data, diff, hist, i, diff[i] * norm, r, m)
    elif reg == 1:
        for i in range(_U(lo), _U(hi)):
            _sgd_at(data, diff, hist, i, diff[i] * norm + decay * data[i], r, m)
    else:
        for i in range(_U(lo), _U(hi)):
            _sgd_at(data, diff, hist, i, diff[i] * norm + decay * _sign(data[i]), r, m)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def sgd_update(data, diff, hist, offsets, rates, decays, norm, l1, momentum):
    """h = momentum*h + rate*g; w -= h (lr folded into the history, as Caffe)."""
    m = np.float32(momentum)
    nrm = np.float32(norm)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        d = np.float32(decays[s])
        reg = _reg_mode(d, l1)
        r = np.float32(rates[s])
        pieces = _chunks(a, b)
        if pieces == 0:
            _sgd(data, diff, hist, a, b, nrm, d, reg, r, m)
        for k in prange(pieces):
            lo = a + k * CHUNK
            _sgd(data, diff, hist, lo, min(lo + CHUNK, b), nrm, d, reg, r, m)


# -- Nesterov ----------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _nesterov_at(data, diff, hist, i, g, r, m):
    old = hist[i]
    h = m * old + r * g
    hist[i] = h
    u = (_1 + m) * h - m * old
    diff[i] = u
    data[i] -= u


@njit(cache=True, nogil=True, error_model="numpy")
def _nesterov(data, diff, hist, lo, hi, norm, decay, reg, r, m):
    """[lo, hi) with the regulariser's loop chosen outside the element loop (a branch
    inside it stops vectorisation)."""
    if reg == 0:
        for i in range(_U(lo), _U(hi)):
            _nesterov_at(data, diff, hist, i, diff[i] * norm, r, m)
    elif reg == 1:
        for i in range(_U(lo), _U(hi)):
            _nesterov_at(data, diff, hist, i, diff[i] * norm + decay * data[i], r, m)
    else:
        for i in range(_U(lo), _U(hi)):
            _nesterov_at(data, diff, hist, i, diff[i] * norm + decay * _sign(data[i]), r, m)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def nesterov_update(data, diff, hist, offsets, rates, decays, norm, l1, momentum):
    m = np.float32(momentum)
    nrm = np.float32(norm)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        d = np.float32(decays[s])
        reg = _reg_mode(d, l1)
        r = np.float32(rates[s])
        pieces = _chunks(a, b)
        if pieces == 0:
            _nesterov(data, diff, hist, a, b, nrm, d, reg, r, m)
        for k in prange(pieces):
            lo = a + k * CHUNK
            _nesterov(data, diff, hist, lo, min(lo + CHUNK, b), nrm, d, reg, r, m)


# -- AdaGrad ---------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _adagrad_at(data, diff, hist, i, g, r, delta):
    h = hist[i] + g * g
    hist[i] = h
    u = r * (g / (np.sqrt(h) + delta))
    diff[i] = u
    data[i] -= u


@njit(cache=True, nogil=True, error_model="numpy")
def _adagrad(data, diff, hist, lo, hi, norm, decay, reg, r, delta):
    """[lo, hi) with the regulariser's loop chosen outside the element loop (a branch
    inside it stops vectorisation)."""
    if reg == 0:
        for i in range(_U(lo), _U(hi)):
            _adagrad_at(data, diff, hist, i, diff[i] * norm, r, delta)
    elif reg == 1:
        for i in range(_U(lo), _U(hi)):
            _adagrad_at(data, diff, hist, i, diff[i] * norm + decay * data[i], r, delta)
    else:
        for i in range(_U(lo), _U(hi)):
            _adagrad_at(data, diff, hist, i, diff[i] * norm + decay * _sign(data[i]), r, delta)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def adagrad_update(data, diff, hist, offsets, rates, decays, norm, l1, delta):
    dl = np.float32(delta)
    nrm = np.float32(norm)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        d = np.float32(decays[s])
        reg = _reg_mode(d, l1)
        r = np.float32(rates[s])
        pieces = _chunks(a, b)
        if pieces == 0:
            _adagrad(data, diff, hist, a, b, nrm, d, reg, r, dl)
        for k in prange(pieces):
            lo = a + k * CHUNK
            _adagrad(data, diff, hist, lo, min(lo + CHUNK, b), nrm, d, reg, r, dl)


# -- RMSProp ---------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _rmsprop_at(data, diff, hist, i, g, r, rd, delta):
    h = rd * hist[i] + (_1 - rd) * (g * g)
    hist[i] = h
    u = r * (g / (np.sqrt(h) + delta))
    diff[i] = u
    data[i] -= u


@njit(cache=True, nogil=True, error_model="numpy")
def _rmsprop(data, diff, hist, lo, hi, norm, decay, reg, r, rd, delta):
    """[lo, hi) with the regulariser's loop chosen outside the element loop (a branch
    inside it stops vectorisation)."""
    if reg == 0:
        for i in range(_U(lo), _U(hi)):
            _rmsprop_at(data, diff, hist, i, diff[i] * norm, r, rd, delta)
    elif reg == 1:
        for i in range(_U(lo), _U(hi)):
            _rmsprop_at(data, diff, hist, i, diff[i] * norm + decay * data[i], r, rd, delta)
    else:
        for i in range(_U(lo), _U(hi)):
            _rmsprop_at(data, diff, hist, i, diff[i] * norm + decay * _sign(data[i]), r, rd, delta)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def rmsprop_update(data, diff, hist, offsets, rates, decays, norm, l1, rms_decay, delta):
    rd = np.float32(rms_decay)
    dl = np.float32(delta)
    nrm = np.float32(norm)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        d = np.float32(decays[s])
        reg = _reg_mode(d, l1)
        r = np.float32(rates[s])
        pieces = _chunks(a, b)
        if pieces == 0:
            _rmsprop(data, diff, hist, a, b, nrm, d, reg, r, rd, dl)
        for k in prange(pieces):
            lo = a + k * CHUNK
            _rmsprop(data, diff, hist, lo, min(lo + CHUNK, b), nrm, d, reg, r, rd, dl)


# -- AdaDelta --------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _adadelta_at(data, diff, hist, hist2, i, g, r, m, delta):
    h = (_1 - m) * (g * g) + m * hist[i]
    hist[i] = h
    step = g * np.sqrt((hist2[i] + delta) / (h + delta))
    hist2[i] = (_1 - m) * (step * step) + m * hist2[i]
    u = r * step
    diff[i] = u
    data[i] -= u


@njit(cache=True, nogil=True, error_model="numpy")
def _adadelta(data, diff, hist, hist2, lo, hi, norm, decay, reg, r, m, delta):
    """[lo, hi) with the regulariser's loop chosen outside the element loop (a branch
    inside it stops vectorisation)."""
    if reg == 0:
        for i in range(_U(lo), _U(hi)):
            _adadelta_at(data, diff, hist, hist2, i, diff[i] * norm, r, m, delta)
    elif reg == 1:
        for i in range(_U(lo), _U(hi)):
            _adadelta_at(data, diff, hist, hist2, i, diff[i] * norm + decay * data[i], r, m, delta)
    else:
        for i in range(_U(lo), _U(hi)):
            _adadelta_at(data, diff, hist, hist2, i, diff[i] * norm + decay * _sign(data[i]),
                         r, m, delta)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def adadelta_update(data, diff, hist, hist2, offsets, rates, decays, norm, l1, momentum,
                    delta):
    """hist: running mean of g^2; hist2: running mean of squared updates."""
    m = np.float32(momentum)
    dl = np.float32(delta)
    nrm = np.float32(norm)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        d = np.float32(decays[s])
        reg = _reg_mode(d, l1)
        r = np.float32(rates[s])
        pieces = _chunks(a, b)
        if pieces == 0:
            _adadelta(data, diff, hist, hist2, a, b, nrm, d, reg, r, m, dl)
        for k in prange(pieces):
            lo = a + k * CHUNK
            _adadelta(data, diff, hist, hist2, lo, min(lo + CHUNK, b), nrm, d, reg, r, m, dl)


# -- Adam ------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _adam_at(data, diff, m_hist, v_hist, i, g, rc, b1, b2, eps):
    mm = b1 * m_hist[i] + (_1 - b1) * g
    vv = b2 * v_hist[i] + (_1 - b2) * (g * g)
    m_hist[i] = mm
    v_hist[i] = vv
    u = rc * (mm / (np.sqrt(vv) + eps))
    diff[i] = u
    data[i] -= u


@njit(cache=True, nogil=True, error_model="numpy")
def _adam(data, diff, m_hist, v_hist, lo, hi, norm, decay, reg, rc, b1, b2, eps):
    """[lo, hi) with the regulariser's loop chosen outside the element loop (a branch
    inside it stops vectorisation)."""
    if reg == 0:
        for i in range(_U(lo), _U(hi)):
            _adam_at(data, diff, m_hist, v_hist, i, diff[i] * norm, rc, b1, b2, eps)
    elif reg == 1:
        for i in range(_U(lo), _U(hi)):
            _adam_at(data, diff, m_hist, v_hist, i, diff[i] * norm + decay * data[i], rc, b1,
                     b2, eps)
    else:
        for i in range(_U(lo), _U(hi)):
            _adam_at(data, diff, m_hist, v_hist, i, diff[i] * norm + decay * _sign(data[i]), rc,
                     b1, b2, eps)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def adam_update(data, diff, m_hist, v_hist, offsets, rates, decays, norm, l1, beta1, beta2,
                eps, correction):
    b1 = np.float32(beta1)
    b2 = np.float32(beta2)
    e = np.float32(eps)
    c = np.float32(correction)
    nrm = np.float32(norm)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        d = np.float32(decays[s])
        reg = _reg_mode(d, l1)
        rc = np.float32(rates[s]) * c
        pieces = _chunks(a, b)
        if pieces == 0:
            _adam(data, diff, m_hist, v_hist, a, b, nrm, d, reg, rc, b1, b2, e)
        for k in prange(pieces):
            lo = a + k * CHUNK
            _adam(data, diff, m_hist, v_hist, lo, min(lo + CHUNK, b), nrm, d, reg, rc, b1,
                  b2, e)


# -- checks ----------------------------------------------------------------------------
@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _nonfinite_in(values, lo, hi):
    """True when values[lo:hi] holds a NaN or an infinity: v - v is 0 for every finite v
    and NaN otherwise, and a sum of such terms is NaN exactly when one is (reassociation
    only lets it vectorise; without nnan/ninf the compiler may not fold v - v to 0)."""
    acc = values[lo] - values[lo]
    for i in range(_U(lo + 1), _U(hi)):
        acc += values[i] - values[i]
    return acc != acc


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def all_finite(values):
    """True when no element is NaN or infinite (no temporary array; memory speed)."""
    n = values.size
    if n == 0:
        return True
    if n < PARALLEL_MIN:
        return not _nonfinite_in(values, 0, n)
    pieces = (n + CHUNK - 1) // CHUNK
    bad = 0
    for k in prange(pieces):
        lo = k * CHUNK
        if _nonfinite_in(values, lo, min(lo + CHUNK, n)):
            bad += 1
    return bad == 0
