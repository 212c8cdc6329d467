"""ArgMax and Reduction: values against NumPy, gradients, errors, golden cases."""

import numpy as np
import pytest

from netdef.errors import LayerError, ShapeError
from netdef.kernels import shape as K
from tests.gradcheck import check_gradient
from tests.layers.layer_case import blobs, make_layer, replay_layer, setup_forward, tops

RNG = np.random.default_rng(11)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def run(kind, params, x):
    layer = make_layer(f'name: "l" type: "{kind}" bottom: "a" top: "t" {params}')
    bottom, top = blobs(x), tops(1)
    setup_forward(layer, bottom, top)
    return layer, bottom, top


# -- ArgMax ------------------------------------------------------------------------
def topk_reference(x, k, axis):
    """(indices, values) of the k largest along ``axis``, ties to the larger index."""
    moved = np.moveaxis(x, axis, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    order = np.array([sorted(range(len(r)), key=lambda j, r=r: (-r[j], -j))[:k] for r in rows])
    order = order.reshape(moved.shape[:-1] + (k,))
    values = np.take_along_axis(moved, order, -1)
    return np.moveaxis(order, -1, axis), np.moveaxis(values, -1, axis)


def test_argmax_kernel_breaks_ties_towards_the_larger_index():
    x = np.array([[[1], [3], [3], [0], [3], [2]]], np.float32)  # (1, 6, 1)
    out = np.empty(8, np.float32)
    K.argmax_topk(out, x, 4, 8, 0, 4)
    np.testing.assert_array_equal(out, [4, 2, 1, 5, 3, 3, 3, 2])


@pytest.mark.parametrize("params, k, out_val", [
    ("", 1, False), ("argmax_param { top_k: 3 }", 3, False),
    ("argmax_param { out_max_val: true }", 1, True),
    ("argmax_param { out_max_val: true top_k: 4 }", 4, True),
])
def test_argmax_without_axis(params, k, out_val):
    x = rand(3, 2, 5)
    x[0, 1, 3] = x[0, 0, 2] = 9  # a tie among the winners
    _, _, top = run("ArgMax", params, x)
    idx, val = topk_reference(x.reshape(3, -1), k, 1)
    if out_val:
        assert top[0].shape == (3, 2, k)
        np.testing.assert_array_equal(top[0].data[:, 0], idx)
        np.testing.assert_array_equal(top[0].data[:, 1], val)
    else:
        assert top[0].shape == (3, 1, k)
        np.testing.assert_array_equal(top[0].data[:, 0], idx)


def test_argmax_without_axis_keeps_trailing_singleton_axes():
    _, _, top = run("ArgMax", "", rand(2, 3, 4, 5))
    assert top[0].shape == (2, 1, 1, 1)


@pytest.mark.parametrize("axis, k, out_val", [
    (0, 1, False), (1, 2, False), (2, 3, True), (-1, 1, True),
])
def test_argmax_with_axis(axis, k, out_val):
    x = rand(3, 4, 5)
    flag = "true" if out_val else "false"
    _, _, top = run("ArgMax", f"argmax_param {{ axis: {axis} top_k: {k} out_max_val: {flag} }}",
                    x)
    idx, val = topk_reference(x, k, axis)
    np.testing.assert_array_equal(top[0].data, val if out_val else idx)


def test_argmax_errors():
    with pytest.raises(LayerError, match=r"top_k 6 exceeds the number of classes 5"):
        run("ArgMax", "argmax_param { top_k: 6 }", rand(2, 5))
    with pytest.raises(LayerError, match=r"top_k 4 exceeds the size 3 of axis 1"):
        run("ArgMax", "argmax_param { top_k: 4 axis: 1 }", rand(2, 3, 5))
    with pytest.raises(LayerError, match="at least 1"):
        run("ArgMax", "argmax_param { top_k: 0 }", rand(2, 5))
    with pytest.raises(ShapeError, match="axis 3 is out of range"):
        run("ArgMax", "argmax_param { axis: 3 }", rand(2, 5))
    layer, bottom, top = run("ArgMax", "", rand(2, 5))
    assert not layer.allow_force_backward(0)
    layer.backward(top, [False], bottom)
    with pytest.raises(LayerError, match="no gradient"):
        layer.backward(top, [True], bottom)


# -- Reduction ---------------------------------------------------------------------
OPS = {
    "SUM": (lambda r: r.sum(1), lambda x, g: np.broadcast_to(g[:, None], x.shape)),
    "ASUM": (lambda r: np.abs(r).sum(1), lambda x, g: np.sign(x) * g[:, None]),
    "SUMSQ": (lambda r: (r * r).sum(1), lambda x, g: 2 * x * g[:, None]),
    "MEAN": (lambda r: r.mean(1), lambda x, g: np.broadcast_to(g[:, None], x.shape) / x.shape[1]),
}


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("axis, coeff", [(0, 1.0), (1, -0.5), (2, 2.0), (-1, 1.0)])
def test_reduction_matches_numpy(op, axis, coeff):
    x = rand(2, 3, 4)
    x[0, 0, 0] = 0  # sign(0) = 0 for ASUM
    layer, bottom, top = run("Reduction",
                             f"reduction_param {{ operation: {op} axis: {axis} coeff: {coeff} }}",
                             x)
    a = axis % 3
    assert top[0].shape == x.shape[:a]
    rows = x.reshape(int(np.prod(x.shape[:a])), -1).astype(np.float64)
    fwd, bwd = OPS[op]
    np.testing.assert_allclose(top[0].data.reshape(-1), coeff * fwd(rows), rtol=1e-5,
                               atol=1e-6)
    g = rand(*top[0].shape).reshape(-1)
    top[0].diff[...] = g.reshape(top[0].shape)
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff.reshape(rows.shape), coeff * bwd(rows, g),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", sorted(OPS))
def test_reduction_gradient(op):
    x = rand(2, 3, 2)
    x[np.abs(x) < 0.1] = 0.5  # keep ASUM away from its kink
    layer = make_layer('name: "l" type: "Reduction" bottom: "a" top: "t" '
                       f'reduction_param {{ operation: {op} axis: 1 coeff: 1.5 }}')
    check_gradient(layer, blobs(x), tops(1), kink=0.02)


def test_reduction_default_is_sum_of_everything():
    x = rand(2, 3)
    _, _, top = run("Reduction", "", x)
    assert top[0].shape == ()
    np.testing.assert_allclose(top[0].data, x.sum(), rtol=1e-5)


def test_reduction_errors():
    with pytest.raises(ShapeError, match=r"'l' \(Reduction\): axis 2 is out of range.*\(2, 3\)"):
        run("Reduction", "reduction_param { axis: 2 }", rand(2, 3))


# -- golden cases --------------------------------------------------------------------
@pytest.mark.parametrize("case", [
    "argmax", "reduction_asum", "reduction_mean", "reduction_mean_neg_axis", "reduction_sum",
])
def test_golden_case_at_layer_level(case):
    replay_layer(case)
