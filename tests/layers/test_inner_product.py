"""InnerProduct: NumPy reference, gradients, transpose and axis, accumulation, errors."""

import numpy as np
import pytest

from netdef.errors import LayerError, ShapeError
from tests.gradcheck import check_gradient
from tests.layers.layer_case import blobs, make_layer, replay_layer, tops


def ip_layer(body, name="ip"):
    return make_layer(f'name: "{name}" type: "InnerProduct" inner_product_param {{ {body} }}')


def setup(layer, x, seed=0):
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    rng = np.random.default_rng(seed)
    for b in layer.blobs:
        b.data[...] = rng.standard_normal(b.shape)
    return bottom, top


@pytest.mark.parametrize("case", ["ip_basic", "ip_nobias", "ip_axis2", "ip_axis_neg"])
def test_golden(case):
    replay_layer(case, rtol=1e-4)


@pytest.mark.parametrize("body,shape,axis", [
    ("num_output: 4", (3, 2, 5), 1),
    ("num_output: 4 transpose: true", (3, 2, 5), 1),
    ("num_output: 3 axis: 2 bias_term: false", (2, 3, 4, 2), 2),
    ("num_output: 2 axis: -1 transpose: true", (2, 3, 5), 2),
])
def test_matches_reference(body, shape, axis):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    layer = ip_layer(body)
    bottom, top = setup(layer, x)
    transpose = "transpose: true" in body
    w = layer.blobs[0].data.astype(np.float64)
    w_nk = w.T if transpose else w
    m, k = int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))
    assert w_nk.shape == (w_nk.shape[0], k)
    layer.forward(bottom, top)
    x2 = x.reshape(m, k).astype(np.float64)
    want = x2 @ w_nk.T
    if len(layer.blobs) > 1:
        want += layer.blobs[1].data
    assert top[0].shape == shape[:axis] + (w_nk.shape[0],)
    np.testing.assert_allclose(top[0].data.reshape(m, -1), want, rtol=1e-5, atol=1e-5)

    dy = rng.standard_normal(top[0].shape).astype(np.float32)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    dy2 = dy.reshape(m, -1).astype(np.float64)
    dw = dy2.T @ x2
    np.testing.assert_allclose(layer.blobs[0].diff, dw.T if transpose else dw, rtol=1e-5,
                               atol=1e-5)
    if len(layer.blobs) > 1:
        np.testing.assert_allclose(layer.blobs[1].diff, dy2.sum(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bottom[0].diff.reshape(m, k), dy2 @ w_nk, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("body", ["num_output: 3", "num_output: 3 transpose: true",
                                  "num_output: 2 axis: 2"])
def test_gradient(body):
    layer = ip_layer(body)
    x = np.random.default_rng(2).standard_normal((2, 3, 2))
    bottom, top = setup(layer, x)
    check_gradient(layer, bottom, top, setup=False)


def test_param_diffs_accumulate_and_respect_propagate_down():
    layer = ip_layer("num_output: 2")
    bottom, top = setup(layer, np.ones((2, 3)))
    layer.forward(bottom, top)
    top[0].diff[...] = 1.0
    layer.backward(top, [False], bottom)
    first = [p.diff.copy() for p in layer.blobs]
    layer.backward(top, [False], bottom)
    for p, f in zip(layer.blobs, first, strict=True):
        np.testing.assert_array_equal(p.diff, 2 * f)
    layer.param_propagate_down = [False, False]
    layer.backward(top, [True], bottom)
    for p, f in zip(layer.blobs, first, strict=True):
        np.testing.assert_array_equal(p.diff, 2 * f)


def test_fillers():
    layer = make_layer('name: "fc" type: "InnerProduct" inner_product_param { num_output: 50 '
                       'weight_filler { type: "xavier" } bias_filler { type: "constant" '
                       'value: 0.5 } }')
    bottom, top = blobs(np.zeros((2, 40))), tops(1)
    layer.layer_setup(bottom, top)
    w = layer.blobs[0].data
    assert w.shape == (50, 40) and np.abs(w).max() <= np.sqrt(3 / 40) + 1e-6 and w.std() > 0
    np.testing.assert_array_equal(layer.blobs[1].data, 0.5)


def test_errors_name_the_layer():
    with pytest.raises(LayerError, match="'fc9'.*num_output"):
        ip_layer("num_output: 0", name="fc9").layer_setup(blobs(np.zeros((2, 3))), tops(1))
    layer = ip_layer("num_output: 2", name="fc9")
    bottom, top = blobs(np.zeros((2, 3))), tops(1)
    layer.layer_setup(bottom, top)
    with pytest.raises(ShapeError, match="'fc9'.*expect 3"):
        layer.reshape(blobs(np.zeros((2, 4))), top)
    with pytest.raises(ShapeError, match="'fc9'.*axis 3"):
        ip_layer("num_output: 2 axis: 3", name="fc9").layer_setup(blobs(np.zeros((2, 3))),
                                                                   tops(1))
