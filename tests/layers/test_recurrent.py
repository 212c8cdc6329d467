"""RNN, LSTM and LSTMUnit: NumPy references of the recurrences, gradient checks, cont
resets, carried state, expose_hidden, static input, errors and the golden cases."""

import glob
import os

import numpy as np
import pytest
from google.protobuf import text_format

from netdef.blob import Blob
from netdef.errors import LayerError, ShapeError
from netdef.layer import create_layer
from netdef.net import Net
from netdef.proto import caffe_pb2
from tests.conformance import replay
from tests.gradcheck import check_gradient
from tests.shared import CONFORMANCE

RNG = np.random.default_rng(11)
FILLERS = ('weight_filler { type: "uniform" min: -0.6 max: 0.6 } '
           'bias_filler { type: "uniform" min: -0.4 max: 0.4 }')


# -- helpers ---------------------------------------------------------------------------
def make_layer(kind, hidden=3, extra=""):
    text = (f'name: "l" type: "{kind}" recurrent_param {{ num_output: {hidden} {FILLERS} '
            f'{extra} }}')
    return create_layer(text_format.Parse(text, caffe_pb2.LayerParameter()),
                        rng=np.random.default_rng(3))


def blobs(*arrays):
    out = []
    for k, a in enumerate(arrays):
        a = np.asarray(a, np.float32)
        b = Blob(a.shape, name=f"b{k}")
        b.data[...] = a
        out.append(b)
    return out


def tops(n):
    return [Blob(name=f"t{k}") for k in range(n)]


def run(layer, bottom, ntop):
    top = tops(ntop)
    layer.layer_setup(bottom, top)
    layer.forward(bottom, top)
    return top


def sequence(steps=4, n=2, d=3, resets=((2, 1),)):
    """x (T, N, d) and cont (T, N): zeros at t=0 and at the given (t, stream) places."""
    x = RNG.uniform(-1, 1, (steps, n, d)).astype(np.float32)
    cont = np.ones((steps, n), np.float32)
    cont[0] = 0
    for t, s in resets:
        cont[t, s] = 0
    return x, cont


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def rnn_reference(x, cont, params, h0=None, xs=None):
    """Caffe's RNN in float64: returns (o (T, N, H), h_T)."""
    if xs is None:
        w_x, b_h, w_h, w_o, b_o = params
        static = 0.0
    else:
        w_x, b_h, w_s, w_h, w_o, b_o = params
        static = xs.reshape(len(xs), -1) @ w_s.T
    steps, n = cont.shape
    pre = x.reshape(steps, n, -1) @ w_x.T + b_h + static
    h = np.zeros((n, w_h.shape[0])) if h0 is None else h0
    outs = []
    for t in range(steps):
        h = np.tanh(pre[t] + (cont[t][:, None] * h) @ w_h.T)
        outs.append(np.tanh(h @ w_o.T + b_o))
    return np.stack(outs), h


def lstm_reference(x, cont, params, h0=None, c0=None, xs=None):
    """Caffe's LSTM in float64 (gate order i, f, o, g): returns (h (T, N, H), h_T, c_T)."""
    if xs is None:
        w_x, b, w_h = params
        static = 0.0
    else:
        w_x, b, w_s, w_h = params
        static = xs.reshape(len(xs), -1) @ w_s.T
    steps, n = cont.shape
    hid = w_h.shape[1]
    pre = x.reshape(steps, n, -1) @ w_x.T + b + static
    h = np.zeros((n, hid)) if h0 is None else h0
    c = np.zeros((n, hid)) if c0 is None else c0
    outs = []
    for t in range(steps):
        k = cont[t][:, None]
        g = pre[t] + (k * h) @ w_h.T
        i, f = sigmoid(g[:, :hid]), k * sigmoid(g[:, hid:2 * hid])
        o, gg = sigmoid(g[:, 2 * hid:3 * hid]), np.tanh(g[:, 3 * hid:])
        c = f * c + i * gg
        h = o * np.tanh(c)
        outs.append(h)
    return np.stack(outs), h, c


