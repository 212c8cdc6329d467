"""Kernels for the recurrent layers (RNN, LSTM, LSTMUnit).

The layers do the matrix products with BLAS GEMMs (one for every time step's input
projection at once, one per step for the recurrent product); these kernels are the
element-wise work between them, one call per time step.  Shapes: N streams, H hidden
units; an LSTM's gate rows are 4H wide in Caffe's order (i, f, o, g).  Every array is
float32 and C-contiguous; outputs are preallocated by the caller and overwritten
unless a docstring says "accumulates".

The sequence flag ``cont`` (N,) multiplies the previous state: 0 starts a new sequence.
As in Caffe, the LSTM forget gate is cont * sigmoid (0 where cont == 0), and its
gradient uses f * (1 - f) of that product.  sigmoid and tanh are the neuron kernels'
branch-free float32 versions, so the per-step loops vectorise.
"""

import numpy as np
from numba import njit

from .neuron import sigmoid32, tanh32

kernel = njit(cache=True, nogil=True, error_model="numpy")

_0 = np.float32(0.0)
_HALF = np.float32(0.5)
_1 = np.float32(1.0)


# -- shared row operations ----------------------------------------------------------
@kernel
def add_bias_and_static(y, bias, static):
    """y: (T, N, K) += bias: (K,) and, when static has rows, static: (N, K)."""
    steps, n, k = y.shape
    with_static = static.shape[0] > 0
    for t in range(steps):
        for s in range(n):
            for j in range(k):
                v = y[t, s, j] + bias[j]
                if with_static:
                    v += static[s, j]
                y[t, s, j] = v


@kernel
def column_sum_add(acc, y):
    """acc: (K,) += the sum of the rows of y: (M, K)  (accumulates)."""
    m, k = y.shape
    for r in range(m):
        for j in range(k):
            acc[j] += y[r, j]


@kernel
def sum_over_time(out, y):
    """out: (N, K) = the sum over t of y: (T, N, K)."""
    steps, n, k = y.shape
    for s in range(n):
        for j in range(k):
            out[s, j] = _0
    for t in range(steps):
        for s in range(n):
            for j in range(k):
                out[s, j] += y[t, s, j]


@kernel
def scale_rows(out, x, cont):
    """out: (N, H) = cont: (N,) * x: (N, H), row by row (the flushed previous state)."""
    n, h = x.shape
    for s in range(n):
        c = cont[s]
        for j in range(h):
            out[s, j] = c * x[s, j]


# -- RNN --------------------------------------------------------------------------
@kernel
def rnn_step_forward(pre_x, pre_h, h, cont_next, h_next_in):
    """One step: h = tanh(pre_x + pre_h), and the flushed input of the next step,
    h_next_in = cont_next * h.  All (N, H) but cont_next (N,)."""
    n, hid = h.shape
    for s in range(n):
        c = cont_next[s]
        for j in range(hid):
            v = tanh32(pre_x[s, j] + pre_h[s, j])
            h[s, j] = v
            h_next_in[s, j] = c * v


@kernel
def rnn_step_backward(dh_out, dh_next_in, cont_next, h, dz):
    """dz = (dh_out + cont_next * dh_next_in) * (1 - h^2): the gradient at the tanh's
    input, from the step's output path and from the next step's recurrent product."""
    n, hid = h.shape
    for s in range(n):
        c = cont_next[s]
        for j in range(hid):
            v = h[s, j]
            dz[s, j] = (dh_out[s, j] + c * dh_next_in[s, j]) * (_1 - v * v)


@kernel
def bias_tanh_forward(y, bias):
    """y: (M, K) = tanh(y + bias: (K,)) in place."""
    m, k = y.shape
    for r in range(m):
        for j in range(k):
            y[r, j] = tanh32(y[r, j] + bias[j])


@kernel
def tanh_backward(y, dy, dx):
    """dx = dy * (1 - y^2), y the tanh output; all (M, K)."""
    m, k = y.shape
    for r in range(m):
        for j in range(k):
            v = y[r, j]
            dx[r, j] = dy[r, j] * (_1 - v * v)


