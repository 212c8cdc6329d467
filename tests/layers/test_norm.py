"""LRN, MVN, BatchNorm: NumPy references, gradients, in place, running stats, golden cases."""

import numpy as np
import pytest

from netdef.blob import Blob
from netdef.errors import LayerError, ShapeError
from netdef.kernels import norm as K
from netdef.proto import caffe_pb2
from tests.gradcheck import check_gradient
from tests.layers.layer_case import (
    case_id,
    case_paths,
    layer_with_blobs,
    replay_layer,
    run_backward,
)

RNG = np.random.default_rng(11)


def in_place(text, x, phase=caffe_pb2.TRAIN):
    """A layer set up with one blob as both bottom and top."""
    layer, _, _ = layer_with_blobs(text, setup=False, phase=phase)
    blob = Blob(x.shape, name="x")
    blob.data[...] = x
    layer.layer_setup([blob], [blob])
    return layer, blob


def check_in_place(text, x, dy, phase=caffe_pb2.TRAIN):
    layer, bottom, top = layer_with_blobs(text, x, phase=phase)
    layer.forward(bottom, top)
    (dx,) = run_backward(layer, bottom, top, [dy])
    layer2, blob = in_place(text, x, phase)
    layer2.forward([blob], [blob])
    np.testing.assert_allclose(blob.data, top[0].data, rtol=1e-6, atol=1e-7)
    blob.diff[...] = dy
    layer2.backward([blob], [True], [blob])
    np.testing.assert_allclose(blob.diff, dx, rtol=1e-5, atol=1e-6)


# -- LRN -----------------------------------------------------------------------------------
def lrn_across_ref(x, size, alpha, beta, k):
    x = x.astype(np.float64)
    c = x.shape[1]
    p = (size - 1) // 2
    sq = x ** 2
    scale = np.empty_like(x)
    for ch in range(c):
        scale[:, ch] = k + alpha / size * sq[:, max(0, ch - p):min(c, ch + p + 1)].sum(axis=1)
    return x * scale ** -beta


def lrn_within_ref(x, size, alpha, beta):
    """Caffe's chain: square, AVE pooling (pad (size-1)/2, stride 1), power, product."""
    x = x.astype(np.float64)
    _, _, height, width = x.shape
    p = (size - 1) // 2
    sq = x ** 2
    pooled = np.empty_like(x)
    for h in range(height):
        for w in range(width):
            hs, ws = h - p, w - p
            he, we = min(hs + size, height + p), min(ws + size, width + p)
            area = (he - hs) * (we - ws)
            window = sq[:, :, max(hs, 0):min(he, height), max(ws, 0):min(we, width)]
            pooled[:, :, h, w] = window.sum(axis=(2, 3)) / area
    return x * (1 + alpha * pooled) ** -beta


@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn_across_matches_numpy(size):
    x = RNG.standard_normal((2, 4, 3, 2)) * 2
    layer, bottom, top = layer_with_blobs(
        f'type: "LRN" lrn_param {{ local_size: {size} alpha: 0.7 beta: 0.6 k: 1.3 }}', x)
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, lrn_across_ref(bottom[0].data, size, 0.7, 0.6, 1.3),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("size", [3, 5])
def test_lrn_within_matches_numpy(size):
    x = RNG.standard_normal((2, 2, 4, 5)) * 2
    layer, bottom, top = layer_with_blobs(
        f'type: "LRN" lrn_param {{ local_size: {size} alpha: 0.7 beta: 0.6 k: 9 '
        'norm_region: WITHIN_CHANNEL }', x)
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, lrn_within_ref(bottom[0].data, size, 0.7, 0.6),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
@pytest.mark.parametrize("size", [3, 5])
def test_lrn_gradient(region, size):
    x = RNG.standard_normal((2, 4, 3, 3))
    layer, bottom, top = layer_with_blobs(
        f'type: "LRN" lrn_param {{ local_size: {size} alpha: 0.8 beta: 0.75 k: 1.2 '
        f'norm_region: {region} }}', x, setup=False)
    check_gradient(layer, bottom, top)


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_lrn_in_place(region):
    x = RNG.standard_normal((2, 3, 3, 2))
    check_in_place(f'type: "LRN" lrn_param {{ local_size: 3 norm_region: {region} }}', x,
                   RNG.standard_normal(x.shape))


def test_lrn_parallel_kernels_match_serial():
    x = RNG.standard_normal((3, 6, 4)).astype(np.float32)
    dy = RNG.standard_normal(x.shape).astype(np.float32)
    args = (5, np.float32(0.2), np.float32(1.0), np.float32(0.75))
    y1, s1, y2, s2 = (np.zeros_like(x) for _ in range(4))
    K.lrn_across_forward(y1, s1, x, *args)
    K.lrn_across_forward_parallel(y2, s2, x, *args)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(s1, s2)
    d1, d2 = np.zeros_like(x), np.zeros_like(x)
    acc = np.zeros((3, 4), np.float32)
    bargs = (5, np.float32(0.3), np.float32(0.75))
    K.lrn_across_backward(d1, dy, x, y1, s1, acc, *bargs)
    K.lrn_across_backward_parallel(d2, dy, x, y1, s1, acc, *bargs)
    np.testing.assert_array_equal(d1, d2)


