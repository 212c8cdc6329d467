"""Convolution's two routes (im2col + GEMM, Winograd) each forced through NETDEF_CONV_ALGO:
the golden cases, the NumPy-reference cases and the numeric gradient checks of
test_conv.py, plus 3x3 stride-1 cases that Winograd serves."""

import numpy as np
import pytest

from netdef.errors import LayerError
from netdef.layers import conv as conv_module
from tests.gradcheck import check_gradient
from tests.layers import test_conv as base
from tests.layers.layer_case import blobs, replay_layer, tops

ALGOS = ["gemm", "winograd"]
CONV_GOLDEN = [c for c in base.GOLDEN if c.startswith("conv_")]

# Shapes Winograd serves: 3x3, stride 1, pads 0-2, odd and even sizes, one channel.
WINOGRAD_CASES = [
    ((2, 3, 5, 5), dict(num_output=2, kernel_size=3, pad=1)),
    ((1, 2, 4, 6), dict(num_output=3, kernel_size=3)),
    ((1, 1, 3, 5), dict(num_output=2, kernel_size=3, pad_h=2, pad_w=1)),
    ((2, 2, 6, 3), dict(num_output=1, kernel_size=3, pad=2, bias_term="false")),
]


@pytest.fixture(params=ALGOS)
def algo(request, monkeypatch):
    monkeypatch.setenv(conv_module.ALGO_ENV, request.param)
    return request.param


@pytest.mark.parametrize("case", CONV_GOLDEN)
def test_golden(algo, case):
    replay_layer(case, rtol=1e-4)


@pytest.mark.parametrize("shape,params,repeated,geo", base.CONV_CASES)
def test_convolution_matches_reference(algo, shape, params, repeated, geo):
    base.test_convolution_matches_reference(shape, params, repeated, geo)


@pytest.mark.parametrize("kind,shape,params,repeated",
                         [c for c in base.GRAD_CASES if c[0] == "Convolution"])
def test_gradient(algo, kind, shape, params, repeated):
    base.test_gradient(kind, shape, params, repeated)


@pytest.mark.parametrize("shape,params", WINOGRAD_CASES)
def test_winograd_shapes(algo, shape, params):
    layer = base.conv_layer(**params)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    base.randomize_params(layer)
    layer.forward(bottom, top)
    assert layer.algo == algo
    pad = (params.get("pad_h", params.get("pad", 0)), params.get("pad_w", params.get("pad", 0)))
    b = layer.blobs[1].data if layer.bias_term else None
    want = base.ref_conv(x, layer.blobs[0].data, b, (1, 1), pad, (1, 1), 1)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(top[0].shape).astype(np.float32)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    w_t = layer.blobs[0].data[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    np.testing.assert_allclose(bottom[0].diff,
                               base.ref_conv(dy, w_t, None, (1, 1), (2 - pad[0], 2 - pad[1]),
                                             (1, 1), 1), rtol=1e-4, atol=1e-4)

    layer = base.conv_layer(**params)
    bottom, top = blobs(rng.standard_normal(shape)), tops(1)
    layer.layer_setup(bottom, top)
    base.randomize_params(layer)
    check_gradient(layer, bottom, top, setup=False)


def test_auto_picks_one_and_caches_it(monkeypatch):
    monkeypatch.delenv(conv_module.ALGO_ENV, raising=False)
    layer = base.conv_layer(num_output=2, kernel_size=3, pad=1)
    bottom, top = blobs(np.ones((1, 2, 4, 4), np.float32)), tops(1)
    layer.layer_setup(bottom, top)
    layer.forward(bottom, top)
    assert layer.algo in ALGOS
    assert layer.algo in conv_module._ALGO_CHOICE.values()


def test_unknown_algorithm_is_refused(monkeypatch):
    monkeypatch.setenv(conv_module.ALGO_ENV, "fft")
    layer = base.conv_layer(num_output=2, kernel_size=3)
    bottom, top = blobs(np.ones((1, 1, 4, 4), np.float32)), tops(1)
    layer.layer_setup(bottom, top)
    with pytest.raises(LayerError, match="NETDEF_CONV_ALGO"):
        layer.forward(bottom, top)
