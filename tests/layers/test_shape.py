"""Flatten, Reshape, Concat, Slice, Split, Silence, Tile, Crop, BatchReindex, Filter,
Parameter: shapes and values against NumPy, gradients, errors, golden cases."""

import numpy as np
import pytest

from netdef.errors import DataError, LayerError, NetdefError, ShapeError
from netdef.kernels import shape as K
from tests.gradcheck import check_gradient
from tests.layers.layer_case import blobs, make_layer, replay_layer, setup_forward, tops

RNG = np.random.default_rng(7)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def layer_of(kind, params="", bottoms=("a",), tops_=("t",)):
    text = f'name: "l" type: "{kind}" ' + " ".join(f'bottom: "{b}"' for b in bottoms)
    text += " " + " ".join(f'top: "{t}"' for t in tops_) + " " + params
    return make_layer(text)


def run(kind, params, *arrays, num_tops=1):
    layer = layer_of(kind, params, bottoms="abcdefgh"[:len(arrays)],
                     tops_=[f"t{i}" for i in range(num_tops)])
    bottom, top = blobs(*arrays), tops(num_tops)
    setup_forward(layer, bottom, top)
    return layer, bottom, top


# -- kernels against plain NumPy ------------------------------------------------
def test_tile_kernels_match_numpy():
    x = rand(3, 5)
    out = np.empty((3, 20), np.float32)
    K.tile_forward(out, x, 4)
    np.testing.assert_array_equal(out, np.tile(x, (1, 4)))
    d = rand(3, 20)
    dx = np.full((3, 5), 9, np.float32)
    K.tile_backward(dx, d, 4)
    np.testing.assert_allclose(dx, d.reshape(3, 4, 5).sum(1), rtol=1e-6)


def test_gather_scatter_kernels_match_numpy():
    x = rand(4, 3)
    rows = np.array([3, 0, 3, 1], np.int64)
    out = np.empty((4, 3), np.float32)
    K.gather_rows(out, x, rows)
    np.testing.assert_array_equal(out, x[rows])
    acc = np.ones((4, 3), np.float32)
    want = acc.copy()
    np.add.at(want, rows, out)
    K.scatter_add_rows(acc, out, rows)
    np.testing.assert_allclose(acc, want, rtol=1e-6)


def test_rows_from_values_reports_first_bad_position():
    rows = np.empty(4, np.int64)
    assert K.rows_from_values(rows, np.array([0, 2, 1.7, 1], np.float32), 3, False) == -1
    assert list(rows) == [0, 2, 1, 1]
    assert K.rows_from_values(rows, np.array([0, 2, 1.5, 1], np.float32), 3, True) == 2
    assert K.rows_from_values(rows, np.array([0, 3, 1, 1], np.float32), 3, False) == 1
    assert K.rows_from_values(rows, np.array([-0.5, 0, 1, 1], np.float32), 3, False) == 0
    assert K.rows_from_values(rows, np.array([0, np.nan, 1, 1], np.float32), 3, False) == 1


# -- Flatten ---------------------------------------------------------------------
@pytest.mark.parametrize("params, shape", [
    ("", (2, 60)),
    ("flatten_param { axis: 2 }", (2, 3, 20)),
    ("flatten_param { axis: 1 end_axis: 2 }", (2, 12, 5)),
    ("flatten_param { axis: 0 end_axis: -2 }", (24, 5)),
    ("flatten_param { axis: -3 end_axis: -2 }", (2, 12, 5)),
])
def test_flatten_shapes_and_values(params, shape):
    x = rand(2, 3, 4, 5)
    _, bottom, top = run("Flatten", params, x)
    assert top[0].shape == shape
    np.testing.assert_array_equal(top[0].data, x.reshape(shape))
    assert top[0].shares_data_with(bottom[0])
    top[0].diff[...] = rand(*shape)
    np.testing.assert_array_equal(bottom[0].diff, top[0].diff.reshape(x.shape))


def test_flatten_gradient():
    check_gradient(layer_of("Flatten"), blobs(rand(2, 3, 2)), tops(1))


def test_flatten_errors():
    (a,) = blobs(rand(2, 3))
    with pytest.raises(LayerError, match="in-place"):
        layer_of("Flatten", tops_=("a",)).layer_setup([a], [a])
    with pytest.raises(NetdefError, match="end_axis"):
        layer_of("Flatten", "flatten_param { axis: 1 end_axis: 7 }").layer_setup([a], tops(1))


