"""Neuron layers: NumPy references, numeric gradients, in place vs out of place,
Dropout's statistics, bad parameters, and the reference Caffe's golden cases."""

import numpy as np
import pytest
from google.protobuf import text_format

from netdef.blob import Blob
from netdef.errors import LayerError, ShapeError
from netdef.layer import create_layer
from netdef.proto import caffe_pb2
from tests.gradcheck import check_gradient
from tests.layers.layer_case import replay_layer

TRAIN, TEST = 0, 1


def make(text, phase=TRAIN, rng=None):
    lp = text_format.Parse(f'name: "l" {text}', caffe_pb2.LayerParameter())
    lp.phase = phase
    return create_layer(lp, rng=rng if rng is not None else np.random.default_rng(0))


def blob_of(arr, name="x"):
    b = Blob(arr.shape, name=name)
    b.data[...] = arr
    return b


def away_from(x, points, gap=0.05):
    """Move entries within ``gap`` of any kink in ``points`` out by 2 * gap."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < gap
        x[near] += 2 * gap
    return x


def normal(shape, seed=0, scale=1.0, shift=0.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale + shift


def positive(shape, seed=0, low=0.3, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, shape)


def sigmoid(v):
    return 0.5 * np.tanh(0.5 * v) + 0.5


# (id, layer text, input maker(shape), reference forward f(x), reference dx g(x, y, dy))
CASES = [
    ("relu", 'type: "ReLU"', lambda s: away_from(normal(s), [0]),
     lambda x: np.maximum(x, 0), lambda x, y, dy: dy * (x > 0)),
    ("relu_leaky", 'type: "ReLU" relu_param { negative_slope: 0.1 }',
     lambda s: away_from(normal(s), [0]),
     lambda x: np.where(x > 0, x, 0.1 * x), lambda x, y, dy: dy * np.where(x > 0, 1, 0.1)),
    ("relu_negative_slope", 'type: "ReLU" relu_param { negative_slope: -0.3 }',
     lambda s: away_from(normal(s), [0]),
     lambda x: np.where(x > 0, x, -0.3 * x), lambda x, y, dy: dy * np.where(x > 0, 1, -0.3)),
    ("sigmoid", 'type: "Sigmoid"', lambda s: normal(s, scale=3),
     sigmoid, lambda x, y, dy: dy * y * (1 - y)),
    ("tanh", 'type: "TanH"', lambda s: normal(s, scale=2),
     np.tanh, lambda x, y, dy: dy * (1 - y * y)),
    ("absval", 'type: "AbsVal"', lambda s: away_from(normal(s), [0]),
     np.abs, lambda x, y, dy: dy * np.sign(x)),
    ("bnll", 'type: "BNLL"', lambda s: normal(s, scale=3),
     lambda x: np.logaddexp(0, x), lambda x, y, dy: dy * sigmoid(x)),
    ("clip", 'type: "Clip" clip_param { min: -0.5 max: 0.7 }',
     lambda s: away_from(normal(s), [-0.5, 0.7]),
     lambda x: np.clip(x, -0.5, 0.7), lambda x, y, dy: dy * ((x >= -0.5) & (x <= 0.7))),
    ("elu", 'type: "ELU" elu_param { alpha: 0.7 }', lambda s: away_from(normal(s), [0]),
     lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
     lambda x, y, dy: dy * np.where(x > 0, 1, 0.7 * np.exp(x))),
    ("elu_default", 'type: "ELU"', lambda s: away_from(normal(s), [0]),
     lambda x: np.where(x > 0, x, np.expm1(x)),
     lambda x, y, dy: dy * np.where(x > 0, 1, np.exp(x))),
    ("elu_negative_alpha", 'type: "ELU" elu_param { alpha: -0.4 }',
     lambda s: away_from(normal(s), [0]),
     lambda x: np.where(x > 0, x, -0.4 * np.expm1(x)),
     lambda x, y, dy: dy * np.where(x > 0, 1, -0.4 * np.exp(x))),
    ("exp", 'type: "Exp" exp_param { base: 2 scale: 0.5 shift: 0.1 }', normal,
     lambda x: 2.0 ** (0.1 + 0.5 * x), lambda x, y, dy: dy * y * np.log(2) * 0.5),
    ("exp_default", 'type: "Exp"', normal,
     np.exp, lambda x, y, dy: dy * y),
    ("log", 'type: "Log" log_param { base: 10 scale: 2 shift: 0.5 }', positive,
     lambda x: np.log10(0.5 + 2 * x), lambda x, y, dy: dy * 2 / ((0.5 + 2 * x) * np.log(10))),
    ("log_default", 'type: "Log"', positive,
     np.log, lambda x, y, dy: dy / x),
    ("power", 'type: "Power" power_param { power: 1.5 scale: 0.7 shift: 0.2 }', positive,
     lambda x: (0.2 + 0.7 * x) ** 1.5, lambda x, y, dy: dy * 1.5 * 0.7 * (0.2 + 0.7 * x) ** 0.5),
    ("power_no_shift", 'type: "Power" power_param { power: -0.5 scale: 2 }', positive,
     lambda x: (2 * x) ** -0.5, lambda x, y, dy: dy * -0.5 * 2 * (2 * x) ** -1.5),
    ("power_square", 'type: "Power" power_param { power: 2 scale: -1.5 shift: 0.5 }', normal,
     lambda x: (0.5 - 1.5 * x) ** 2, lambda x, y, dy: dy * 2 * -1.5 * (0.5 - 1.5 * x)),
    ("power_linear", 'type: "Power" power_param { scale: 3 shift: -1 }', normal,
     lambda x: 3 * x - 1, lambda x, y, dy: dy * 3),
    ("power_zero_scale", 'type: "Power" power_param { power: 3 scale: 0 shift: 2 }', normal,
     lambda x: np.full_like(x, 8.0), lambda x, y, dy: np.zeros_like(x)),
    ("power_zero_power", 'type: "Power" power_param { power: 0 scale: 2 shift: 2 }', normal,
     lambda x: np.ones_like(x), lambda x, y, dy: np.zeros_like(x)),
    ("swish", 'type: "Swish" swish_param { beta: 1.5 }', lambda s: normal(s, scale=2),
     lambda x: x * sigmoid(1.5 * x),
     lambda x, y, dy: dy * (1.5 * y + sigmoid(1.5 * x) * (1 - 1.5 * y))),
    ("swish_default", 'type: "Swish"', lambda s: normal(s, scale=2),
     lambda x: x * sigmoid(x), lambda x, y, dy: dy * (y + sigmoid(x) * (1 - y))),
    ("dropout_test", 'type: "Dropout" dropout_param { dropout_ratio: 0.3 }', normal,
     lambda x: x, lambda x, y, dy: dy),
]
PHASES = {"dropout_test": TEST}
IDS = [c[0] for c in CASES]


def run(layer, x, dy, in_place=False):
    """Forward and backward once; returns (top data, bottom diff) copies."""
    bottom = blob_of(x)
    top = bottom if in_place else Blob(name="y")
    layer.layer_setup([bottom], [top])
    layer.forward([bottom], [top])
    y = top.data.copy()
    top.diff[...] = dy
    layer.backward([top], [True], [bottom])
    return y, bottom.diff.copy()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_numpy_reference(case):
    name, text, make_x, f, g = case
    shape = (2, 3, 4, 5)
    x = make_x(shape).astype(np.float32)
    dy = normal(shape, seed=1).astype(np.float32)
    y, dx = run(make(text, PHASES.get(name, TRAIN)), x, dy)
    x64 = x.astype(np.float64)
    want_y = f(x64)
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, g(x64, want_y, dy.astype(np.float64)), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_numeric_gradient(case):
    name, text, make_x, _, _ = case
    x = make_x((2, 3, 4)).astype(np.float32)
    layer = make(text, PHASES.get(name, TRAIN))
    check_gradient(layer, [blob_of(x)], [Blob(name="y")], kink=0.02)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_in_place_equals_out_of_place(case):
    name, text, make_x, _, _ = case
    shape = (2, 3, 4, 5)
    x = make_x(shape).astype(np.float32)
    dy = normal(shape, seed=2).astype(np.float32)
    phase = PHASES.get(name, TRAIN)
    y0, dx0 = run(make(text, phase), x, dy)
    y1, dx1 = run(make(text, phase), x, dy, in_place=True)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)


def test_sigmoid_and_tanh_saturate_without_overflow():
    x = np.array([-1e4, -100, -20, -1e-6, 0, 1e-6, 20, 100, 1e4], np.float32)
    y, _ = run(make('type: "Sigmoid"'), x, np.ones_like(x))
    np.testing.assert_allclose(y, sigmoid(x.astype(np.float64)), atol=1e-7)
    y, _ = run(make('type: "TanH"'), x, np.ones_like(x))
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64)), rtol=1e-6, atol=0)
    y, _ = run(make('type: "TanH"'), np.array([np.nan], np.float32), np.ones(1, np.float32))
    assert np.isnan(y[0])


def test_bnll_keeps_relative_accuracy_in_the_tails():
    x = np.array([-80, -30, -17, -1e-3, 0, 1e-3, 17, 30, 100], np.float32)
    y, dx = run(make('type: "BNLL"'), x, np.ones_like(x))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(y, np.logaddexp(0, x64), rtol=1e-6, atol=0)
    np.testing.assert_allclose(dx, np.exp(x64 - np.logaddexp(0, x64)), rtol=1e-6, atol=0)


# -- Threshold -------------------------------------------------------------------------
def test_threshold_forward_and_no_backward():
    x = np.array([[-1.0, 0.2, 0.2001, 3.0]], np.float32)
    layer = make('type: "Threshold" threshold_param { threshold: 0.2 }')
    bottom, top = blob_of(x), Blob(name="y")
    layer.layer_setup([bottom], [top])
    layer.forward([bottom], [top])
    np.testing.assert_array_equal(top.data, [[0, 0, 1, 1]])
    with pytest.raises(LayerError, match="'l'.*no backward"):
        layer.backward([top], [True], [bottom])
    layer.backward([top], [False], [bottom])  # nothing asked, nothing to do


def test_threshold_in_place():
    x = normal((3, 4)).astype(np.float32)
    layer = make('type: "Threshold"')
    b = blob_of(x)
    layer.layer_setup([b], [b])
    layer.forward([b], [b])
    np.testing.assert_array_equal(b.data, (x > 0).astype(np.float32))


# -- PReLU -----------------------------------------------------------------------------
PRELU = [
    ('type: "PReLU"', False),
    ('type: "PReLU" prelu_param { channel_shared: true }', True),
    ('type: "PReLU" prelu_param { filler { type: "uniform" min: -0.5 max: 0.9 } }', False),
]


def prelu_reference(x, slope, shared, dy):
    a = np.full(x.shape[1], slope) if shared else slope
    a = a.reshape((1, -1) + (1,) * (x.ndim - 2))
    y = np.where(x > 0, x, a * x)
    dx = dy * np.where(x > 0, 1, a)
    per_channel = np.sum(np.where(x > 0, 0, dy * x), axis=tuple(i for i in range(x.ndim)
                                                                 if i != 1))
    da = per_channel.sum(keepdims=True).reshape(()) if shared else per_channel
    return y, dx, da


@pytest.mark.parametrize("text,shared", PRELU, ids=["default", "shared", "filler"])
def test_prelu_reference_and_gradient(text, shared):
    x = away_from(normal((2, 3, 4, 5)), [0]).astype(np.float32)
    dy = normal(x.shape, seed=3).astype(np.float32)
    layer = make(text)
    bottom, top = blob_of(x), Blob(name="y")
    layer.layer_setup([bottom], [top])
    slopes = layer.blobs[0]
    assert slopes.shape == (() if shared else (3,))
    if "filler" not in text:
        np.testing.assert_array_equal(slopes.data, 0.25)
    else:
        assert np.all((slopes.data >= -0.5) & (slopes.data <= 0.9))
    slopes.data[...] = np.float32(-0.3) if shared else np.array([0.1, -0.4, 0.7])
    layer.forward([bottom], [top])
    top.diff[...] = dy
    slopes.diff[...] = 0.5  # parameter gradients accumulate
    layer.backward([top], [True], [bottom])
    y, dx, da = prelu_reference(x.astype(np.float64), slopes.data.astype(np.float64), shared,
                                dy.astype(np.float64))
    np.testing.assert_allclose(top.data, y, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(bottom.diff, dx, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(slopes.diff, da + 0.5, rtol=1e-5, atol=1e-5)
    check_gradient(make(text), [blob_of(x[:, :, :2, :2])], [Blob(name="y")], kink=0.02)


@pytest.mark.parametrize("text,shared", PRELU[:2], ids=["default", "shared"])
def test_prelu_in_place(text, shared):
    x = away_from(normal((2, 3, 4)), [0]).astype(np.float32)
    dy = normal(x.shape, seed=4).astype(np.float32)
    results = []
    for in_place in (False, True):
        layer = make(text)
        bottom = blob_of(x)
        top = bottom if in_place else Blob(name="y")
        layer.layer_setup([bottom], [top])
        layer.blobs[0].data[...] = -0.2
        layer.forward([bottom], [top])
        y = top.data.copy()
        top.diff[...] = dy
        layer.blobs[0].diff[...] = 0
        layer.backward([top], [True], [bottom])
        results.append((y, bottom.diff.copy(), layer.blobs[0].diff.copy()))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_prelu_respects_param_propagate_down():
    x = normal((2, 3, 4)).astype(np.float32)
    layer = make('type: "PReLU"')
    bottom, top = blob_of(x), Blob(name="y")
    layer.layer_setup([bottom], [top])
    layer.param_propagate_down = [False]
    layer.forward([bottom], [top])
    top.diff[...] = 1
    layer.blobs[0].diff[...] = 0
    layer.backward([top], [True], [bottom])
    assert not layer.blobs[0].diff.any()


def test_prelu_needs_two_axes():
    layer = make('type: "PReLU"')
    with pytest.raises(ShapeError, match=r"'l'.*\(5,\)"):
        layer.layer_setup([blob_of(np.zeros(5, np.float32))], [Blob(name="y")])


# -- Dropout ---------------------------------------------------------------------------
def test_dropout_train_statistics_and_backward():
    ratio = 0.3
    x = np.ones((50, 40, 10), np.float32)
    layer = make(f'type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}',
                 rng=np.random.default_rng(5))
    bottom, top = blob_of(x), Blob(name="y")
    layer.layer_setup([bottom], [top])
    layer.forward([bottom], [top])
    y = top.data.copy()
    kept = y != 0
    assert abs(1 - kept.mean() - ratio) < 0.01
    np.testing.assert_allclose(y[kept], 1 / (1 - ratio), rtol=1e-6)
    assert abs(y.mean() - 1) < 0.02  # the scale keeps the expectation
    dy = normal(x.shape, seed=6).astype(np.float32)
    top.diff[...] = dy
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(bottom.diff, np.where(kept, dy / (1 - ratio), 0), rtol=1e-6)
    layer.forward([bottom], [top])
    assert (top.data != y).any()  # a fresh mask each forward


def test_dropout_same_seed_same_mask_and_in_place():
    x = normal((4, 5, 6)).astype(np.float32)
    dy = normal(x.shape, seed=7).astype(np.float32)
    y0, dx0 = run(make('type: "Dropout"', rng=np.random.default_rng(9)), x, dy)
    y1, dx1 = run(make('type: "Dropout"', rng=np.random.default_rng(9)), x, dy, in_place=True)
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(dx0, dx1)
    assert (y0 == 0).any() and (y0 != 0).any()


def test_dropout_test_phase_is_identity_in_place():
    x = normal((3, 4)).astype(np.float32)
    dy = normal(x.shape, seed=8).astype(np.float32)
    y, dx = run(make('type: "Dropout"', TEST), x, dy, in_place=True)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, dy)


class FixedDraws:
    """Stands in for the Net's generator: the same uniform draws every forward."""

    def __init__(self, seed):
        self.seed = seed

    def random(self, out, dtype):
        out[...] = np.random.default_rng(self.seed).random(out.size, dtype=dtype)


