"""Solver update kernels: one pass over the flat parameter buffers per iteration.

Parameters are segments ``[offset, offset+count)`` of one contiguous float32 buffer
(data, diff, history), each with its own learning rate (rate * lr_mult) and decay
(weight_decay * decay_mult).  The order within a step is Caffe's: the caller has
already clipped; here we normalise by iter_size, regularise, apply the rule and
subtract the update from the data.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _prepare(data, diff, start, stop, norm, decay, l1):
    """diff = diff * norm + decay * (sign(data) | data) over one segment."""
    for i in range(start, stop):
        g = diff[i] * norm
        if decay != 0.0:
            if l1:
                w = data[i]
                g += decay * (np.float32(1.0) if w > 0 else (np.float32(-1.0) if w < 0
                                                            else np.float32(0.0)))
            else:
                g += decay * data[i]
        diff[i] = g


@njit(cache=True, nogil=True)
def sgd_update(data, diff, hist, offsets, rates, decays, norm, l1, momentum):
    """h = momentum*h + rate*g; w -= h (lr folded into the history, as Caffe)."""
    m = np.float32(momentum)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        _prepare(data, diff, a, b, np.float32(norm), np.float32(decays[s]), l1)
        r = np.float32(rates[s])
        for i in range(a, b):
            h = m * hist[i] + r * diff[i]
            hist[i] = h
            diff[i] = h
            data[i] -= h


@njit(cache=True, nogil=True)
def nesterov_update(data, diff, hist, offsets, rates, decays, norm, l1, momentum):
    m = np.float32(momentum)
    one = np.float32(1.0)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        _prepare(data, diff, a, b, np.float32(norm), np.float32(decays[s]), l1)
        r = np.float32(rates[s])
        for i in range(a, b):
            old = hist[i]
            h = m * old + r * diff[i]
            hist[i] = h
            u = (one + m) * h - m * old
            diff[i] = u
            data[i] -= u


@njit(cache=True, nogil=True)
def adagrad_update(data, diff, hist, offsets, rates, decays, norm, l1, delta):
    d = np.float32(delta)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        _prepare(data, diff, a, b, np.float32(norm), np.float32(decays[s]), l1)
        r = np.float32(rates[s])
        for i in range(a, b):
            g = diff[i]
            h = hist[i] + g * g
            hist[i] = h
            u = r * (g / (np.sqrt(h) + d))
            diff[i] = u
            data[i] -= u


@njit(cache=True, nogil=True)
def rmsprop_update(data, diff, hist, offsets, rates, decays, norm, l1, rms_decay, delta):
    rd = np.float32(rms_decay)
    d = np.float32(delta)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        _prepare(data, diff, a, b, np.float32(norm), np.float32(decays[s]), l1)
        r = np.float32(rates[s])
        for i in range(a, b):
            g = diff[i]
            h = rd * hist[i] + (np.float32(1.0) - rd) * (g * g)
            hist[i] = h
            u = r * (g / (np.sqrt(h) + d))
            diff[i] = u
            data[i] -= u


@njit(cache=True, nogil=True)
def adadelta_update(data, diff, hist, hist2, offsets, rates, decays, norm, l1, momentum,
                    delta):
    """hist: running mean of g^2; hist2: running mean of squared updates."""
    m = np.float32(momentum)
    d = np.float32(delta)
    one = np.float32(1.0)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        _prepare(data, diff, a, b, np.float32(norm), np.float32(decays[s]), l1)
        r = np.float32(rates[s])
        for i in range(a, b):
            g = diff[i]
            h = (one - m) * (g * g) + m * hist[i]
            hist[i] = h
            step = g * np.sqrt((hist2[i] + d) / (h + d))
            hist2[i] = (one - m) * (step * step) + m * hist2[i]
            u = r * step
            diff[i] = u
            data[i] -= u


@njit(cache=True, nogil=True)
def adam_update(data, diff, m_hist, v_hist, offsets, rates, decays, norm, l1, beta1, beta2,
                eps, correction):
    b1 = np.float32(beta1)
    b2 = np.float32(beta2)
    e = np.float32(eps)
    one = np.float32(1.0)
    c = np.float32(correction)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        _prepare(data, diff, a, b, np.float32(norm), np.float32(decays[s]), l1)
        r = np.float32(rates[s])
        for i in range(a, b):
            g = diff[i]
            mm = b1 * m_hist[i] + (one - b1) * g
            vv = b2 * v_hist[i] + (one - b2) * (g * g)
            m_hist[i] = mm
            v_hist[i] = vv
            u = (r * c) * (mm / (np.sqrt(vv) + e))
            diff[i] = u
            data[i] -= u


@njit(cache=True, nogil=True)
def all_finite(values):
    """True when no element is NaN or infinite (one pass, no temporary array)."""
    for i in range(values.size):
        v = values[i]
        if v != v or v - v != 0:
            return False
    return True