# -- Reshape -----------------------------------------------------------------------
@pytest.mark.parametrize("params, shape", [
    ("shape { dim: 0 dim: -1 dim: 5 }", (2, 12, 5)),
    ("shape { dim: 6 dim: 20 }", (6, 20)),
    ("shape { dim: 0 dim: 0 dim: 0 dim: 0 }", (2, 3, 4, 5)),
    ("shape { dim: -1 }", (120,)),
    ("shape { dim: 1 dim: 1 } axis: 0 num_axes: 0", (1, 1, 2, 3, 4, 5)),
    ("shape { dim: 1 } axis: 2 num_axes: 0", (2, 3, 1, 4, 5)),
    ("shape { dim: 1 dim: 1 } axis: -1 num_axes: 0", (2, 3, 4, 5, 1, 1)),
    ("shape { dim: -1 } axis: 1 num_axes: 2", (2, 12, 5)),
    ("shape { dim: 0 dim: 2 dim: -1 } axis: 1", (2, 3, 2, 10)),
    ("shape { dim: 6 dim: -1 } axis: 0 num_axes: 2", (6, 1, 4, 5)),
])
def test_reshape_shapes_and_values(params, shape):
    x = rand(2, 3, 4, 5)
    _, bottom, top = run("Reshape", f"reshape_param {{ {params} }}", x)
    assert top[0].shape == shape
    np.testing.assert_array_equal(top[0].data, x.reshape(shape))
    assert top[0].shares_data_with(bottom[0])
    top[0].diff[...] = rand(*shape)
    np.testing.assert_array_equal(bottom[0].diff, top[0].diff.reshape(x.shape))


def test_reshape_gradient():
    layer = layer_of("Reshape", "reshape_param { shape { dim: -1 dim: 2 } }")
    check_gradient(layer, blobs(rand(2, 3, 2)), tops(1))


def test_reshape_follows_a_new_bottom_shape():
    layer, bottom, top = run("Reshape", "reshape_param { shape { dim: 0 dim: -1 } }",
                             rand(2, 3, 4))
    bottom[0].reshape(5, 2, 2)
    bottom[0].data[...] = rand(5, 2, 2)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (5, 4)
    np.testing.assert_array_equal(top[0].data, bottom[0].data.reshape(5, 4))


@pytest.mark.parametrize("params, match", [
    ("shape { dim: -1 dim: -1 }", "more than one -1"),
    ("shape { dim: 7 dim: 3 }", r"21 elements.*\(2, 3, 4, 5\) has 120"),
    ("shape { dim: 7 dim: -1 }", "cannot infer"),
    ("shape { dim: 0 dim: 0 dim: 0 dim: 0 dim: 0 }", "no axis 4 to copy"),
    ("shape { dim: -2 }", "dimension -2"),
    ("shape { dim: 1 } axis: 3 num_axes: 2", "runs past"),
    ("shape { dim: 1 } axis: 6", "out of range"),
])
def test_reshape_errors_name_the_layer_and_shapes(params, match):
    layer = layer_of("Reshape", f"reshape_param {{ {params} }}")
    with pytest.raises((LayerError, ShapeError), match=match) as err:
        layer.layer_setup(blobs(rand(2, 3, 4, 5)), tops(1))
    assert "layer 'l' (Reshape)" in str(err.value)


# -- Concat ------------------------------------------------------------------------
@pytest.mark.parametrize("params, axis, shapes", [
    ("", 1, [(2, 3, 4), (2, 1, 4), (2, 2, 4)]),
    ("concat_param { axis: 0 }", 0, [(1, 3, 2), (3, 3, 2)]),
    ("concat_param { axis: -1 }", 2, [(2, 3, 1), (2, 3, 4)]),
    ("concat_param { concat_dim: 2 }", 2, [(2, 3, 1), (2, 3, 2)]),
])
def test_concat_matches_numpy(params, axis, shapes):
    xs = [rand(*s) for s in shapes]
    _, bottom, top = run("Concat", params, *xs)
    np.testing.assert_array_equal(top[0].data, np.concatenate(xs, axis))
    d = rand(*top[0].shape)
    top[0].diff[...] = d
    layer = layer_of("Concat", params, bottoms="abc"[:len(xs)])
    layer.layer_setup(bottom, top)
    layer.backward(top, [True] * len(xs), bottom)
    parts = np.split(d, np.cumsum([s[axis] for s in shapes])[:-1], axis)
    for b, want in zip(bottom, parts, strict=True):
        np.testing.assert_array_equal(b.diff, want)


def test_concat_gradient():
    layer = layer_of("Concat", "concat_param { axis: 1 }", bottoms="ab")
    check_gradient(layer, blobs(rand(2, 2, 3), rand(2, 1, 3)), tops(1))