def test_lrn_one_big_sample_with_channels_over_threads_matches_serial():
    x = RNG.standard_normal((1, 64, 128 * 128)).astype(np.float32)
    args = (5, np.float32(1e-4 / 5), np.float32(1.0), np.float32(0.75))
    y1, s1, y2, s2 = (np.zeros_like(x) for _ in range(4))
    K.lrn_across_forward(y1, s1, x, *args)                  # channels over threads
    K.lrn_across_forward_parallel(y2, s2, x, *args)         # one sample: one thread
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(s1, s2)


@pytest.mark.parametrize("size", [0, 2, 4])
def test_lrn_even_size_is_refused(size):
    with pytest.raises(LayerError, match=f"layer 'l'.*local_size.*{size}"):
        layer_with_blobs(f'type: "LRN" lrn_param {{ local_size: {size} }}', np.zeros((1, 2, 2, 2)))


def test_lrn_needs_four_axes():
    with pytest.raises(ShapeError, match=r"layer 'l'.*4 axes.*\(2, 3\)"):
        layer_with_blobs('type: "LRN"', np.zeros((2, 3)))


# -- MVN -----------------------------------------------------------------------------------
def mvn_ref(x, normalize_variance=True, across_channels=False, eps=1e-9):
    x = x.astype(np.float64)
    axes = (1, 2, 3) if across_channels else (2, 3)
    y = x - x.mean(axis=axes, keepdims=True)
    if normalize_variance:
        y = y / (np.sqrt((y ** 2).mean(axis=axes, keepdims=True)) + eps)
    return y


MVN_VARIANTS = [
    "",
    "mvn_param { across_channels: true }",
    "mvn_param { normalize_variance: false }",
    "mvn_param { normalize_variance: false across_channels: true }",
    "mvn_param { eps: 0.5 }",
]


@pytest.mark.parametrize("param", MVN_VARIANTS)
def test_mvn_matches_numpy(param):
    x = RNG.standard_normal((2, 3, 2, 4)) * 3 + 1
    layer, bottom, top = layer_with_blobs(f'type: "MVN" {param}', x)
    p = layer.layer_param.mvn_param
    layer.forward(bottom, top)
    want = mvn_ref(bottom[0].data, p.normalize_variance, p.across_channels, p.eps)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("param", MVN_VARIANTS[:4])
def test_mvn_gradient(param):
    x = RNG.standard_normal((2, 3, 2, 2))
    layer, bottom, top = layer_with_blobs(f'type: "MVN" {param}', x, setup=False)
    check_gradient(layer, bottom, top)


def test_mvn_backward_uses_caffe_formula_with_eps():
    """Caffe's gradient divides by std + eps but ignores eps otherwise."""
    x = RNG.standard_normal((1, 2, 3, 3))
    dy = RNG.standard_normal(x.shape)
    layer, bottom, top = layer_with_blobs('type: "MVN" mvn_param { eps: 0.5 }', x)
    layer.forward(bottom, top)
    (dx,) = run_backward(layer, bottom, top, [dy])
    xd = bottom[0].data.astype(np.float64)
    y = top[0].data.astype(np.float64)
    std = np.sqrt(((xd - xd.mean(axis=(2, 3), keepdims=True)) ** 2).mean(axis=(2, 3),
                                                                           keepdims=True))
    m = lambda a: a.mean(axis=(2, 3), keepdims=True)  # noqa: E731
    want = (dy - m(dy) - y * m(dy * y)) / (std + 0.5)
    np.testing.assert_allclose(dx, want, rtol=1e-5, atol=1e-6)


def test_mvn_in_place():
    x = RNG.standard_normal((2, 3, 2, 2))
    check_in_place('type: "MVN"', x, RNG.standard_normal(x.shape))


# -- BatchNorm -------------------------------------------------------------------------------
def bn_batch_ref(x, eps=1e-5):
    x = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes)
    var = ((x - np.expand_dims(mean, axes)) ** 2).mean(axis=axes)
    shape = [1, -1] + [1] * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return y, mean, var


def test_batchnorm_train_forward_and_running_stats():
    x1 = RNG.standard_normal((3, 2, 2, 3)) * 2 + 1
    x2 = RNG.standard_normal((3, 2, 2, 3))
    layer, bottom, top = layer_with_blobs(
        'type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.9 }', x1)
    assert not layer.use_global_stats
    assert [b.shape for b in layer.blobs] == [(2,), (2,), (1,)]
    assert not any(b.data.any() for b in layer.blobs)
    layer.forward(bottom, top)
    y, mean1, var1 = bn_batch_ref(bottom[0].data)
    np.testing.assert_allclose(top[0].data, y, rtol=1e-5, atol=1e-6)
    m = x1.size // 2
    bottom[0].data[...] = x2
    layer.forward(bottom, top)
    _, mean2, var2 = bn_batch_ref(bottom[0].data)
    np.testing.assert_allclose(layer.blobs[2].data, [0.9 * 1 + 1], rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[0].data, mean2 + 0.9 * mean1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.blobs[1].data, m / (m - 1) * (var2 + 0.9 * var1), rtol=1e-5)


