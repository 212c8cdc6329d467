"""Recurrent layers: RNN, LSTM (Caffe's RecurrentLayer family) and LSTMUnit.

Caffe builds RNN and LSTM by unrolling them into an internal net of InnerProduct,
Eltwise, Scale, TanH and LSTMUnit layers.  Here they are computed directly: one GEMM
projects every time step's input at once, then a loop over time does one GEMM for the
recurrent product and one kernel call for the element-wise work.  Values, gradients,
parameter blobs (order and shapes) and the quirks below are Caffe master's:

* bottoms: x (T, N, ...), cont (T, N), [x_static (N, ...)], [h0 [, c0] with
  ``expose_hidden``, each (1, N, num_output)]; tops: the output (T, N, num_output),
  [hT [, cT] with ``expose_hidden``].
* cont_t multiplies the previous hidden state before the recurrent product (and, in
  the LSTM, gates the forget gate, so the cell resets too).
* Without ``expose_hidden`` the state at the end of one forward is the initial state
  of the next (zeros at first), which is what makes truncated backprop through time
  work with cont = 1 at a batch's first step.
* Gradients never cross batches: the exposed final state's diffs are ignored and no
  gradient reaches h0/c0 (their diffs are zeroed), as in Caffe master, whose unrolled
  net shares only the data of those blobs.  No gradient goes to cont.
* Parameter diffs are computed whenever backward runs (Caffe's unrolled net does not
  consult the outer ``param_propagate_down``) and accumulate.
"""

import numpy as np

from ..errors import LayerError, ShapeError
from ..fillers import fill
from ..kernels import recurrent as K
from ..layer import Layer, register


def _count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _accumulate(param, scratch, a, b):
    """param.diff += a @ b, through a preallocated scratch product."""
    np.dot(a, b, out=scratch)
    np.add(param.diff, scratch, out=param.diff)