def test_concat_single_bottom_shares():
    _, bottom, top = run("Concat", "", rand(2, 3))
    assert top[0].shares_data_with(bottom[0])
    np.testing.assert_array_equal(top[0].data, bottom[0].data)


def test_concat_errors():
    with pytest.raises(ShapeError, match=r"except along axis 1.*\(2, 3, 4\).*\(2, 3, 5\)"):
        run("Concat", "", rand(2, 3, 4), rand(2, 3, 5))
    with pytest.raises(ShapeError, match="same shape"):
        run("Concat", "", rand(2, 3, 4), rand(2, 3))
    with pytest.raises(LayerError, match="not both"):
        run("Concat", "concat_param { axis: 1 concat_dim: 1 }", rand(2, 3), rand(2, 3))
    with pytest.raises(ShapeError, match="concat_dim 3"):
        run("Concat", "concat_param { concat_dim: 3 }", rand(2, 3), rand(2, 3))
    with pytest.raises(ShapeError, match="axis 4 is out of range"):
        run("Concat", "concat_param { axis: 4 }", rand(2, 3), rand(2, 3))


# -- Slice -------------------------------------------------------------------------
@pytest.mark.parametrize("params, axis, points, n", [
    ("slice_param { slice_point: 1 slice_point: 4 }", 1, [1, 4], 3),
    ("", 1, [2, 4], 3),
    ("slice_param { axis: 0 }", 0, [3], 2),
    ("slice_param { slice_dim: 2 slice_point: 1 }", 2, [1], 2),
    ("slice_param { axis: -1 slice_point: 2 }", 2, [2], 2),
])
def test_slice_matches_numpy(params, axis, points, n):
    x = rand(6, 6, 3)
    layer, bottom, top = run("Slice", params, x, num_tops=n)
    for t, want in zip(top, np.split(x, points, axis), strict=True):
        np.testing.assert_array_equal(t.data, want)
    ds = [rand(*t.shape) for t in top]
    for t, d in zip(top, ds, strict=True):
        t.diff[...] = d
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.concatenate(ds, axis))


def test_slice_gradient():
    layer = layer_of("Slice", "slice_param { slice_point: 1 }", tops_=("t0", "t1"))
    check_gradient(layer, blobs(rand(2, 3, 2)), tops(2))


def test_slice_single_top_shares():
    _, bottom, top = run("Slice", "", rand(2, 3))
    assert top[0].shares_data_with(bottom[0])


def test_slice_errors():
    with pytest.raises(ShapeError, match="evenly divide"):
        run("Slice", "", rand(2, 5), num_tops=2)
    with pytest.raises(LayerError, match="2 slice_point.*3 slices.*2 tops"):
        run("Slice", "slice_param { slice_point: 1 slice_point: 2 }", rand(2, 5), num_tops=2)
    with pytest.raises(ShapeError, match="increase strictly"):
        run("Slice", "slice_param { slice_point: 3 slice_point: 2 }", rand(2, 5), num_tops=3)
    with pytest.raises(ShapeError, match="increase strictly"):
        run("Slice", "slice_param { slice_point: 7 }", rand(2, 5), num_tops=2)
    with pytest.raises(LayerError, match="not both"):
        run("Slice", "slice_param { axis: 1 slice_dim: 1 }", rand(2, 4), num_tops=2)


# -- Split -------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3])
def test_split_shares_data_and_sums_diffs(n):
    x = rand(2, 3)
    layer, bottom, top = run("Split", "", x, num_tops=n)
    for t in top:
        assert t.shares_data_with(bottom[0])
        np.testing.assert_array_equal(t.data, x)
    ds = [rand(2, 3) for _ in top]
    for t, d in zip(top, ds, strict=True):
        t.diff[...] = d
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, np.sum(ds, axis=0), rtol=1e-6)


def test_split_gradient():
    check_gradient(layer_of("Split", tops_=("t0", "t1")), blobs(rand(2, 3)), tops(2))


# -- Silence -----------------------------------------------------------------------
def test_silence_has_no_tops_and_zeroes_diffs():
    layer = layer_of("Silence", bottoms="ab", tops_=())
    bottom = blobs(rand(2, 3), rand(4))
    setup_forward(layer, bottom, [])
    for b in bottom:
        b.diff[...] = 5
    layer.backward([], [True, False], bottom)
    assert not bottom[0].diff.any()
    assert (bottom[1].diff == 5).all()