def test_batchnorm_global_stats_divide_by_the_scale_factor():
    x = RNG.standard_normal((2, 3, 2, 2))
    layer, bottom, top = layer_with_blobs('type: "BatchNorm"', x, phase=caffe_pb2.TEST)
    assert layer.use_global_stats
    mean, var = np.array([0.5, -1.0, 2.0]), np.array([2.0, 0.5, 1.5])
    layer.blobs[0].data[...] = mean * 4
    layer.blobs[1].data[...] = var * 4
    layer.blobs[2].data[...] = 4
    before = [b.data.copy() for b in layer.blobs]
    layer.forward(bottom, top)
    std = np.sqrt(var + 1e-5).reshape(1, 3, 1, 1)
    want = (bottom[0].data - mean.reshape(1, 3, 1, 1)) / std
    np.testing.assert_allclose(top[0].data, want, rtol=1e-5, atol=1e-6)
    for b, old in zip(layer.blobs, before):
        np.testing.assert_array_equal(b.data, old)  # stored stats untouched
    dy = RNG.standard_normal(x.shape)
    (dx,) = run_backward(layer, bottom, top, [dy])
    np.testing.assert_allclose(dx, dy / std, rtol=1e-5)
    layer.blobs[2].data[...] = 0  # a zero factor reads as zero statistics
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, bottom[0].data / np.sqrt(1e-5), rtol=1e-5)


def test_batchnorm_use_global_stats_overrides_phase():
    layer, _, _ = layer_with_blobs(
        'type: "BatchNorm" batch_norm_param { use_global_stats: true }', np.zeros((2, 3)))
    assert layer.use_global_stats
    layer, _, _ = layer_with_blobs(
        'type: "BatchNorm" batch_norm_param { use_global_stats: false }', np.zeros((2, 3)),
        phase=caffe_pb2.TEST)
    assert not layer.use_global_stats


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 2), (2, 2, 3, 1, 2)])
def test_batchnorm_batch_gradient(shape):
    x = RNG.standard_normal(shape)
    layer, bottom, top = layer_with_blobs('type: "BatchNorm"', x, setup=False)
    check_gradient(layer, bottom, top, check_params=False)
    assert not any(b.diff.any() for b in layer.blobs)


def test_batchnorm_global_gradient():
    x = RNG.standard_normal((2, 3, 2, 2))
    layer, bottom, top = layer_with_blobs('type: "BatchNorm" batch_norm_param { use_global_stats: '
                                    'true }', x, setup=False)
    layer.layer_setup(bottom, top)
    layer.blobs[0].data[...] = [0.1, 0.2, -0.3]
    layer.blobs[1].data[...] = [1.0, 2.0, 0.5]
    layer.blobs[2].data[...] = 1
    check_gradient(layer, bottom, top, check_params=False, setup=False)


@pytest.mark.parametrize("phase", [caffe_pb2.TRAIN, caffe_pb2.TEST])
def test_batchnorm_in_place(phase):
    x = RNG.standard_normal((2, 3, 2, 2))
    text = 'type: "BatchNorm"'
    check_in_place(text, x, RNG.standard_normal(x.shape), phase)


def test_batchnorm_in_place_backward_after_top_is_overwritten():
    """Backward uses the cached normalised values, not what a later layer left in the top."""
    x = RNG.standard_normal((2, 3, 2, 2))
    dy = RNG.standard_normal(x.shape)
    layer, bottom, top = layer_with_blobs('type: "BatchNorm"', x)
    layer.forward(bottom, top)
    (want,) = run_backward(layer, bottom, top, [dy])
    layer2, blob = in_place('type: "BatchNorm"', x)
    layer2.forward([blob], [blob])
    blob.data[...] = np.maximum(blob.data, 0)  # an in-place ReLU after it
    blob.diff[...] = dy
    layer2.backward([blob], [True], [blob])
    np.testing.assert_allclose(blob.diff, want, rtol=1e-5, atol=1e-6)


def test_batchnorm_statistics_are_not_learnable():
    layer, _, _ = layer_with_blobs('type: "BatchNorm"', np.zeros((2, 3)))
    assert [p.lr_mult for p in layer.layer_param.param] == [0, 0, 0]
    assert layer.param_propagate_down == [False, False, False]
    with pytest.raises(LayerError, match="layer 'l'.*lr_mult"):
        layer_with_blobs(
            'type: "BatchNorm" param { lr_mult: 0 } param { lr_mult: 1 }', np.zeros((2, 3)))


def test_batchnorm_channel_mismatch_on_reshape():
    layer, bottom, top = layer_with_blobs('type: "BatchNorm"', np.zeros((2, 3, 2)))
    bottom[0].reshape((2, 4, 2))
    with pytest.raises(ShapeError, match="layer 'l'.*4 channels"):
        layer.reshape(bottom, top)


# -- golden cases ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", case_paths("lrn", "mvn", "batchnorm"), ids=case_id)
def test_golden(path):
    replay_layer(path, rtol=1e-4)
