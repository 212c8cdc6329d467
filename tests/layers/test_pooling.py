"""Pooling and SPP: Caffe's output-size rules, references, gradients, errors."""

import numpy as np
import pytest

from netdef.errors import LayerError, ShapeError
from tests.gradcheck import check_gradient
from tests.kernels.test_pooling_kernels import ref_ave, ref_max
from tests.layers.layer_case import blobs, make_layer, replay_layer, tops


def pool_layer(body, phase="TRAIN", name="p"):
    return make_layer(f'name: "{name}" type: "Pooling" phase: {phase} '
                      f'pooling_param {{ {body} }}')


def spread(shape, seed=0):
    """Distinct values 0.1 apart (shuffled): no ties, far from kinks for a 1e-2 step."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) * 0.1 - n * 0.05).reshape(shape)


def run(layer, x, ntop=1):
    bottom, top = blobs(x), tops(ntop)
    layer.layer_setup(bottom, top)
    layer.forward(bottom, top)
    return bottom, top


GOLDEN = ["pool_ave", "pool_ave_pad", "pool_ave_partial", "pool_floor", "pool_global_ave",
          "pool_max", "pool_max_edge_pad", "pool_max_pad", "pool_max_partial",
          "pool_max_stride1_pad", "spp"]


@pytest.mark.parametrize("case", GOLDEN)
def test_golden(case):
    replay_layer(case, rtol=1e-4)


# -- Caffe's output-size rules ----------------------------------------------------
@pytest.mark.parametrize("body,hw,out", [
    ("kernel_size: 3 stride: 2", (6, 6), (3, 3)),                       # ceil(1.5) + 1
    ("kernel_size: 3 stride: 2 round_mode: FLOOR", (6, 6), (2, 2)),     # floor(1.5) + 1
    ("kernel_size: 3 stride: 3 pad: 1", (8, 8), (3, 3)),      # 4th window starts in the padding
    ("kernel_size: 2 stride: 2 pad: 1", (5, 6), (3, 4)),      # dropped on H, kept on W
    ("kernel_size: 3 stride: 2 pad: 1", (7, 9), (4, 5)),
    ("kernel_h: 1 kernel_w: 2 stride_h: 3 stride_w: 1 pad_h: 0 pad_w: 1", (5, 4), (2, 5)),
    ("kernel_h: 1 kernel_w: 2 stride_h: 3 stride_w: 1", (5, 4), (3, 3)),
    ("global_pooling: true", (5, 7), (1, 1)),
])
def test_output_size(body, hw, out):
    _, top = run(pool_layer(body), np.zeros((2, 3) + hw), ntop=1)
    assert top[0].shape == (2, 3) + out


@pytest.mark.parametrize("body,k,s,p", [
    ("pool: MAX kernel_size: 3 stride: 2", (3, 3), (2, 2), (0, 0)),
    ("pool: MAX kernel_size: 3 stride: 2 pad: 1", (3, 3), (2, 2), (1, 1)),
    ("pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0",
     (3, 2), (1, 2), (1, 0)),
    ("pool: MAX kernel_size: 3 stride: 3 pad: 1", (3, 3), (3, 3), (1, 1)),
])
def test_max_matches_reference_with_mask_top(body, k, s, p):
    x = spread((2, 2, 8, 7))
    bottom, top = run(pool_layer(body), x, ntop=2)
    want, mask = ref_max(x.astype(np.float32), k, s, p, *top[0].shape[2:])
    np.testing.assert_array_equal(top[0].data, want)
    np.testing.assert_array_equal(top[1].data, mask)
    # backward routes each diff to its argmax (read from the mask top)
    dy = np.random.default_rng(1).standard_normal(top[0].shape)
    top[0].diff[...] = dy
    layer = pool_layer(body)
    layer.layer_setup(bottom, top)
    layer.forward(bottom, top)
    layer.backward(top, [True], bottom)
    want_dx = np.zeros(x.shape).reshape(2, 2, -1)
    for n, c, i in np.ndindex(2, 2, dy[0, 0].size):
        want_dx[n, c, int(mask[n, c].ravel()[i])] += dy[n, c].ravel()[i]
    np.testing.assert_allclose(bottom[0].diff, want_dx.reshape(x.shape), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("body", ["pool: MAX kernel_size: 3 stride: 2",
                                  "pool: MAX kernel_size: 3 stride: 1 pad: 1"])
def test_max_test_phase_backward_finds_the_argmax_itself(body):
    """A TEST forward skips the mask; backward (saliency through a deploy net) must
    still route each diff to the window's first maximum."""
    x = spread((2, 3, 9, 8))
    dy = np.random.default_rng(2).standard_normal((2, 3, 4, 4) if "2" in body else (2, 3, 9, 8))
    diffs = []
    for phase in ("TRAIN", "TEST"):
        bottom, top = run(pool_layer(body, phase), x)
        top[0].diff[...] = dy
        top[0].data[...] = -5.0          # an in-place ReLU after pooling may rewrite the top
        layer = pool_layer(body, phase)
        layer.layer_setup(bottom, top)
        layer.forward(bottom, top)
        top[0].data[...] = -5.0
        layer.backward(top, [True], bottom)
        diffs.append(bottom[0].diff.copy())
    np.testing.assert_array_equal(diffs[0], diffs[1])
    assert np.count_nonzero(diffs[1]) > 0