def params64(layer):
    return [b.data.astype(np.float64) for b in layer.blobs]


# -- parameters ------------------------------------------------------------------------
def test_lstm_parameter_blobs_in_caffe_order():
    x, cont = sequence(d=5)
    xs = RNG.standard_normal((2, 2, 3))
    layer = make_layer("LSTM", hidden=4)
    run(layer, blobs(x, cont, xs), 1)
    assert [b.shape for b in layer.blobs] == [(16, 5), (16,), (16, 6), (16, 4)]
    assert np.abs(layer.blobs[0].data).max() <= 0.6 and np.unique(layer.blobs[0].data).size > 1
    assert np.abs(layer.blobs[1].data).max() <= 0.4 and np.unique(layer.blobs[1].data).size > 1
    assert layer.param_propagate_down == [True] * 4


def test_rnn_parameter_blobs_in_caffe_order():
    x, cont = sequence(d=5)
    layer = make_layer("RNN", hidden=4)
    run(layer, blobs(x, cont), 1)
    assert [b.shape for b in layer.blobs] == [(4, 5), (4,), (4, 4), (4, 4), (4,)]
    layer = make_layer("RNN", hidden=4)
    run(layer, blobs(x, cont, RNG.standard_normal((2, 7))), 1)
    assert [b.shape for b in layer.blobs] == [(4, 5), (4,), (4, 7), (4, 4), (4, 4), (4,)]


def test_default_fillers_are_caffe_constant_zero():
    x, cont = sequence()
    layer = create_layer(text_format.Parse(
        'name: "l" type: "LSTM" recurrent_param { num_output: 2 }', caffe_pb2.LayerParameter()))
    top = run(layer, blobs(x, cont), 1)
    assert all(not b.data.any() for b in layer.blobs)
    # all gates at sigmoid(0) = 0.5, g = tanh(0) = 0: the cell stays 0, so h = 0
    assert not top[0].data.any()


# -- forward values against NumPy --------------------------------------------------------
@pytest.mark.parametrize("static", [False, True])
def test_rnn_matches_numpy(static):
    x, cont = sequence(steps=5, d=3, resets=((2, 1), (3, 0)))
    xs = RNG.uniform(-1, 1, (2, 4)) if static else None
    layer = make_layer("RNN", hidden=3)
    bottom = blobs(x, cont) + (blobs(xs) if static else [])
    top = run(layer, bottom, 1)
    want, _ = rnn_reference(x, cont, params64(layer), xs=xs)
    assert top[0].shape == (5, 2, 3)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("static", [False, True])
def test_lstm_matches_numpy(static):
    x, cont = sequence(steps=5, d=3, resets=((2, 1), (3, 0)))
    xs = RNG.uniform(-1, 1, (2, 2, 2)) if static else None
    layer = make_layer("LSTM", hidden=3)
    bottom = blobs(x, cont) + (blobs(xs) if static else [])
    top = run(layer, bottom, 1)
    want, _, _ = lstm_reference(x, cont, params64(layer), xs=xs)
    assert top[0].shape == (5, 2, 3)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-5, atol=1e-6)