class _Recurrent(Layer):
    """What RNN and LSTM share: blob counts, checks, state carry-over, buffers."""

    gates = 1  # rows of the input/recurrent weights per hidden unit
    state_names = ("h0",)

    def __init__(self, layer_param, rng=None):
        super().__init__(layer_param, rng=rng)
        exposed = len(self.state_names) if layer_param.recurrent_param.expose_hidden else 0
        self.num_exposed = exposed
        self.min_bottom_blobs = 2 + exposed
        self.max_bottom_blobs = 3 + exposed
        self.exact_num_top_blobs = 1 + exposed

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1  # no gradient for the sequence indicators

    # -- setup and shapes -------------------------------------------------------
    def setup(self, bottom, top):
        rp = self.layer_param.recurrent_param
        self.num_output = int(rp.num_output)
        if self.num_output <= 0:
            raise LayerError(f"{self.describe()}: recurrent_param.num_output must be positive "
                             f"(got {self.num_output})")
        self.expose_hidden = bool(rp.expose_hidden)
        self.static_input = len(bottom) > 2 + self.num_exposed
        x = bottom[0]
        self._check_x_cont(bottom)
        self.input_dim = x.count_range(2)
        self.static_dim = 0
        if self.static_input:
            xs = bottom[2]
            self._check_static(xs, x.shape[1])
            self.static_dim = xs.count_range(1)
        if not self.blobs:
            self.make_params(rp)
        self.param_propagate_down = [True] * len(self.blobs)
        self._shape_key = None
        self._state = None  # (h, c) carried from one forward to the next

    def _check_x_cont(self, bottom):
        x, cont = bottom[0], bottom[1]
        if x.num_axes < 3:
            raise ShapeError(f"{self.describe()}: bottom[0] '{x.name}' must have at least 3 axes "
                             f"(timesteps, streams, features...), got shape {x.shape}")
        if cont.shape != x.shape[:2]:
            raise ShapeError(f"{self.describe()}: bottom[1] '{cont.name}' (the sequence "
                             f"continuation flags) must have shape (T, N) = {x.shape[:2]} to "
                             f"match bottom[0] {x.shape}, got {cont.shape}")

    def _check_static(self, xs, n):
        if xs.num_axes < 2 or xs.shape[0] != n:
            raise ShapeError(f"{self.describe()}: the static input bottom[2] '{xs.name}' must "
                             f"be (N, ...) with N = {n} streams and at least 2 axes, got "
                             f"shape {xs.shape}")

    def weight(self, shape, rp):
        fill(self.new_param_blob(shape).data, rp.weight_filler, self.rng)

    def bias(self, size, rp):
        fill(self.new_param_blob((size,)).data, rp.bias_filler, self.rng)

    def reshape(self, bottom, top):
        x = bottom[0]
        self._check_x_cont(bottom)
        steps, n = x.shape[:2]
        d = x.count_range(2)
        if d != self.input_dim:
            raise ShapeError(f"{self.describe()}: bottom[0] '{x.name}' {x.shape} has {d} "
                             f"features per step; the weights expect {self.input_dim}")
        if self.static_input:
            xs = bottom[2]
            self._check_static(xs, n)
            if xs.count_range(1) != self.static_dim:
                raise ShapeError(f"{self.describe()}: static input '{xs.name}' {xs.shape} has "
                                 f"{xs.count_range(1)} features; the weights expect "
                                 f"{self.static_dim}")
        hid = self.num_output
        state_shape = (1, n, hid)
        first_state = 2 + int(self.static_input)
        for k, b in enumerate(bottom[first_state:]):
            if b.shape != state_shape:
                raise ShapeError(f"{self.describe()}: bottom[{first_state + k}] "
                                 f"'{b.name}' ({self.state_names[k]}) must have the hidden "
                                 f"state's shape {state_shape}, got {b.shape}")
        for t in top:
            if any(t is b for b in bottom):
                raise LayerError(f"{self.describe()}: cannot compute in place (top "
                                 f"'{t.name}' is also a bottom)")
        top[0].reshape((steps, n, hid))
        for t in top[1:]:
            t.reshape(state_shape)
        key = (steps, n)
        if key != self._shape_key:
            if self._shape_key is None or self._shape_key[1] != n:
                self._state = None
            self._shape_key = key
            self.steps, self.n = steps, n
            self.allocate(steps, n)

    def allocate(self, steps, n):
        """Buffers shared by both kinds; subclasses add their own."""
        hid, g = self.num_output, self.gates * self.num_output
        self.cont = np.zeros((steps + 1, n), np.float32)  # cont[T] = 0: nothing follows
        self.h_in = np.zeros((steps + 1, n, hid), np.float32)  # cont_t * h_{t-1}
        self.pre = np.zeros((steps, n, g), np.float32)  # input projection + bias + static
        self.rec = np.zeros((n, g), np.float32)  # recurrent product of one step
        self.static_proj = np.zeros((n if self.static_input else 0, g), np.float32)
        self.dpre = np.zeros((steps, n, g), np.float32)
        self.drec = np.zeros((n, hid), np.float32)
        self.dstatic = np.zeros((n, g), np.float32)
        self.dw_x = np.zeros((g, self.input_dim), np.float32)
        self.dw_h = np.zeros((g, hid), np.float32)
        self.dw_s = np.zeros((g, self.static_dim), np.float32)

    # -- shared pieces of forward and backward -------------------------------------
    def initial_state(self, bottom):
        """(h0, c0) as (N, H) arrays: exposed bottoms, or the last forward's final state."""
        n, hid = self.n, self.num_output
        if self.expose_hidden:
            first = 2 + int(self.static_input)
            return [b.data.reshape(n, hid) for b in bottom[first:]]
        if self._state is None:
            self._state = [np.zeros((n, hid), np.float32) for _ in self.state_names]
        return self._state

    def project_inputs(self, bottom, w_x, b, w_s_blob):
        """pre = x @ W_x^T + b (+ x_static @ W_s^T) for every step; cont copied."""
        steps, n = self.steps, self.n
        x2 = bottom[0].data.reshape(steps * n, self.input_dim)
        np.dot(x2, w_x.T, out=self.pre.reshape(steps * n, -1))
        if self.static_input:
            np.dot(bottom[2].data.reshape(n, self.static_dim), w_s_blob.data.T,
                   out=self.static_proj)
        K.add_bias_and_static(self.pre, b, self.static_proj)
        self.cont[:steps] = bottom[1].data

    def check_propagate_down(self, propagate_down):
        if len(propagate_down) > 1 and propagate_down[1]:
            raise LayerError(f"{self.describe()}: cannot backpropagate to the sequence "
                             "continuation indicators (bottom[1]); set propagate_down: false "
                             "for it")

    def input_gradients(self, propagate_down, bottom, w_x, b_blob, w_x_blob, w_h_blob,
                        w_s_blob):
        """From dpre (gradient at the pre-activations): every parameter and input diff."""
        steps, n = self.steps, self.n
        dpre2 = self.dpre.reshape(steps * n, -1)
        x2 = bottom[0].data.reshape(steps * n, self.input_dim)
        _accumulate(w_x_blob, self.dw_x, dpre2.T, x2)
        K.column_sum_add(b_blob.diff, dpre2)
        h_in2 = self.h_in[:steps].reshape(steps * n, -1)
        _accumulate(w_h_blob, self.dw_h, dpre2.T, h_in2)
        if propagate_down[0]:
            np.dot(dpre2, w_x, out=bottom[0].diff.reshape(steps * n, self.input_dim))
        if self.static_input:
            K.sum_over_time(self.dstatic, self.dpre)
            xs = bottom[2]
            _accumulate(w_s_blob, self.dw_s, self.dstatic.T, xs.data.reshape(n, -1))
            if propagate_down[2]:
                np.dot(self.dstatic, w_s_blob.data, out=xs.diff.reshape(n, self.static_dim))
        first = 2 + int(self.static_input)
        for b, down in zip(bottom[first:], propagate_down[first:]):
            if down:
                b.diff[...] = 0