# -- Tile --------------------------------------------------------------------------
@pytest.mark.parametrize("axis, tiles", [(0, 3), (1, 2), (2, 4), (-1, 2)])
def test_tile_matches_numpy(axis, tiles):
    x = rand(2, 3, 4)
    layer, bottom, top = run("Tile", f"tile_param {{ axis: {axis} tiles: {tiles} }}", x)
    reps = [1, 1, 1]
    reps[axis] = tiles
    np.testing.assert_array_equal(top[0].data, np.tile(x, reps))
    d = rand(*top[0].shape)
    top[0].diff[...] = d
    layer.backward(top, [True], bottom)
    a = axis % 3
    shape = list(x.shape)
    shape[a:a + 1] = [tiles, x.shape[a]]
    np.testing.assert_allclose(bottom[0].diff, d.reshape(shape).sum(a), rtol=1e-5)


def test_tile_gradient():
    check_gradient(layer_of("Tile", "tile_param { tiles: 3 }"), blobs(rand(2, 2, 2)), tops(1))


def test_tile_errors():
    with pytest.raises(LayerError, match="tiles must be given"):
        run("Tile", "tile_param { axis: 1 }", rand(2, 3))
    with pytest.raises(LayerError, match="positive"):
        run("Tile", "tile_param { tiles: 0 }", rand(2, 3))
    with pytest.raises(ShapeError, match="axis 2 is out of range"):
        run("Tile", "tile_param { axis: 2 tiles: 2 }", rand(2, 3))


# -- Crop --------------------------------------------------------------------------
@pytest.mark.parametrize("params, ref_shape, window", [
    ("", (2, 3, 3, 2), np.s_[:, :, 0:3, 0:2]),
    ("crop_param { offset: 1 }", (2, 3, 3, 2), np.s_[:, :, 1:4, 1:3]),
    ("crop_param { offset: 2 offset: 1 }", (2, 3, 3, 2), np.s_[:, :, 2:5, 1:3]),
    ("crop_param { axis: 1 offset: 1 offset: 0 offset: 2 }", (5, 2, 3, 2),
     np.s_[:, 1:3, 0:3, 2:4]),
    ("crop_param { axis: -1 offset: 3 }", (1, 1, 1, 1), np.s_[:, :, :, 3:4]),
    ("crop_param { axis: 0 offset: 0 }", (1, 1, 1, 1), np.s_[0:1, 0:1, 0:1, 0:1]),
])
def test_crop_matches_numpy(params, ref_shape, window):
    x = rand(2, 3, 5, 4)
    layer, bottom, top = run("Crop", params, x, np.zeros(ref_shape, np.float32))
    want = x[window]
    if ref_shape[0] == 5:  # axis 1 keeps bottom[0]'s first dimension
        assert top[0].shape == (2, 2, 3, 2)
    np.testing.assert_array_equal(top[0].data, want)
    d = rand(*top[0].shape)
    top[0].diff[...] = d
    bottom[1].diff[...] = 7
    layer.backward(top, [True, True], bottom)
    expect = np.zeros_like(x)
    expect[window] = d
    np.testing.assert_array_equal(bottom[0].diff, expect)
    assert (bottom[1].diff == 7).all()  # the reference gets no gradient


def test_crop_gradient():
    layer = layer_of("Crop", "crop_param { offset: 1 }", bottoms="ab")
    check_gradient(layer, blobs(rand(1, 2, 4, 3), np.zeros((1, 2, 2, 2))), tops(1),
                   check_bottom=[0])


def test_crop_errors():
    with pytest.raises(ShapeError, match=r"cannot crop axis 3.*offset 2.*\(1, 1, 2, 3\)"):
        run("Crop", "crop_param { offset: 2 }", rand(1, 1, 5, 4), np.zeros((1, 1, 2, 3)))
    with pytest.raises(LayerError, match="3 offsets"):
        run("Crop", "crop_param { offset: 1 offset: 1 offset: 1 }", rand(1, 1, 5, 4),
            np.zeros((1, 1, 2, 2)))
    with pytest.raises(ShapeError, match=r"reference 'b' \(1, 2, 2\) has fewer axes"):
        run("Crop", "", rand(1, 1, 5, 4), np.zeros((1, 2, 2)))


# -- BatchReindex ------------------------------------------------------------------
def test_batch_reindex_matches_numpy_and_accumulates():
    x = rand(4, 2, 3)
    idx = np.array([3, 0, 3, 3, 1], np.float32)
    layer, bottom, top = run("BatchReindex", "", x, idx)
    np.testing.assert_array_equal(top[0].data, x[idx.astype(int)])
    d = rand(5, 2, 3)
    top[0].diff[...] = d
    bottom[0].diff[...] = 9
    layer.backward(top, [True, False], bottom)
    want = np.zeros_like(x)
    np.add.at(want, idx.astype(int), d)
    np.testing.assert_allclose(bottom[0].diff, want, rtol=1e-6)