def test_dropout_train_numeric_gradient():
    x = normal((2, 3, 4)).astype(np.float32)
    layer = make('type: "Dropout" dropout_param { dropout_ratio: 0.4 }', rng=FixedDraws(3))
    check_gradient(layer, [blob_of(x)], [Blob(name="y")])


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.1])
def test_dropout_ratio_out_of_range(ratio):
    layer = make(f'type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}')
    with pytest.raises(LayerError, match="'l'.*dropout_ratio"):
        layer.layer_setup([blob_of(np.zeros((2, 2), np.float32))], [Blob(name="y")])


# -- bad parameters --------------------------------------------------------------------
@pytest.mark.parametrize("text", ['type: "Exp" exp_param { base: -2 }',
                                  'type: "Log" log_param { base: 0 }',
                                  'type: "Log" log_param { base: 1 }'])
def test_bad_base(text):
    with pytest.raises(LayerError, match="'l'.*base"):
        make(text).layer_setup([blob_of(np.ones((2, 2), np.float32))], [Blob(name="y")])


def test_clip_needs_min_and_max():
    lp = caffe_pb2.LayerParameter(name="l", type="Clip")
    lp.clip_param.min = -1
    layer = create_layer(lp)
    with pytest.raises(LayerError, match="'l'.*min and max"):
        layer.layer_setup([blob_of(np.ones((2, 2), np.float32))], [Blob(name="y")])