# -- LSTM -------------------------------------------------------------------------
@kernel
def lstm_step_forward(pre_x, pre_h, cont, c_prev, acts, c, h, cont_next, h_next_in):
    """One LSTM step from gate pre-activations pre_x + pre_h: (N, 4H).

    i, f, o = sigmoid, g = tanh, f scaled by cont; c = f * c_prev + i * g;
    h = o * tanh(c); h_next_in = cont_next * h.  acts: (N, 4H) keeps i, f, o, g for
    backward.  (Each loop is kept simple enough to vectorise.)
    """
    n, hid = c.shape
    sig_end = 3 * hid
    for s in range(n):
        for j in range(sig_end):
            acts[s, j] = sigmoid32(pre_x[s, j] + pre_h[s, j])
        for j in range(hid):
            k = sig_end + j
            acts[s, k] = tanh32(pre_x[s, k] + pre_h[s, k])
        ct = cont[s]
        for j in range(hid):
            f = ct * acts[s, hid + j]
            acts[s, hid + j] = f
            c[s, j] = f * c_prev[s, j] + acts[s, j] * acts[s, sig_end + j]
        cn = cont_next[s]
        for j in range(hid):
            hv = acts[s, 2 * hid + j] * tanh32(c[s, j])
            h[s, j] = hv
            h_next_in[s, j] = cn * hv


@kernel
def lstm_step_backward(dh_out, dh_next_in, cont_next, acts, c_prev, c, dc, dgates, row):
    """Backward through one LSTM step.

    dh = dh_out + cont_next * dh_next_in (the top's diff plus the next step's
    recurrent product's); dc: (N, H) holds the cell gradient coming from the next step
    and is overwritten with the one for c_prev.  dgates: (N, 4H) gets the gradient at
    the gate pre-activations.  row: (H,) scratch.  (Split into simple loops: 4x faster
    than one loop doing everything, which does not vectorise.)
    """
    n, hid = c.shape
    for s in range(n):
        for j in range(hid):
            row[j] = tanh32(c[s, j])
        cn = cont_next[s]
        for j in range(hid):
            dh = dh_out[s, j] + cn * dh_next_in[s, j]
            tc = row[j]
            o = acts[s, 2 * hid + j]
            dgates[s, 2 * hid + j] = dh * tc * o * (_1 - o)
            row[j] = dc[s, j] + dh * o * (_1 - tc * tc)  # gradient at c
        for j in range(hid):
            i = acts[s, j]
            g = acts[s, 3 * hid + j]
            dgates[s, j] = row[j] * g * i * (_1 - i)
            dgates[s, 3 * hid + j] = row[j] * i * (_1 - g * g)
        for j in range(hid):
            f = acts[s, hid + j]
            dgates[s, hid + j] = row[j] * c_prev[s, j] * f * (_1 - f)
            dc[s, j] = row[j] * f


@kernel
def _lstm_cell_grad(dgates, s, j, hid, i, f, o, g, c_prev, cv, dc, dh):
    """LSTMUnit: write the four gate gradients of unit (s, j); return the gradient
    for c_prev."""
    tc = tanh32(cv)
    dct = dc + dh * o * (_1 - tc * tc)
    dgates[s, j] = dct * g * i * (_1 - i)
    dgates[s, hid + j] = dct * c_prev * f * (_1 - f)
    dgates[s, 2 * hid + j] = dh * tc * o * (_1 - o)
    dgates[s, 3 * hid + j] = dct * i * (_1 - g * g)
    return dct * f


@kernel
def _lstm_unit_gates(x, s, j, hid, ct):
    """LSTMUnit's activated gates (i, f, o, g) of unit (s, j); cont 0 closes the forget gate."""
    f = _0
    if ct != _0:
        f = ct * sigmoid32(x[s, hid + j])
    return sigmoid32(x[s, j]), f, sigmoid32(x[s, 2 * hid + j]), tanh32(x[s, 3 * hid + j])


@kernel
def lstm_unit_forward(x, cont, c_prev, c, h):
    """Caffe's LSTMUnit: gates x: (N, 4H), cont: (N,), c_prev: (N, H) -> c, h: (N, H)."""
    n, hid = c.shape
    for s in range(n):
        ct = cont[s]
        for j in range(hid):
            i, f, o, g = _lstm_unit_gates(x, s, j, hid, ct)
            cv = f * c_prev[s, j] + i * g
            c[s, j] = cv
            h[s, j] = o * tanh32(cv)


@kernel
def lstm_unit_backward(x, cont, c_prev, c, dc, dh, dc_prev, dx):
    """LSTMUnit's gradient: dc_prev: (N, H) and dx: (N, 4H) from the tops' dc, dh."""
    n, hid = c.shape
    for s in range(n):
        ct = cont[s]
        for j in range(hid):
            i, f, o, g = _lstm_unit_gates(x, s, j, hid, ct)
            dc_prev[s, j] = _lstm_cell_grad(dx, s, j, hid, i, f, o, g, c_prev[s, j], c[s, j],
                                            dc[s, j], dh[s, j])