@register("RNN")
class RNN(_Recurrent):
    """Elman RNN, as Caffe's RNNLayer.

    h_t = tanh(W_xh x_t + b_h [+ W_xh_static x_static] + W_hh (cont_t * h_{t-1}))
    o_t = tanh(W_ho h_t + b_o);  top = o (T, N, H);  exposed final state hT = h_T.
    Blobs: W_xh (H, D), b_h (H), [W_xh_static (H, D_static)], W_hh (H, H), W_ho (H, H),
    b_o (H).
    """

    def make_params(self, rp):
        hid = self.num_output
        self.weight((hid, self.input_dim), rp)
        self.bias(hid, rp)
        if self.static_input:
            self.weight((hid, self.static_dim), rp)
        self.weight((hid, hid), rp)
        self.weight((hid, hid), rp)
        self.bias(hid, rp)

    def _params(self):
        b = self.blobs
        if self.static_input:
            return b[0], b[1], b[2], b[3], b[4], b[5]
        return b[0], b[1], None, b[2], b[3], b[4]

    def allocate(self, steps, n):
        super().allocate(steps, n)
        hid = self.num_output
        self.h = np.zeros((steps, n, hid), np.float32)
        self.dz_out = np.zeros((steps, n, hid), np.float32)
        self.dh_out = np.zeros((steps, n, hid), np.float32)
        self.dw_o = np.zeros((hid, hid), np.float32)

    def forward(self, bottom, top):
        w_x, b_h, w_s, w_h, w_o, b_o = self._params()
        steps, n, hid = self.steps, self.n, self.num_output
        self.project_inputs(bottom, w_x.data, b_h.data, w_s)
        (h0,) = self.initial_state(bottom)
        K.scale_rows(self.h_in[0], h0, self.cont[0])
        w_ht = w_h.data.T
        for t in range(steps):
            np.dot(self.h_in[t], w_ht, out=self.rec)
            K.rnn_step_forward(self.pre[t], self.rec, self.h[t], self.cont[t + 1],
                               self.h_in[t + 1])
        out = top[0].data.reshape(steps * n, hid)
        np.dot(self.h.reshape(steps * n, hid), w_o.data.T, out=out)
        K.bias_tanh_forward(out, b_o.data)
        final = self.h[steps - 1] if steps else h0
        if self.expose_hidden:
            top[1].data[0] = final
        else:
            self._state[0][...] = final

    def backward(self, top, propagate_down, bottom):
        w_x, b_h, w_s, w_h, w_o, b_o = self._params()
        self.check_propagate_down(propagate_down)
        steps, n, hid = self.steps, self.n, self.num_output
        if steps == 0 or n == 0:
            return
        y = top[0].data.reshape(steps * n, hid)
        dz_out = self.dz_out.reshape(steps * n, hid)
        K.tanh_backward(y, top[0].diff.reshape(steps * n, hid), dz_out)
        h2 = self.h.reshape(steps * n, hid)
        _accumulate(w_o, self.dw_o, dz_out.T, h2)
        K.column_sum_add(b_o.diff, dz_out)
        np.dot(dz_out, w_o.data, out=self.dh_out.reshape(steps * n, hid))
        self.drec[...] = 0
        w_hh = w_h.data
        for t in range(steps - 1, -1, -1):
            K.rnn_step_backward(self.dh_out[t], self.drec, self.cont[t + 1], self.h[t],
                                self.dpre[t])
            if t:
                np.dot(self.dpre[t], w_hh, out=self.drec)
        self.input_gradients(propagate_down, bottom, w_x.data, b_h, w_x, w_h, w_s)


