"""Softmax: NumPy reference, stability, in place, gradient, golden case."""

import numpy as np
import pytest

from netdef.blob import Blob
from netdef.errors import ShapeError
from tests.gradcheck import check_gradient
from tests.layers.layer_case import case_id, case_paths, layer_with_blobs, replay_layer


def softmax_ref(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("shape,axis", [((2, 3, 2, 2), 1), ((4, 5), 1), ((3, 2, 4), -1),
                                        ((3, 2, 4), 0)])
def test_forward_matches_numpy(shape, axis):
    x = np.random.default_rng(0).standard_normal(shape) * 3
    layer, bottom, top = layer_with_blobs(f'type: "Softmax" softmax_param {{ axis: {axis} }}', x)
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, softmax_ref(bottom[0].data, axis), rtol=1e-5,
                               atol=1e-7)


def test_large_inputs_do_not_overflow():
    x = np.array([[1000.0, 999.0, -1000.0], [-5e4, -5e4, -5e4]])
    layer, bottom, top = layer_with_blobs('type: "Softmax"', x)
    layer.forward(bottom, top)
    assert np.all(np.isfinite(top[0].data))
    np.testing.assert_allclose(top[0].data, softmax_ref(bottom[0].data, 1), rtol=1e-5)


def test_backward_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 3))
    dy = rng.standard_normal((2, 4, 3)).astype(np.float32)
    layer, bottom, top = layer_with_blobs('type: "Softmax"', x)
    layer.forward(bottom, top)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    y = softmax_ref(bottom[0].data, 1)
    want = (dy - (dy * y).sum(axis=1, keepdims=True)) * y
    np.testing.assert_allclose(bottom[0].diff, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("axis", [1, 2])
def test_gradient(axis):
    x = np.random.default_rng(2).standard_normal((2, 3, 4))
    layer, bottom, top = layer_with_blobs(
        f'type: "Softmax" softmax_param {{ axis: {axis} }}', x, setup=False)
    check_gradient(layer, bottom, top)


def test_in_place_matches_out_of_place():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 2, 2))
    dy = rng.standard_normal(x.shape)
    layer, bottom, top = layer_with_blobs('type: "Softmax"', x)
    layer.forward(bottom, top)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    blob = Blob(x.shape, name="x")
    blob.data[...] = x
    inplace, _, _ = layer_with_blobs('type: "Softmax"', setup=False)
    inplace.layer_setup([blob], [blob])
    inplace.forward([blob], [blob])
    np.testing.assert_array_equal(blob.data, top[0].data)
    blob.diff[...] = dy
    inplace.backward([blob], [True], [blob])
    np.testing.assert_array_equal(blob.diff, bottom[0].diff)


def test_bad_axis_names_the_layer():
    with pytest.raises(ShapeError, match="layer 'l'.*softmax_param.axis"):
        layer_with_blobs('type: "Softmax" softmax_param { axis: 3 }', np.zeros((2, 3)))


@pytest.mark.parametrize("path", case_paths("softmax."), ids=case_id)
def test_golden(path):
    replay_layer(path, rtol=1e-4)
