"""Eltwise, Bias and Scale: NumPy references, numeric gradients, in place, errors,
and the reference Caffe's golden cases."""

import numpy as np
import pytest

from netdef.blob import Blob
from netdef.errors import LayerError, ShapeError
from tests.gradcheck import check_gradient
from tests.layers.layer_case import replay_layer
from tests.layers.test_neuron import blob_of, make, normal


def blobs_of(arrays):
    return [blob_of(a, name=f"b{i}") for i, a in enumerate(arrays)]


def forward_backward(layer, bottom, top, dy, propagate=None):
    layer.layer_setup(bottom, top)
    layer.forward(bottom, top)
    y = top[0].data.copy()
    top[0].diff[...] = dy
    for p in layer.blobs:
        p.diff[...] = 0
    layer.backward(top, propagate or [True] * len(bottom), bottom)
    return y


def distinct(shape, k, seed=0):
    """k arrays whose entries all differ by >= 0.1 (no MAX ties for a gradient check)."""
    n = int(np.prod(shape))
    values = np.random.default_rng(seed).permutation(n * k) * 0.1 - 0.05 * n * k
    return [values[i * n:(i + 1) * n].reshape(shape).astype(np.float32) for i in range(k)]


# -- Eltwise -----------------------------------------------------------------------------
ELTWISE = [
    ("prod2", "operation: PROD", 2),
    ("prod3", "operation: PROD", 3),
    ("prod3_unstable", "operation: PROD stable_prod_grad: false", 3),
    ("sum_default", "", 3),
    ("sum_coeff", "operation: SUM coeff: 0.5 coeff: -2 coeff: 1", 3),
    ("max2", "operation: MAX", 2),
    ("max3", "operation: MAX", 3),
]


def eltwise_reference(params, xs, dy):
    if "PROD" in params:
        y = np.prod(xs, axis=0)
        dxs = [dy * np.prod([x for j, x in enumerate(xs) if j != i], axis=0)
               for i in range(len(xs))]
    elif "MAX" in params:
        y = np.max(xs, axis=0)
        win = np.argmax(xs, axis=0)
        dxs = [np.where(win == i, dy, 0) for i in range(len(xs))]
    else:
        coeffs = [0.5, -2, 1] if "coeff" in params else [1] * len(xs)
        y = sum(c * x for c, x in zip(coeffs, xs))
        dxs = [c * dy for c in coeffs]
    return y, dxs


def eltwise(params):
    return make(f'type: "Eltwise" eltwise_param {{ {params} }}')


@pytest.mark.parametrize("name,params,k", ELTWISE, ids=[c[0] for c in ELTWISE])
def test_eltwise_reference(name, params, k):
    shape = (2, 3, 4, 5)
    xs = distinct(shape, k) if "MAX" in params else [
        normal(shape, seed=i).astype(np.float32) for i in range(k)]
    dy = normal(shape, seed=9).astype(np.float32)
    bottom, top = blobs_of(xs), [Blob(name="y")]
    y = forward_backward(eltwise(params), bottom, top, dy)
    want_y, want_dxs = eltwise_reference(params, [x.astype(np.float64) for x in xs], dy)
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-6)
    for b, want in zip(bottom, want_dxs):
        np.testing.assert_allclose(b.diff, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,params,k", ELTWISE, ids=[c[0] for c in ELTWISE])
def test_eltwise_numeric_gradient(name, params, k):
    shape = (2, 3, 2)
    if "MAX" in params:
        xs = distinct(shape, k, seed=1)
    else:  # away from 0: top / x for the unstable product gradient
        xs = [np.random.default_rng(i).choice([-1, 1], shape) *
              np.random.default_rng(i + 10).uniform(0.5, 1.5, shape) for i in range(k)]
    check_gradient(eltwise(params), blobs_of(xs), [Blob(name="y")])


def test_eltwise_max_ties_follow_caffe():
    a = np.array([1, 2, 3, 3], np.float32)
    b = np.array([1, 1, 4, 3], np.float32)
    c = np.array([1, 2, 0, 3], np.float32)
    dy = np.array([10, 20, 30, 40], np.float32)
    bottom = blobs_of([a, b, c])
    forward_backward(eltwise("operation: MAX"), bottom, [Blob(name="y")], dy)
    # first pair: ties go to b; later blobs take over only when strictly larger
    np.testing.assert_array_equal(bottom[0].diff, [0, 20, 0, 0])
    np.testing.assert_array_equal(bottom[1].diff, [10, 0, 30, 40])
    np.testing.assert_array_equal(bottom[2].diff, [0, 0, 0, 0])


def test_eltwise_propagate_down_subset():
    xs = [normal((3, 4), seed=i).astype(np.float32) for i in range(2)]
    bottom = blobs_of(xs)
    bottom[0].diff[...] = 7
    forward_backward(eltwise("operation: PROD"), bottom, [Blob(name="y")],
                     np.ones((3, 4), np.float32), propagate=[False, True])
    np.testing.assert_array_equal(bottom[0].diff, 7)
    np.testing.assert_allclose(bottom[1].diff, xs[0])


@pytest.mark.parametrize("name,params,k", ELTWISE, ids=[c[0] for c in ELTWISE])
@pytest.mark.parametrize("where", [0, 1, -1])
def test_eltwise_in_place(name, params, k, where):
    shape = (2, 3, 4)
    xs = distinct(shape, k, seed=2) if "MAX" in params else [
        normal(shape, seed=i + 3).astype(np.float32) for i in range(k)]
    dy = normal(shape, seed=11).astype(np.float32)
    out_bottom = blobs_of(xs)
    y0 = forward_backward(eltwise(params), out_bottom, [Blob(name="y")], dy)
    in_bottom = blobs_of(xs)
    y1 = forward_backward(eltwise(params), in_bottom, [in_bottom[where]], dy)
    np.testing.assert_allclose(y1, y0, rtol=1e-6)
    for b0, b1 in zip(out_bottom, in_bottom):
        np.testing.assert_allclose(b1.diff, b0.diff, rtol=1e-6, atol=1e-7)


def test_eltwise_shape_mismatch_names_layer_and_shapes():
    bottom = blobs_of([np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32)])
    with pytest.raises(ShapeError, match=r"'l'.*'b0' \(2, 3\).*'b1' \(3, 2\)"):
        eltwise("").layer_setup(bottom, [Blob(name="y")])