@register("LSTM")
class LSTM(_Recurrent):
    """Long short-term memory, as Caffe's LSTMLayer (no cell clipping, no peepholes).

    [i f o g]_t = W_xc x_t + b_c [+ W_xc_static x_static] + W_hc (cont_t * h_{t-1})
    i, f, o = sigmoid, g = tanh;  c_t = cont_t * f_t * c_{t-1} + i_t * g_t;
    h_t = o_t * tanh(c_t);  top = h (T, N, H);  exposed final states hT, cT.
    Blobs: W_xc (4H, D), b_c (4H), [W_xc_static (4H, D_static)], W_hc (4H, H).
    """

    gates = 4
    state_names = ("h0", "c0")

    def make_params(self, rp):
        g = 4 * self.num_output
        self.weight((g, self.input_dim), rp)
        self.bias(g, rp)
        if self.static_input:
            self.weight((g, self.static_dim), rp)
        self.weight((g, self.num_output), rp)

    def _params(self):
        b = self.blobs
        if self.static_input:
            return b[0], b[1], b[2], b[3]
        return b[0], b[1], None, b[2]

    def allocate(self, steps, n):
        super().allocate(steps, n)
        hid = self.num_output
        self.acts = np.zeros((steps, n, 4 * hid), np.float32)
        self.c = np.zeros((steps + 1, n, hid), np.float32)  # c[0] = c0
        self.dc = np.zeros((n, hid), np.float32)
        self.row = np.zeros(hid, np.float32)

    def forward(self, bottom, top):
        w_x, b_c, w_s, w_h = self._params()
        steps = self.steps
        self.project_inputs(bottom, w_x.data, b_c.data, w_s)
        h0, c0 = self.initial_state(bottom)
        self.c[0] = c0
        K.scale_rows(self.h_in[0], h0, self.cont[0])
        h = top[0].data
        w_ht = w_h.data.T
        for t in range(steps):
            np.dot(self.h_in[t], w_ht, out=self.rec)
            K.lstm_step_forward(self.pre[t], self.rec, self.cont[t], self.c[t], self.acts[t],
                                self.c[t + 1], h[t], self.cont[t + 1], self.h_in[t + 1])
        h_final = h[steps - 1] if steps else h0
        if self.expose_hidden:
            top[1].data[0] = h_final
            top[2].data[0] = self.c[steps]
        else:
            self._state[0][...] = h_final
            self._state[1][...] = self.c[steps]

    def backward(self, top, propagate_down, bottom):
        w_x, b_c, w_s, w_h = self._params()
        self.check_propagate_down(propagate_down)
        steps, n = self.steps, self.n
        if steps == 0 or n == 0:
            return
        dh_top = top[0].diff
        self.drec[...] = 0
        self.dc[...] = 0
        w_hc = w_h.data
        for t in range(steps - 1, -1, -1):
            K.lstm_step_backward(dh_top[t], self.drec, self.cont[t + 1], self.acts[t],
                                 self.c[t], self.c[t + 1], self.dc, self.dpre[t], self.row)
            if t:
                np.dot(self.dpre[t], w_hc, out=self.drec)
        self.input_gradients(propagate_down, bottom, w_x.data, b_c, w_x, w_h, w_s)