@pytest.mark.parametrize("body,k,s,p", [
    ("pool: AVE kernel_size: 3 stride: 2", (3, 3), (2, 2), (0, 0)),
    ("pool: AVE kernel_size: 3 stride: 2 pad: 1", (3, 3), (2, 2), (1, 1)),
    ("pool: AVE kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 2",
     (2, 3), (2, 1), (1, 2)),
])
def test_ave_matches_reference(body, k, s, p):
    x = np.random.default_rng(2).standard_normal((2, 2, 6, 7)).astype(np.float32)
    _, top = run(pool_layer(body), x)
    np.testing.assert_allclose(top[0].data, ref_ave(x, k, s, p, *top[0].shape[2:]),
                               rtol=1e-5, atol=1e-6)


def test_ave_divides_by_the_window_clipped_to_the_padded_image():
    # H=W=6, k=3, s=2, pad=1: the last window covers rows 5..7, clipped to H+pad=7 -> 2 rows
    # (one real); Caffe divides the corner by 2*2=4, not by 9 or by 1.
    _, top = run(pool_layer("pool: AVE kernel_size: 3 stride: 2 pad: 1"), np.ones((1, 1, 6, 6)))
    assert top[0].shape == (1, 1, 4, 4)
    assert top[0].data[0, 0, 3, 3] == pytest.approx(1 / 4)
    assert top[0].data[0, 0, 0, 0] == pytest.approx(4 / 9)
    assert top[0].data[0, 0, 1, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("body", [
    "pool: MAX kernel_size: 3 stride: 2 pad: 1",
    "pool: MAX kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2",
    "pool: AVE kernel_size: 3 stride: 2 pad: 1",
    "pool: AVE kernel_size: 2 stride: 2 round_mode: FLOOR",
    "pool: AVE global_pooling: true",
    "pool: MAX global_pooling: true",
])
def test_gradient(body):
    layer = pool_layer(body)
    bottom, top = blobs(spread((2, 2, 5, 6), seed=3)), tops(1)
    check_gradient(layer, bottom, top)


def test_stochastic_train_samples_from_the_window():
    x = np.random.default_rng(4).uniform(0.0, 1.0, (2, 3, 6, 6))
    layer = pool_layer("pool: STOCHASTIC kernel_size: 2 stride: 2")
    bottom, top = run(layer, x)
    y = top[0].data
    for n, c, ph, pw in np.ndindex(*y.shape):
        window = bottom[0].data[n, c, 2 * ph:2 * ph + 2, 2 * pw:2 * pw + 2]
        assert y[n, c, ph, pw] in window
    top[0].diff[...] = 1.0
    layer.backward(top, [True], bottom)
    dx = bottom[0].diff
    assert dx.sum() == y.size and set(np.unique(dx)) <= {0.0, 1.0}
    # windows do not overlap: the pixels that got a gradient are exactly the samples
    np.testing.assert_array_equal(np.sort(bottom[0].data[dx == 1]), np.sort(y.ravel()))
    again = pool_layer("pool: STOCHASTIC kernel_size: 2 stride: 2")
    _, top2 = run(again, x)                         # same seed (layer_case seeds 0)
    np.testing.assert_array_equal(top2[0].data, y)


def test_stochastic_test_is_the_weighted_average_and_differentiable():
    x = np.random.default_rng(5).uniform(0.2, 1.0, (1, 2, 5, 5))
    layer = pool_layer("pool: STOCHASTIC kernel_size: 3 stride: 2", phase="TEST")
    _, top = run(layer, x)
    xd = x.astype(np.float32).astype(np.float64)
    win = xd[:, :, 0:3, 2:5]
    assert top[0].data[0, 1, 0, 1] == pytest.approx((win[0, 1] ** 2).sum() / win[0, 1].sum(),
                                                    rel=1e-5)
    check_gradient(pool_layer("pool: STOCHASTIC kernel_size: 3 stride: 2", phase="TEST"),
                   blobs(x), tops(1))


@pytest.mark.parametrize("body,match", [
    ("kernel_size: 3 pad: 3", "smaller than the kernel"),
    ("global_pooling: true kernel_size: 3", "global_pooling"),
    ("global_pooling: true stride: 2", "only pad = 0 and stride = 1"),
    ("kernel_size: 3 kernel_h: 3 kernel_w: 3", "not both"),
    ("kernel_h: 3", "kernel_h and kernel_w"),
    ("kernel_size: 3 pad: 1 pad_h: 1 pad_w: 1", "pad"),
    ("kernel_size: 3 stride_h: 2", "stride"),
    ("pool: STOCHASTIC kernel_size: 3 pad: 1", "padding is implemented only"),
    ("kernel_size: 0", "nonzero"),
])
def test_impossible_parameters(body, match):
    with pytest.raises(LayerError, match=match) as err:
        run(pool_layer(body, name="pool9"), np.zeros((1, 1, 6, 6)))
    assert "'pool9'" in str(err.value)


def test_blob_count_and_axes_errors():
    with pytest.raises(LayerError, match="at most 1 top"):
        run(pool_layer("pool: AVE kernel_size: 2"), np.zeros((1, 1, 4, 4)), ntop=2)
    with pytest.raises(ShapeError, match="4 axes"):
        run(pool_layer("kernel_size: 2"), np.zeros((1, 4, 4)))


# -- SPP -------------------------------------------------------------------------
def spp_layer(height, pool="MAX"):
    return make_layer(f'name: "s" type: "SPP" spp_param {{ pyramid_height: {height} '
                      f'pool: {pool} }}')


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize("hw", [(7, 9), (6, 6), (9, 8)])
def test_spp_is_concatenated_poolings(pool, hw):
    x = spread((2, 3) + hw, seed=6)
    _, top = run(spp_layer(3, pool), x)
    parts = []
    for level in range(3):
        bins = 2 ** level
        kh, kw = -(-hw[0] // bins), -(-hw[1] // bins)
        ph, pw = (kh * bins - hw[0] + 1) // 2, (kw * bins - hw[1] + 1) // 2
        body = (f"pool: {pool} kernel_h: {kh} kernel_w: {kw} stride_h: {kh} stride_w: {kw} "
                f"pad_h: {ph} pad_w: {pw}")
        _, t = run(pool_layer(body), x)
        assert t[0].shape[2:] == (bins, bins)
        parts.append(t[0].data.reshape(2, -1))
    np.testing.assert_allclose(top[0].data, np.concatenate(parts, axis=1), rtol=1e-6)


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_spp_gradient(pool):
    check_gradient(spp_layer(2, pool), blobs(spread((2, 2, 5, 6), seed=7)), tops(1))


def test_spp_height_one_keeps_the_pooling_shape():
    _, top = run(spp_layer(1), spread((2, 3, 4, 5)))
    assert top[0].shape == (2, 3, 1, 1)
    np.testing.assert_allclose(top[0].data[:, :, 0, 0],
                               spread((2, 3, 4, 5)).reshape(2, 3, -1).max(axis=2), rtol=1e-6)


def test_spp_rejects_too_small_inputs():
    with pytest.raises(LayerError, match="too small for pyramid level 2"):
        run(spp_layer(3), np.zeros((1, 1, 5, 8)))
    with pytest.raises(LayerError, match="pyramid_height"):
        run(spp_layer(0), np.zeros((1, 1, 5, 8)))