@pytest.mark.parametrize("params,message", [
    ("coeff: 1 coeff: 2 coeff: 3", "one coeff per bottom"),
    ("operation: PROD coeff: 1 coeff: 2", "only for operation SUM"),
])
def test_eltwise_bad_coeffs(params, message):
    bottom = blobs_of([np.zeros((2, 3), np.float32)] * 2)
    with pytest.raises(LayerError, match=f"'l'.*{message}"):
        eltwise(params).layer_setup(bottom, [Blob(name="y")])


def test_eltwise_needs_two_bottoms():
    with pytest.raises(LayerError, match="'l'.*at least 2"):
        eltwise("").layer_setup(blobs_of([np.zeros(3, np.float32)]), [Blob(name="y")])


# -- Bias and Scale ----------------------------------------------------------------------
def broadcast(operand, x_ndim, axis):
    """``operand`` shaped to broadcast against x from ``axis``."""
    return operand.reshape((1,) * axis + operand.shape + (1,) * (x_ndim - axis - operand.ndim))


def reduce_to(full, operand_shape, axis):
    """Sum ``full`` over every axis the operand (placed at ``axis``) does not cover."""
    keep = set(range(axis, axis + len(operand_shape)))
    return full.sum(axis=tuple(i for i in range(full.ndim) if i not in keep)).reshape(
        operand_shape)


# (id, layer params, x shape, operand shape, axis where the operand sits)
LEARNED = [
    ("default", "", (2, 3, 4, 5), (3,), 1),
    ("axis0_two_axes", "axis: 0 num_axes: 2", (2, 3, 4), (2, 3), 0),
    ("scalar", "num_axes: 0", (2, 3, 4), (), 0),
    ("to_the_end", "axis: 1 num_axes: -1", (2, 3, 4), (3, 4), 1),
    ("negative_axis", "axis: -2 num_axes: 2", (2, 3, 4, 5), (4, 5), 2),
    ("whole_blob", "axis: 0 num_axes: -1", (2, 3, 4), (2, 3, 4), 0),
]
LEARNED_IDS = [c[0] for c in LEARNED]