def test_lstm_input_with_more_feature_axes_is_flattened():
    x, cont = sequence(d=6)
    layer = make_layer("LSTM", hidden=2)
    top = run(layer, blobs(x.reshape(4, 2, 2, 3), cont), 1)
    want, _, _ = lstm_reference(x, cont, params64(layer))
    np.testing.assert_allclose(top[0].data, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_cont_zero_restarts_the_stream(kind):
    """From a reset on, a stream's output equals a fresh run on its remaining steps."""
    x, cont = sequence(steps=5, resets=((3, 0),))
    layer = make_layer(kind)
    full = run(layer, blobs(x, cont), 1)[0].data.copy()
    tail = make_layer(kind)
    tail_top = run(tail, blobs(x[3:], cont[3:]), 1)
    for dst, src in zip(tail.blobs, layer.blobs):
        dst.data[...] = src.data
    tail.forward(blobs(x[3:], cont[3:]), tail_top)
    np.testing.assert_allclose(full[3:, 0], tail_top[0].data[:, 0], rtol=1e-6, atol=1e-7)
    assert not np.allclose(full[3:, 1], tail_top[0].data[:, 1])  # stream 1 continued


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_state_carries_over_to_the_next_forward(kind):
    """Without expose_hidden the final state of one forward starts the next (Caffe)."""
    x, cont = sequence(steps=3, resets=())
    layer = make_layer(kind)
    bottom = blobs(x, cont)
    top = run(layer, bottom, 1)
    ref = rnn_reference if kind == "RNN" else lstm_reference
    first = ref(x, cont, params64(layer))
    x2 = RNG.uniform(-1, 1, x.shape).astype(np.float32)
    cont2 = np.ones_like(cont)  # continue every stream
    bottom2 = blobs(x2, cont2)
    layer.forward(bottom2, top)
    if kind == "RNN":
        want, _ = ref(x2, cont2, params64(layer), h0=first[1])
    else:
        want, _, _ = ref(x2, cont2, params64(layer), h0=first[1], c0=first[2])
    np.testing.assert_allclose(top[0].data, want, rtol=1e-5, atol=1e-6)
    # a new batch size starts from zeros again
    x3, cont3 = x2[:, :1].copy(), cont2[:, :1].copy()
    bottom3 = blobs(x3, cont3)
    layer.reshape(bottom3, top)
    layer.forward(bottom3, top)
    np.testing.assert_allclose(top[0].data, ref(x3, cont3, params64(layer))[0], rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_expose_hidden_takes_and_returns_the_state(kind):
    x, cont = sequence(steps=3, resets=())
    cont[0] = 1  # keep h0/c0 in play
    states = [RNG.uniform(-1, 1, (1, 2, 3)) for _ in range(1 if kind == "RNN" else 2)]
    layer = make_layer(kind, extra="expose_hidden: true")
    bottom = blobs(x, cont, *states)
    top = run(layer, bottom, 1 + len(states))
    init = [s[0].astype(np.float64) for s in states]
    if kind == "RNN":
        want, h_last = rnn_reference(x, cont, params64(layer), h0=init[0])
        finals = [h_last]
    else:
        want, h_last, c_last = lstm_reference(x, cont, params64(layer), *init)
        finals = [h_last, c_last]
    np.testing.assert_allclose(top[0].data, want, rtol=1e-5, atol=1e-6)
    for t, f in zip(top[1:], finals):
        assert t.shape == (1, 2, 3)
        np.testing.assert_allclose(t.data[0], f, rtol=1e-5, atol=1e-6)
    # forward again: the state comes from the bottoms, not from the last forward
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_expose_hidden_gradients_do_not_cross_batches(kind):
    """Caffe master shares only the data of h0/c0 and hT/cT with its unrolled net: the
    final state's diffs are ignored and h0/c0 get no gradient."""
    x, cont = sequence(steps=3, resets=())
    cont[0] = 1
    n_states = 1 if kind == "RNN" else 2
    states = [RNG.uniform(-1, 1, (1, 2, 3)) for _ in range(n_states)]
    layer = make_layer(kind, extra="expose_hidden: true")
    bottom = blobs(x, cont, *states)
    top = run(layer, bottom, 1 + n_states)
    dy = RNG.standard_normal(top[0].shape).astype(np.float32)

    def grads(final_diff):
        for p in layer.blobs:
            p.diff[...] = 0
        for b in bottom:
            b.diff[...] = 7
        top[0].diff[...] = dy
        for t in top[1:]:
            t.diff[...] = final_diff
        layer.backward(top, [True, False] + [True] * n_states, bottom)
        return [p.diff.copy() for p in layer.blobs] + [bottom[0].diff.copy()]

    for a, b in zip(grads(0.0), grads(5.0)):
        np.testing.assert_array_equal(a, b)
    for b in bottom[2:]:
        assert not b.diff.any()


# -- gradients -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
@pytest.mark.parametrize("static", [False, True])
def test_gradient(kind, static):
    x, cont = sequence(steps=3, d=2, resets=((2, 1),))
    bottom = blobs(x, cont) + (blobs(RNG.uniform(-1, 1, (2, 2))) if static else [])
    layer = make_layer(kind, hidden=2)
    check_gradient(layer, bottom, tops(1), check_bottom=[0, 2] if static else [0])


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_backward_accumulates_parameter_diffs(kind):
    x, cont = sequence()
    layer = make_layer(kind)
    bottom = blobs(x, cont)
    top = run(layer, bottom, 1)
    top[0].diff[...] = RNG.standard_normal(top[0].shape)
    for p in layer.blobs:
        p.diff[...] = 0
    layer.backward(top, [True, False], bottom)
    once = [p.diff.copy() for p in layer.blobs]
    dx = bottom[0].diff.copy()
    layer.backward(top, [True, False], bottom)
    for p, d in zip(layer.blobs, once):
        np.testing.assert_allclose(p.diff, 2 * d, rtol=1e-6)
    np.testing.assert_array_equal(bottom[0].diff, dx)  # bottom diffs are overwritten


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_no_gradient_to_cont(kind):
    x, cont = sequence()
    layer = make_layer(kind)
    bottom = blobs(x, cont)
    top = run(layer, bottom, 1)
    assert layer.allow_force_backward(0) and not layer.allow_force_backward(1)
    with pytest.raises(LayerError, match="sequence continuation"):
        layer.backward(top, [True, True], bottom)


# -- errors ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_shape_errors_name_the_layer(kind):
    x, cont = sequence()
    with pytest.raises(LayerError, match="num_output"):
        run(make_layer(kind, hidden=0), blobs(x, cont), 1)
    with pytest.raises(ShapeError, match="layer 'l'.*3 axes"):
        run(make_layer(kind), blobs(x[:, :, 0], cont), 1)
    with pytest.raises(ShapeError, match=r"\(T, N\)"):
        run(make_layer(kind), blobs(x, cont[:3]), 1)
    with pytest.raises(ShapeError, match="static input"):
        run(make_layer(kind), blobs(x, cont, np.zeros((3, 2))), 1)
    states = [np.zeros((1, 2, 2))] * (1 if kind == "RNN" else 2)
    with pytest.raises(ShapeError, match="hidden state's shape"):
        run(make_layer(kind, extra="expose_hidden: true"), blobs(x, cont, *states),
            1 + len(states))
    with pytest.raises(LayerError, match="at least"):
        run(make_layer(kind, extra="expose_hidden: true"), blobs(x, cont), 1 + len(states))
    layer = make_layer(kind)
    top = run(layer, blobs(x, cont), 1)
    with pytest.raises(ShapeError, match="features per step"):
        layer.reshape(blobs(np.zeros((4, 2, 5)), cont), top)


# -- LSTMUnit --------------------------------------------------------------------------
def unit_layer():
    return create_layer(text_format.Parse('name: "u" type: "LSTMUnit"',
                                          caffe_pb2.LayerParameter()))


def unit_reference(c_prev, x, cont):
    hid = c_prev.shape[-1]
    k = cont[..., None]
    i, f = sigmoid(x[..., :hid]), k * sigmoid(x[..., hid:2 * hid])
    o, g = sigmoid(x[..., 2 * hid:3 * hid]), np.tanh(x[..., 3 * hid:])
    c = f * c_prev + i * g
    return c, o * np.tanh(c)


def test_lstm_unit_matches_numpy():
    c_prev = RNG.uniform(-1, 1, (1, 3, 2))
    x = RNG.uniform(-2, 2, (1, 3, 8))
    cont = np.array([[1.0, 0.0, 0.5]])  # cont scales the forget gate (Caffe)
    top = run(unit_layer(), blobs(c_prev, x, cont), 2)
    c, h = unit_reference(c_prev, x, cont)
    np.testing.assert_allclose(top[0].data, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(top[1].data, h, rtol=1e-5, atol=1e-6)


def test_lstm_unit_gradient():
    bottom = blobs(RNG.uniform(-1, 1, (1, 3, 2)), RNG.uniform(-2, 2, (1, 3, 8)),
                   np.array([[1.0, 0.0, 1.0]]))
    layer = unit_layer()
    check_gradient(layer, bottom, tops(2), check_bottom=[0, 1])
    assert not layer.allow_force_backward(2) and layer.allow_force_backward(1)


def test_lstm_unit_backward_uses_caffes_forget_gate_term():
    """Caffe's df = dc_term * c_prev * f * (1 - f) with f = cont * sigmoid (non-binary cont)."""
    c_prev = np.array([[[0.7]]])
    x = np.array([[[0.1, 0.3, -0.2, 0.4]]])
    cont = np.array([[0.5]])
    layer = unit_layer()
    bottom = blobs(c_prev, x, cont)
    top = run(layer, bottom, 2)
    top[0].diff[...] = 1.0
    top[1].diff[...] = 0.0
    layer.backward(top, [True, True, False], bottom)
    f = 0.5 * sigmoid(0.3)
    assert bottom[1].diff[0, 0, 1] == pytest.approx(0.7 * f * (1 - f), rel=1e-5)
    assert bottom[0].diff[0, 0, 0] == pytest.approx(f, rel=1e-5)
    with pytest.raises(LayerError, match="sequence continuation"):
        layer.backward(top, [True, True, True], bottom)


def test_lstm_unit_shape_errors():
    with pytest.raises(ShapeError, match="layer 'u'"):
        run(unit_layer(), blobs(np.zeros((1, 3, 2)), np.zeros((1, 3, 7)), np.zeros((1, 3))), 2)
    with pytest.raises(ShapeError, match=r"cont \(1, N\)"):
        run(unit_layer(), blobs(np.zeros((1, 3, 2)), np.zeros((1, 3, 8)), np.zeros((1, 2))), 2)


# -- through a Net ---------------------------------------------------------------------
def test_lstm_in_a_net_with_exposed_state():
    text = """
    name: "seq" force_backward: true
    layer { name: "in" type: "Input" top: "x" top: "cont" top: "h0" top: "c0"
            input_param { shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 dim: 2 }
                          shape { dim: 1 dim: 2 dim: 5 } shape { dim: 1 dim: 2 dim: 5 } } }
    layer { name: "l" type: "LSTM" bottom: "x" bottom: "cont" bottom: "h0" bottom: "c0"
            top: "h" top: "hT" top: "cT"
            recurrent_param { num_output: 5 expose_hidden: true
                              weight_filler { type: "gaussian" std: 0.3 } } }
    """
    net = Net(text, phase="TRAIN")
    x, cont = sequence(steps=3, d=4, resets=())
    h0, c0 = RNG.uniform(-1, 1, (2, 1, 2, 5))
    out = net.forward(x=x, cont=cont, h0=h0, c0=c0)
    want, h_last, c_last = lstm_reference(x, cont, params64(net.layers[-1]), h0[0], c0[0])
    np.testing.assert_allclose(out["h"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["cT"][0], c_last, rtol=1e-5, atol=1e-6)
    net.blobs["h"].diff[...] = 1
    diffs = net.backward()
    assert diffs["x"].any() and not diffs["cont"].any()


GOLDEN = sorted(p for p in glob.glob(os.path.join(CONFORMANCE, "layers", "*.npz"))
                if os.path.basename(p).startswith(("rnn", "lstm")))


@pytest.mark.skipif(not GOLDEN, reason="shared conformance cases not present")
@pytest.mark.parametrize("path", GOLDEN, ids=[os.path.basename(p)[:-4] for p in GOLDEN])
def test_golden_case(path):
    problems = replay(path, rtol=2e-5)
    assert not problems, "\n".join(problems)