def test_batch_reindex_gradient():
    layer = layer_of("BatchReindex", bottoms="ab")
    check_gradient(layer, blobs(rand(3, 2), np.array([2, 2, 0, 1])), tops(1), check_bottom=[0])


def test_batch_reindex_errors():
    with pytest.raises(DataError, match=r"index 4 at position 1 of bottom 'b' \(2,\).*\[0, 4\)"):
        run("BatchReindex", "", rand(4, 2), np.array([0, 4]))
    with pytest.raises(LayerError, match="'l' .*index -1"):
        run("BatchReindex", "", rand(4, 2), np.array([0, -1]))
    with pytest.raises(ShapeError, match="must be 1-D"):
        run("BatchReindex", "", rand(4, 2), np.zeros((2, 1)))
    layer, bottom, top = run("BatchReindex", "", rand(4, 2), np.array([0, 1]))
    with pytest.raises(LayerError, match="cannot backpropagate to the indices"):
        layer.backward(top, [True, True], bottom)
    assert layer.allow_force_backward(0) and not layer.allow_force_backward(1)


# -- Filter ------------------------------------------------------------------------
def test_filter_matches_numpy():
    x, y = rand(5, 2, 3), rand(5, 4)
    sel = np.array([0, 1, 0, 2.5, 1], np.float32)
    layer = layer_of("Filter", bottoms="abc", tops_=("t0", "t1"))
    bottom, top = blobs(x, y, sel), tops(2)
    layer.layer_setup(bottom, top)
    assert top[0].shape == (5, 2, 3)  # before any data: every item
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    keep = sel != 0
    np.testing.assert_array_equal(top[0].data, x[keep])
    np.testing.assert_array_equal(top[1].data, y[keep])
    d0, d1 = rand(3, 2, 3), rand(3, 4)
    top[0].diff[...], top[1].diff[...] = d0, d1
    for b in bottom:
        b.diff[...] = 9
    layer.backward(top, [True, False, False], bottom)
    want = np.zeros_like(x)
    want[keep] = d0
    np.testing.assert_array_equal(bottom[0].diff, want)
    assert (bottom[1].diff == 9).all()


def test_filter_follows_the_selector():
    layer, bottom, top = run("Filter", "", rand(3, 2), np.array([[1], [0], [1]]))
    assert top[0].shape == (2, 2)
    bottom[1].data[...] = 0
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (0, 2)
    bottom[1].data[...] = 1
    layer.forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, bottom[0].data)


def test_filter_gradient():
    layer = layer_of("Filter", bottoms="ab")
    check_gradient(layer, blobs(rand(4, 3), np.array([1, 0, 0, 1])), tops(1),
                   check_bottom=[0])


def test_filter_errors():
    with pytest.raises(ShapeError, match=r"selector 'b' must have shape.*\(3, 2\)"):
        run("Filter", "", rand(3, 2), np.ones((3, 2)))
    with pytest.raises(ShapeError, match=r"'a' \(4, 2\) must have the selector's first"):
        run("Filter", "", rand(4, 2), np.ones(3))
    with pytest.raises(LayerError, match="one top per filtered bottom"):
        run("Filter", "", rand(3, 2), rand(3, 2), np.ones(3), num_tops=1)
    layer, bottom, top = run("Filter", "", rand(3, 2), np.ones(3))
    with pytest.raises(LayerError, match="selector"):
        layer.backward(top, [True, True], bottom)


# -- Parameter ---------------------------------------------------------------------
def test_parameter_exposes_its_blob():
    layer = make_layer('name: "l" type: "Parameter" top: "t" '
                       'parameter_param { shape { dim: 2 dim: 3 } }')
    top = tops(1)
    setup_forward(layer, [], top)
    (p,) = layer.blobs
    assert p.shape == top[0].shape == (2, 3)
    p.data[...] = rand(2, 3)
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, p.data)
    top[0].diff[...] = 3
    layer.backward(top, [], [])
    assert (p.diff == 3).all()


def test_parameter_gradient():
    layer = make_layer('name: "l" type: "Parameter" top: "t" '
                       'parameter_param { shape { dim: 3 } }')
    check_gradient(layer, [], tops(1))


# -- golden cases from the reference Caffe -------------------------------------------
@pytest.mark.parametrize("case", [
    "flatten", "reshape", "concat", "slice", "slice_axis0", "split_explicit", "silence",
    "tile", "tile_axis0", "tile_axis1", "crop", "batch_reindex", "filter", "parameter",
])
def test_golden_case_at_layer_level(case):
    replay_layer(case)