def test_wrong_blob_counts_name_the_layer():
    with pytest.raises(LayerError, match="'l'"):
        make('type: "ReLU"').layer_setup([blob_of(np.ones(2, np.float32))] * 2,
                                         [Blob(name="y")])


def test_reshape_follows_the_bottom():
    layer = make('type: "Swish"')
    bottom, top = blob_of(normal((2, 3)).astype(np.float32)), Blob(name="y")
    layer.layer_setup([bottom], [top])
    layer.forward([bottom], [top])
    x = normal((4, 5, 6), seed=3).astype(np.float32)
    bottom.reshape(x.shape)
    bottom.data[...] = x
    layer.reshape([bottom], [top])
    layer.forward([bottom], [top])
    np.testing.assert_allclose(top.data, x * sigmoid(x.astype(np.float64)), rtol=1e-5,
                               atol=1e-6)


# -- golden cases from the reference Caffe ----------------------------------------------
GOLDEN = ["relu", "relu_leaky", "sigmoid", "sigmoid_inplace", "tanh", "tanh_inplace", "absval",
          "bnll", "clip", "elu", "elu_default", "threshold", "dropout_test", "prelu", "swish",
          "swish_default"]
GOLDEN_LOOSE = ["exp", "log", "log_e", "power"]


@pytest.mark.parametrize("name", GOLDEN)
def test_golden(name):
    replay_layer(name, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", GOLDEN_LOOSE)
def test_golden_exp_log(name):
    replay_layer(name, rtol=1e-4, atol=1e-5)