@pytest.mark.parametrize("name,params,shape,op_shape,axis", LEARNED, ids=LEARNED_IDS)
def test_bias_learned(name, params, shape, op_shape, axis):
    layer = make(f'type: "Bias" bias_param {{ {params} }}')
    x = normal(shape).astype(np.float32)
    dy = normal(shape, seed=1).astype(np.float32)
    bottom, top = [blob_of(x)], [Blob(name="y")]
    layer.layer_setup(bottom, top)
    assert layer.blobs[0].shape == op_shape
    np.testing.assert_array_equal(layer.blobs[0].data, 0)  # default filler: constant 0
    b = normal(op_shape, seed=2).astype(np.float32)
    layer.blobs[0].data[...] = b
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, x + broadcast(b, x.ndim, axis), rtol=1e-6)
    top[0].diff[...] = dy
    layer.blobs[0].diff[...] = 1  # accumulates
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, dy)
    np.testing.assert_allclose(layer.blobs[0].diff, reduce_to(dy, op_shape, axis) + 1,
                               rtol=1e-5, atol=1e-6)
    check_gradient(make(f'type: "Bias" bias_param {{ {params} }}'),
                   [blob_of(normal(shape, seed=3)[:2])], [Blob(name="y")], directional=True)


@pytest.mark.parametrize("name,params,shape,op_shape,axis", LEARNED, ids=LEARNED_IDS)
def test_scale_learned_with_bias(name, params, shape, op_shape, axis):
    layer = make(f'type: "Scale" scale_param {{ {params} bias_term: true '
                 'bias_filler { type: "constant" value: 0.5 } }')
    x = normal(shape).astype(np.float32)
    dy = normal(shape, seed=1).astype(np.float32)
    bottom, top = [blob_of(x)], [Blob(name="y")]
    layer.layer_setup(bottom, top)
    assert [p.shape for p in layer.blobs] == [op_shape, op_shape]
    np.testing.assert_array_equal(layer.blobs[0].data, 1)  # default filler: constant 1
    np.testing.assert_array_equal(layer.blobs[1].data, 0.5)
    s = normal(op_shape, seed=2).astype(np.float32)
    b = normal(op_shape, seed=3).astype(np.float32)
    layer.blobs[0].data[...] = s
    layer.blobs[1].data[...] = b
    layer.forward(bottom, top)
    sb, bb = broadcast(s, x.ndim, axis), broadcast(b, x.ndim, axis)
    np.testing.assert_allclose(top[0].data, x * sb + bb, rtol=1e-5, atol=1e-6)
    top[0].diff[...] = dy
    for p in layer.blobs:
        p.diff[...] = 1  # accumulates
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, dy * sb, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layer.blobs[0].diff, reduce_to(dy * x, op_shape, axis) + 1,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.blobs[1].diff, reduce_to(dy, op_shape, axis) + 1,
                               rtol=1e-5, atol=1e-5)
    layer = make(f'type: "Scale" scale_param {{ {params} bias_term: true }}')
    check_gradient(layer, [blob_of(normal(shape, seed=4)[:2])], [Blob(name="y")],
                   directional=True)


@pytest.mark.parametrize("kind", ["Bias", "Scale"])
@pytest.mark.parametrize("op_shape,axis,params", [
    ((3,), 1, ""), ((3, 4), 1, ""), ((), 0, ""), ((4,), 2, "axis: 2"),
    ((3, 4), 1, "axis: -2"),
], ids=["channel", "two_axes", "scalar", "axis2", "negative_axis"])
def test_second_bottom_operand(kind, op_shape, axis, params):
    shape = (2, 3, 4)
    x = normal(shape).astype(np.float32)
    v = normal(op_shape, seed=1).astype(np.float32)
    dy = normal(shape, seed=2).astype(np.float32)
    field = "bias_param" if kind == "Bias" else "scale_param"
    layer = make(f'type: "{kind}" {field} {{ {params} }}')
    bottom = [blob_of(x), blob_of(v, name="v")]
    bottom[1].diff[...] = 100  # an input's diff is overwritten, not accumulated
    y = forward_backward(layer, bottom, [Blob(name="y")], dy)
    assert layer.blobs == []
    vb = broadcast(v, x.ndim, axis)
    if kind == "Bias":
        np.testing.assert_allclose(y, x + vb, rtol=1e-6)
        np.testing.assert_array_equal(bottom[0].diff, dy)
        np.testing.assert_allclose(bottom[1].diff, reduce_to(dy, op_shape, axis), rtol=1e-5,
                                   atol=1e-6)
    else:
        np.testing.assert_allclose(y, x * vb, rtol=1e-6)
        np.testing.assert_allclose(bottom[0].diff, dy * vb, rtol=1e-6)
        np.testing.assert_allclose(bottom[1].diff, reduce_to(dy * x, op_shape, axis),
                                   rtol=1e-5, atol=1e-6)
    check_gradient(make(f'type: "{kind}" {field} {{ {params} }}'),
                   [blob_of(x), blob_of(v, name="v")], [Blob(name="y")])


