"""Convolution's load-time rewrites: fuse_relu (ReLU in the output pass) and fold_affine
(a per-channel affine map folded into W and b), under every algorithm."""

import numpy as np
import pytest

from netdef.errors import ShapeError
from tests.layers import test_conv as base
from tests.layers.layer_case import blobs, tops
from tests.layers.test_conv_algorithms import VARIANTS, force

# bottom shape, params: a 1x1, a 3x3 (Winograd-capable), a 5x5 and a grouped strided case
CASES = [
    ((2, 3, 4, 4), dict(num_output=4, kernel_size=1)),
    ((2, 2, 5, 6), dict(num_output=3, kernel_size=3, pad=1)),
    ((2, 3, 6, 5), dict(num_output=4, kernel_size=5, pad=2)),
    ((1, 4, 6, 6), dict(num_output=2, kernel_size=3, stride=2, group=2)),
]


@pytest.fixture(params=VARIANTS)
def algo(request, monkeypatch):
    return force(request.param, monkeypatch)


def _layer(shape, params, seed=5):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    layer = base.conv_layer(**params)
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    base.randomize_params(layer, seed)
    return layer, bottom, top


def _forward(layer, bottom, top):
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    return top[0].data.copy()


@pytest.mark.parametrize("shape,params", CASES)
@pytest.mark.parametrize("slope", [0.0, 0.25])
def test_fuse_relu(algo, shape, params, slope):
    layer, bottom, top = _layer(shape, params)
    z = _forward(layer, bottom, top)
    assert layer.fused_relu is None
    layer.fuse_relu(slope)
    assert layer.fused_relu == slope
    y = _forward(layer, bottom, top)
    np.testing.assert_allclose(y, np.maximum(z, 0) + slope * np.minimum(z, 0), rtol=1e-6,
                               atol=1e-6)
    # backward is the plain convolution's, whatever the forward fused
    top[0].diff[...] = 1.0
    layer.backward(top, [True], bottom)
    dx = bottom[0].diff.copy()
    layer.fuse_relu(None)
    assert layer.fused_relu is None
    np.testing.assert_allclose(_forward(layer, bottom, top), z, rtol=1e-6, atol=1e-6)
    for blob in layer.blobs:
        blob.diff[...] = 0
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, dx, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape,params", CASES[1:3])
@pytest.mark.parametrize("bias", [True, False])
def test_fold_affine(algo, shape, params, bias):
    params = dict(params, bias_term="true" if bias else "false")
    layer, bottom, top = _layer(shape, params)
    z = _forward(layer, bottom, top)
    c = params["num_output"]
    scale = np.linspace(-1.5, 2.0, c).astype(np.float32)
    shift = np.linspace(0.5, -0.7, c).astype(np.float32)
    layer.fold_affine(scale, shift)
    assert layer.bias_term and len(layer.blobs) == 2
    assert len(layer.param_propagate_down) == 2
    want = z * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)
    # Winograd's round-off scales with the largest output (F(4x4, 5x5): ~3e-6 of it), not
    # with each element
    atol = 1e-5 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(_forward(layer, bottom, top), want, rtol=1e-5, atol=atol)
    if not bias:
        np.testing.assert_array_equal(layer.blobs[1].data, shift)


def test_fold_affine_then_relu():
    layer, bottom, top = _layer(*CASES[2])
    z = _forward(layer, bottom, top)
    layer.fold_affine(np.full(4, 2.0, np.float32), np.full(4, -0.5, np.float32))
    layer.fuse_relu(0.0)
    np.testing.assert_allclose(_forward(layer, bottom, top), np.maximum(2 * z - 0.5, 0),
                               rtol=1e-5, atol=1e-5)


def test_fold_affine_refuses_wrong_sizes():
    layer, _, _ = _layer(*CASES[0])
    with pytest.raises(ShapeError, match="fold_affine"):
        layer.fold_affine(np.ones(3), np.ones(4))
