"""Embed: lookup values against NumPy, accumulated gradients, errors, golden cases."""

import numpy as np
import pytest

from netdef.errors import DataError, LayerError
from netdef.kernels import shape as K
from tests.gradcheck import check_gradient
from tests.layers.layer_case import blobs, make_layer, replay_layer, setup_forward, tops

RNG = np.random.default_rng(5)
FILLERS = 'weight_filler { type: "uniform" min: -1 max: 1 } bias_filler { type: "gaussian" }'


def embed_layer(params=f"num_output: 3 input_dim: 5 {FILLERS}"):
    return make_layer(f'name: "l" type: "Embed" bottom: "a" top: "t" embed_param {{ {params} }}')


def run(x, params=f"num_output: 3 input_dim: 5 {FILLERS}"):
    layer = embed_layer(params)
    bottom, top = blobs(x), tops(1)
    setup_forward(layer, bottom, top)
    return layer, bottom, top


def test_column_sum_kernel_accumulates():
    d = RNG.standard_normal((6, 4)).astype(np.float32)
    acc = np.ones(4, np.float32)
    K.column_sum_add(acc, d)
    np.testing.assert_allclose(acc, 1 + d.astype(np.float64).sum(0), rtol=1e-6, atol=1e-6)


def test_embed_setup_fills_weights_and_bias():
    layer, _, _ = run(np.zeros((2,)))
    w, b = layer.blobs
    assert w.shape == (5, 3) and b.shape == (3,)
    assert np.abs(w.data).max() <= 1 and np.unique(w.data).size == 15
    assert np.unique(b.data).size == 3
    assert layer.param_propagate_down == [True, True]


@pytest.mark.parametrize("bias", [True, False])
def test_embed_matches_numpy(bias):
    idx = np.array([[4, 0, 2], [2, 2, 1]], np.float32)
    params = f"num_output: 3 input_dim: 5 bias_term: {str(bias).lower()} {FILLERS}"
    layer, bottom, top = run(idx, params)
    w = layer.blobs[0].data
    want = w[idx.astype(int)] + (layer.blobs[1].data if bias else 0)
    assert top[0].shape == (2, 3, 3)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-6)

    d = RNG.standard_normal((2, 3, 3)).astype(np.float32)
    top[0].diff[...] = d
    for p in layer.blobs:
        p.diff[...] = 1  # backward accumulates into what is there
    layer.backward(top, [False], bottom)
    dw = np.ones_like(w)
    np.add.at(dw, idx.astype(int).ravel(), d.reshape(-1, 3))
    np.testing.assert_allclose(layer.blobs[0].diff, dw, rtol=1e-5)
    if bias:
        np.testing.assert_allclose(layer.blobs[1].diff, 1 + d.reshape(-1, 3).sum(0), rtol=1e-5)


def test_embed_honours_param_propagate_down():
    layer, bottom, top = run(np.array([1, 3], np.float32))
    top[0].diff[...] = 1
    layer.param_propagate_down = [False, True]
    layer.backward(top, [False], bottom)
    assert not layer.blobs[0].diff.any()
    np.testing.assert_array_equal(layer.blobs[1].diff, [2, 2, 2])


def test_embed_gradient():
    check_gradient(embed_layer(), blobs(np.array([[1, 4], [1, 0]])), tops(1), check_bottom=[])


@pytest.mark.parametrize("value, match", [
    (5, r"index 5 at position 1 of bottom 'a' \(3,\) is not an integer in \[0, 5\)"),
    (-1, "index -1 at position 1"),
    (1.5, "index 1.5 at position 1"),
    (np.nan, "index nan"),
])
def test_embed_rejects_bad_indices(value, match):
    with pytest.raises(DataError, match=match) as err:
        run(np.array([0, value, 2], np.float32))
    assert isinstance(err.value, LayerError)
    assert "layer 'l' (Embed)" in str(err.value)


def test_embed_errors():
    with pytest.raises(LayerError, match="num_output must be positive"):
        run(np.zeros(2), "input_dim: 5")
    with pytest.raises(LayerError, match="input_dim must be positive"):
        run(np.zeros(2), "num_output: 5")
    layer, bottom, top = run(np.zeros(2))
    assert not layer.allow_force_backward(0)
    with pytest.raises(LayerError, match="cannot backpropagate to the indices"):
        layer.backward(top, [True], bottom)


@pytest.mark.parametrize("case", ["embed", "embed_nobias"])
def test_golden_case_at_layer_level(case):
    replay_layer(case)