@register("LSTMUnit")
class LSTMUnit(Layer):
    """One LSTM step, as Caffe's LSTMUnitLayer (the cell inside its unrolled LSTM).

    bottoms: c_prev (1, N, H), gates x (1, N, 4H) in order i, f, o, g, cont (1, N);
    tops: c, h (1, N, H).  i, f, o = sigmoid, g = tanh; f = 0 where cont == 0, else
    cont * sigmoid; c = f * c_prev + i * g; h = o * tanh(c).  No gradient to cont.
    """

    exact_num_bottom_blobs = 3
    exact_num_top_blobs = 2

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def reshape(self, bottom, top):
        c_prev, x, cont = bottom
        ok = (c_prev.num_axes == 3 and x.num_axes == 3 and cont.num_axes == 2
              and c_prev.shape[0] == x.shape[0] == cont.shape[0] == 1
              and c_prev.shape[1] == x.shape[1] == cont.shape[1]
              and x.shape[2] == 4 * c_prev.shape[2])
        if not ok:
            raise ShapeError(self._shape_message(bottom))
        for t in top:
            if any(t is b for b in bottom):
                raise LayerError(f"{self.describe()}: cannot compute in place")
            t.reshape(c_prev.shape)

    def _shape_message(self, bottom):
        got = ", ".join(f"'{b.name}' {b.shape}" for b in bottom)
        return (f"{self.describe()}: bottoms must be c_prev (1, N, H), gates (1, N, 4H) and "
                f"cont (1, N); got {got}")

    def _views(self, bottom, top):
        n, hid = bottom[0].shape[1], bottom[0].shape[2]
        return (n, hid, bottom[0].data.reshape(n, hid), bottom[1].data.reshape(n, 4 * hid),
                bottom[2].data.reshape(n))

    def forward(self, bottom, top):
        n, hid, c_prev, x, cont = self._views(bottom, top)
        K.lstm_unit_forward(x, cont, c_prev, top[0].data.reshape(n, hid),
                            top[1].data.reshape(n, hid))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[2]:
            raise LayerError(f"{self.describe()}: cannot backpropagate to the sequence "
                             "continuation indicators (bottom[2]); set propagate_down: false "
                             "for it")
        if not (propagate_down[0] or propagate_down[1]):
            return
        n, hid, c_prev, x, cont = self._views(bottom, top)
        K.lstm_unit_backward(x, cont, c_prev, top[0].data.reshape(n, hid),
                             top[0].diff.reshape(n, hid), top[1].diff.reshape(n, hid),
                             bottom[0].diff.reshape(n, hid), bottom[1].diff.reshape(n, 4 * hid))