def test_scale_second_bottom_with_bias_term():
    x = normal((2, 3, 4)).astype(np.float32)
    v = normal((3, 4), seed=1).astype(np.float32)
    layer = make('type: "Scale" scale_param { bias_term: true }')
    bottom = [blob_of(x), blob_of(v, name="v")]
    layer.layer_setup(bottom, [Blob(name="y")])
    assert [p.shape for p in layer.blobs] == [(3, 4)]  # bias spans bottom[1]'s axes
    check_gradient(make('type: "Scale" scale_param { bias_term: true }'),
                   [blob_of(x), blob_of(v, name="v")], [Blob(name="y")])


@pytest.mark.parametrize("text", [
    'type: "Bias"',
    'type: "Bias" bias_param { axis: 0 num_axes: 2 }',
    'type: "Scale"',
    'type: "Scale" scale_param { bias_term: true num_axes: 0 }',
    'type: "Scale" scale_param { axis: -2 num_axes: 2 bias_term: true }',
    'type: "Scale" scale_param { axis: 0 num_axes: -1 }',
])
def test_bias_scale_in_place(text):
    shape = (2, 3, 4, 5)
    x = normal(shape).astype(np.float32)
    dy = normal(shape, seed=5).astype(np.float32)
    results = []
    for in_place in (False, True):
        layer = make(text)
        bottom = [blob_of(x)]
        top = bottom[:1] if in_place else [Blob(name="y")]
        layer.layer_setup(bottom, top)
        for i, p in enumerate(layer.blobs):
            p.data[...] = normal(p.shape, seed=20 + i)
        layer.forward(bottom, top)
        y = top[0].data.copy()
        top[0].diff[...] = dy
        for p in layer.blobs:
            p.diff[...] = 0
        layer.backward(top, [True], bottom)
        results.append([y, bottom[0].diff.copy()] + [p.diff.copy() for p in layer.blobs])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_scale_respects_param_propagate_down():
    layer = make('type: "Scale" scale_param { bias_term: true }')
    bottom, top = [blob_of(normal((2, 3, 4)).astype(np.float32))], [Blob(name="y")]
    layer.layer_setup(bottom, top)
    layer.param_propagate_down = [False, True]
    layer.forward(bottom, top)
    top[0].diff[...] = 1
    for p in layer.blobs:
        p.diff[...] = 0
    layer.backward(top, [True], bottom)
    assert not layer.blobs[0].diff.any()
    np.testing.assert_allclose(layer.blobs[1].diff, 8)


def test_scale_filler():
    layer = make('type: "Scale" scale_param { filler { type: "constant" value: 3 } }')
    layer.layer_setup([blob_of(np.ones((2, 3, 4), np.float32))], [Blob(name="y")])
    np.testing.assert_array_equal(layer.blobs[0].data, 3)


@pytest.mark.parametrize("text,bottom_shapes,error,message", [
    ('type: "Scale"', [(2, 3, 4), (4,)], ShapeError, r"scale shape \(4,\).*\(2, 3, 4\)"),
    ('type: "Bias"', [(2, 3, 4), (3, 5)], ShapeError, r"bias shape \(3, 5\).*\(2, 3, 4\)"),
    ('type: "Bias" bias_param { axis: 1 num_axes: 3 }', [(2, 3, 4)], ShapeError, "extend past"),
    ('type: "Scale" scale_param { num_axes: -2 }', [(2, 3, 4)], LayerError, "num_axes"),
    ('type: "Scale" scale_param { axis: 3 }', [(2, 3, 4)], ShapeError, "axis 3"),
])
def test_bias_scale_bad_shapes(text, bottom_shapes, error, message):
    bottom = [blob_of(np.zeros(s, np.float32), name=f"b{i}") for i, s in enumerate(bottom_shapes)]
    with pytest.raises(error, match=f"'l'.*{message}"):
        make(text).layer_setup(bottom, [Blob(name="y")])


# -- golden cases from the reference Caffe ----------------------------------------------
@pytest.mark.parametrize("name", ["eltwise_max", "eltwise_max3", "eltwise_prod", "eltwise_prod3",
                                  "eltwise_sum_coeff", "bias", "scale_axis0", "scale_bias",
                                  "scale_inplace_axis_neg"])
def test_golden(name):
    replay_layer(name, rtol=1e-5, atol=1e-6)
