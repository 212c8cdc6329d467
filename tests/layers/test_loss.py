"""Loss layers: NumPy references (every normalization mode, ignore_label), gradients,
errors, and the golden cases."""

import numpy as np
import pytest

from netdef.errors import LayerError, ShapeError
from netdef.proto import caffe_pb2
from tests.gradcheck import check_gradient
from tests.layers.layer_case import (
    case_id,
    case_paths,
    layer_with_blobs,
    replay_layer,
    run_backward,
)

RNG = np.random.default_rng(7)


def forward(layer, bottom, top):
    layer.forward(bottom, top)
    return float(top[0].data[()])


def softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def normalizer_ref(mode, outer, inner, valid):
    n = {"FULL": outer * inner, "VALID": valid, "BATCH_SIZE": outer, "NONE": 1}[mode]
    return max(1.0, n)


def as_channels_last(x, axis):
    """x with the class axis moved last, flattened to (positions, classes)."""
    return np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])


# -- common loss rules -----------------------------------------------------------------
def test_loss_weight_defaults_to_one_for_the_first_top():
    layer, _, _ = layer_with_blobs('type: "SoftmaxWithLoss"', np.zeros((2, 3)), np.zeros(2), tops=2)
    assert layer.loss_weights == [1.0, 0.0]


def test_loss_top_is_a_scalar():
    layer, _, top = layer_with_blobs('type: "EuclideanLoss"', np.zeros((2, 3)), np.zeros((2, 3)))
    assert top[0].shape == ()


def test_first_dimensions_must_agree():
    with pytest.raises(ShapeError, match="layer 'l'.*same first dimension"):
        layer_with_blobs('type: "SoftmaxWithLoss"', np.zeros((2, 3)), np.zeros(3))


# -- SoftmaxWithLoss ---------------------------------------------------------------------
def softmax_loss_ref(x, labels, axis=1, ignore=None, mode="VALID"):
    x = x.astype(np.float64)
    p = as_channels_last(softmax_ref(x, axis), axis)
    lab = labels.reshape(-1).astype(int)
    keep = np.ones(lab.shape, bool) if ignore is None else lab != ignore
    loss = -np.log(np.maximum(p[keep, lab[keep]], np.finfo(np.float32).tiny)).sum()
    outer = int(np.prod(x.shape[:axis]))
    inner = int(np.prod(x.shape[axis + 1:]))
    norm = normalizer_ref(mode, outer, inner, int(keep.sum()))
    grad = p.copy()
    grad[np.arange(lab.size), np.where(keep, lab, 0)] -= keep
    grad[~keep] = 0
    grad = np.moveaxis(grad.reshape(np.moveaxis(x, axis, -1).shape), -1, axis)
    return loss / norm, grad / norm


def spatial_case(classes=4):
    x = RNG.standard_normal((2, classes, 3, 2)) * 2
    labels = RNG.integers(0, classes, (2, 1, 3, 2)).astype(np.float32)
    labels[0, 0, 0, 0] = 2  # make sure the ignored label occurs
    return x, labels


@pytest.mark.parametrize("mode", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
@pytest.mark.parametrize("ignore", [None, 2])
def test_softmax_loss_normalizations(mode, ignore):
    x, labels = spatial_case()
    ig = "" if ignore is None else f"ignore_label: {ignore}"
    layer, bottom, top = layer_with_blobs(
        f'type: "SoftmaxWithLoss" loss_param {{ normalization: {mode} {ig} }}', x, labels)
    loss = forward(layer, bottom, top)
    want, grad = softmax_loss_ref(bottom[0].data, labels, ignore=ignore, mode=mode)
    assert loss == pytest.approx(want, rel=1e-5)
    (dx, _) = run_backward(layer, bottom, top, [2.5], [True, False])
    np.testing.assert_allclose(dx, 2.5 * grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("normalize,mode", [("false", "BATCH_SIZE"), ("true", "VALID")])
def test_softmax_loss_legacy_normalize(normalize, mode):
    x, labels = spatial_case()
    layer, bottom, top = layer_with_blobs(
        f'type: "SoftmaxWithLoss" loss_param {{ normalize: {normalize} ignore_label: 1 }}',
        x, labels)
    want, _ = softmax_loss_ref(bottom[0].data, labels, ignore=1, mode=mode)
    assert forward(layer, bottom, top) == pytest.approx(want, rel=1e-5)


def test_softmax_loss_normalization_wins_over_normalize():
    x, labels = spatial_case()
    layer, bottom, top = layer_with_blobs(
        'type: "SoftmaxWithLoss" loss_param { normalize: false normalization: FULL }', x, labels)
    want, _ = softmax_loss_ref(bottom[0].data, labels, mode="FULL")
    assert forward(layer, bottom, top) == pytest.approx(want, rel=1e-5)


def test_softmax_loss_all_ignored_divides_by_one():
    x = RNG.standard_normal((3, 4))
    layer, bottom, top = layer_with_blobs(
        'type: "SoftmaxWithLoss" loss_param { ignore_label: 1 }', x, np.ones(3))
    assert forward(layer, bottom, top) == 0.0
    (dx, _) = run_backward(layer, bottom, top, [1.0], [True, False])
    assert not dx.any()


def test_softmax_loss_axis_and_probability_top():
    x = RNG.standard_normal((3, 2, 5))
    labels = RNG.integers(0, 5, (3, 2)).astype(np.float32)
    layer, bottom, top = layer_with_blobs(
        'type: "SoftmaxWithLoss" softmax_param { axis: 2 }', x, labels, tops=2)
    want, grad = softmax_loss_ref(bottom[0].data, labels, axis=2)
    assert forward(layer, bottom, top) == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(top[1].data, softmax_ref(bottom[0].data.astype(np.float64), 2),
                               rtol=1e-5)
    (dx, _) = run_backward(layer, bottom, top, [1.0, np.zeros(x.shape)], [True, False])
    np.testing.assert_allclose(dx, grad, rtol=1e-5, atol=1e-7)


def test_softmax_loss_gradient():
    x, labels = spatial_case(3)
    labels = np.minimum(labels, 2)
    layer, bottom, top = layer_with_blobs(
        'type: "SoftmaxWithLoss" loss_param { ignore_label: 0 }', x, labels, setup=False)
    check_gradient(layer, bottom, top, check_bottom=[0])


def test_softmax_loss_label_count_mismatch_names_layer_and_shapes():
    with pytest.raises(ShapeError, match=r"layer 'l'.*\(2, 4, 3, 2\).*\(2, 3\)"):
        layer_with_blobs('type: "SoftmaxWithLoss"', np.zeros((2, 4, 3, 2)), np.zeros((2, 3)))


def test_softmax_loss_refuses_label_gradient():
    layer, bottom, top = layer_with_blobs('type: "SoftmaxWithLoss"', np.zeros((2, 3)), np.zeros(2))
    layer.forward(bottom, top)
    assert not layer.allow_force_backward(1)
    with pytest.raises(LayerError, match="layer 'l'.*label"):
        run_backward(layer, bottom, top, [1.0], [True, True])


def test_softmax_loss_label_out_of_range():
    layer, bottom, top = layer_with_blobs('type: "SoftmaxWithLoss"', np.zeros((2, 3)), [0, 3])
    with pytest.raises(LayerError, match="label 3 .* outside"):
        layer.forward(bottom, top)


# -- SigmoidCrossEntropyLoss --------------------------------------------------------------
def sigmoid_ce_ref(x, t, ignore=None, mode="BATCH_SIZE"):
    x, t = x.astype(np.float64), t.astype(np.float64)
    keep = np.ones(x.shape, bool) if ignore is None else t.astype(int) != ignore
    per = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    norm = normalizer_ref(mode, x.shape[0], x[0].size, int(keep.sum()))
    grad = np.where(keep, 1 / (1 + np.exp(-x)) - t, 0)
    return per[keep].sum() / norm, grad / norm


@pytest.mark.parametrize("mode", [None, "FULL", "VALID", "BATCH_SIZE", "NONE"])
def test_sigmoid_cross_entropy(mode):
    x = RNG.standard_normal((3, 2, 2)) * 3
    t = RNG.random((3, 2, 2)).astype(np.float32)
    t[0, 0, 0] = -1  # ignored
    norm = "" if mode is None else f"normalization: {mode}"
    layer, bottom, top = layer_with_blobs(
        f'type: "SigmoidCrossEntropyLoss" loss_param {{ ignore_label: -1 {norm} }}', x, t)
    want, grad = sigmoid_ce_ref(bottom[0].data, t, -1, mode or "BATCH_SIZE")
    assert forward(layer, bottom, top) == pytest.approx(want, rel=1e-5)
    (dx, _) = run_backward(layer, bottom, top, [0.5], [True, False])
    np.testing.assert_allclose(dx, 0.5 * grad, rtol=1e-5, atol=1e-7)


def test_sigmoid_cross_entropy_is_stable_for_huge_inputs():
    x = np.array([[200.0, -200.0, 90.0, -90.0]])
    t = np.array([[0.0, 1.0, 1.0, 0.0]])
    layer, bottom, top = layer_with_blobs('type: "SigmoidCrossEntropyLoss"', x, t)
    assert forward(layer, bottom, top) == pytest.approx(400.0, rel=1e-6)


def test_sigmoid_cross_entropy_gradient():
    x = RNG.standard_normal((2, 3))
    t = RNG.random((2, 3))
    layer, bottom, top = layer_with_blobs('type: "SigmoidCrossEntropyLoss"', x, t, setup=False)
    check_gradient(layer, bottom, top, check_bottom=[0])


def test_sigmoid_cross_entropy_count_mismatch():
    with pytest.raises(ShapeError, match="layer 'l'.*same count"):
        layer_with_blobs('type: "SigmoidCrossEntropyLoss"', np.zeros((2, 3)), np.zeros((2, 2)))


# -- InfogainLoss ------------------------------------------------------------------------
def infogain_ref(x, labels, h, axis=1, ignore=None, mode="VALID"):
    x = x.astype(np.float64)
    p = as_channels_last(softmax_ref(x, axis), axis)
    lab = labels.reshape(-1).astype(int)
    keep = np.ones(lab.shape, bool) if ignore is None else lab != ignore
    rows = h[np.where(keep, lab, 0)]
    loss = -(rows * np.log(np.maximum(p, 1e-20)))[keep].sum()
    outer = int(np.prod(x.shape[:axis]))
    norm = normalizer_ref(mode, outer, lab.size // outer, int(keep.sum()))
    grad = np.where(keep[:, None], p * rows.sum(axis=1, keepdims=True) - rows, 0)
    grad = np.moveaxis(grad.reshape(np.moveaxis(x, axis, -1).shape), -1, axis)
    return loss / norm, grad / norm


@pytest.mark.parametrize("mode", ["VALID", "FULL", "BATCH_SIZE", "NONE"])
def test_infogain_third_bottom(mode):
    x, labels = spatial_case()
    h = RNG.random((4, 4)).astype(np.float32)
    layer, bottom, top = layer_with_blobs(
        f'type: "InfogainLoss" loss_param {{ ignore_label: 2 normalization: {mode} }}',
        x, labels, h.reshape(1, 1, 4, 4))
    want, grad = infogain_ref(bottom[0].data, labels, h.astype(np.float64), ignore=2, mode=mode)
    assert forward(layer, bottom, top) == pytest.approx(want, rel=1e-5)
    (dx, _, _) = run_backward(layer, bottom, top, [1.5], [True, False, False])
    np.testing.assert_allclose(dx, 1.5 * grad, rtol=1e-5, atol=1e-6)


def test_infogain_source_file_and_axis(tmp_path):
    h = RNG.random((5, 5)).astype(np.float32)
    proto = caffe_pb2.BlobProto()
    proto.shape.dim.extend([1, 1, 5, 5])
    proto.data.extend(h.ravel().tolist())
    path = tmp_path / "H.binaryproto"
    path.write_bytes(proto.SerializeToString())
    x = RNG.standard_normal((3, 2, 5))
    labels = RNG.integers(0, 5, (3, 2)).astype(np.float32)
    layer, bottom, top = layer_with_blobs(
        f'type: "InfogainLoss" infogain_loss_param {{ source: "{path}" axis: 2 }}', x, labels,
        tops=2)
    want, grad = infogain_ref(bottom[0].data, labels, h.astype(np.float64), axis=2)
    assert forward(layer, bottom, top) == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(top[1].data, softmax_ref(bottom[0].data.astype(np.float64), 2),
                               rtol=1e-5)
    (dx, _) = run_backward(layer, bottom, top, [1.0, np.zeros(x.shape)], [True, False])
    np.testing.assert_allclose(dx, grad, rtol=1e-5, atol=1e-6)


def test_infogain_identity_is_softmax_loss():
    x, labels = spatial_case()
    info, b1, t1 = layer_with_blobs('type: "InfogainLoss"', x, labels, np.eye(4))
    soft, b2, t2 = layer_with_blobs('type: "SoftmaxWithLoss"', x, labels)
    assert forward(info, b1, t1) == pytest.approx(forward(soft, b2, t2), rel=1e-6)
    (d1, _, _) = run_backward(info, b1, t1, [1.0], [True, False, False])
    (d2, _) = run_backward(soft, b2, t2, [1.0], [True, False])
    np.testing.assert_allclose(d1, d2, rtol=1e-5, atol=1e-7)


def test_infogain_gradient():
    x = RNG.standard_normal((3, 4))
    h = RNG.random((4, 4))
    layer, bottom, top = layer_with_blobs('type: "InfogainLoss"', x, [0, 3, 1], h, setup=False)
    check_gradient(layer, bottom, top, check_bottom=[0])


def test_infogain_errors():
    with pytest.raises(LayerError, match="layer 'l'.*source"):
        layer_with_blobs('type: "InfogainLoss"', np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ShapeError, match=r"layer 'l'.*infogain matrix.*3x3"):
        layer_with_blobs('type: "InfogainLoss"', np.zeros((2, 3)), np.zeros(2), np.zeros((2, 2)))
    with pytest.raises(LayerError, match="layer 'l'.*cannot read"):
        layer_with_blobs(
            'type: "InfogainLoss" infogain_loss_param { source: "/nonexistent/H" }',
            np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(LayerError, match="normalize"):
        layer_with_blobs(
            'type: "InfogainLoss" loss_param { normalize: true }',
            np.zeros((2, 3)), np.zeros(2), np.eye(3))
    layer, bottom, top = layer_with_blobs(
        'type: "InfogainLoss"', np.zeros((2, 3)), np.zeros(2), np.eye(3))
    layer.forward(bottom, top)
    assert not layer.allow_force_backward(2)
    with pytest.raises(LayerError, match="bottom 2"):
        run_backward(layer, bottom, top, [1.0], [True, False, True])


# -- MultinomialLogisticLoss ---------------------------------------------------------------
def test_multinomial_logistic():
    p = RNG.random((4, 3)).astype(np.float32) + 0.05
    p[1, 2] = 0.0  # clamped at 1e-20
    labels = np.array([0, 2, 1, 1], np.float32)
    layer, bottom, top = layer_with_blobs('type: "MultinomialLogisticLoss"', p, labels)
    picked = np.maximum(p[np.arange(4), labels.astype(int)].astype(np.float64), 1e-20)
    assert forward(layer, bottom, top) == pytest.approx(-np.log(picked).sum() / 4, rel=1e-5)
    (dx, _) = run_backward(layer, bottom, top, [2.0], [True, False])
    want = np.zeros((4, 3))
    want[np.arange(4), labels.astype(int)] = -2.0 / (4 * np.float32(picked))
    np.testing.assert_allclose(dx, want, rtol=1e-5)


def test_multinomial_logistic_gradient():
    p = RNG.random((3, 4)) + 0.5
    layer, bottom, top = layer_with_blobs(
        'type: "MultinomialLogisticLoss"', p, [1, 0, 3], setup=False)
    check_gradient(layer, bottom, top, check_bottom=[0], step=1e-3)


# -- EuclideanLoss -------------------------------------------------------------------------
def test_euclidean():
    a, b = RNG.standard_normal((3, 2, 2)), RNG.standard_normal((3, 4))
    layer, bottom, top = layer_with_blobs('type: "EuclideanLoss"', a, b)
    d = bottom[0].data.astype(np.float64).ravel() - bottom[1].data.ravel()
    assert forward(layer, bottom, top) == pytest.approx((d ** 2).sum() / 6, rel=1e-5)
    da, db = run_backward(layer, bottom, top, [0.3])
    np.testing.assert_allclose(da.ravel(), 0.3 * d / 3, rtol=1e-5)
    np.testing.assert_allclose(db.ravel(), -0.3 * d / 3, rtol=1e-5)


def test_euclidean_gradient_to_both_bottoms():
    a, b = RNG.standard_normal((2, 3)), RNG.standard_normal((2, 3))
    layer, bottom, top = layer_with_blobs('type: "EuclideanLoss"', a, b, setup=False)
    check_gradient(layer, bottom, top)
    assert layer.allow_force_backward(0) and layer.allow_force_backward(1)


def test_euclidean_dimension_mismatch():
    with pytest.raises(ShapeError, match="layer 'l'.*same dimension"):
        layer_with_blobs('type: "EuclideanLoss"', np.zeros((2, 3)), np.zeros((2, 4)))


# -- HingeLoss -----------------------------------------------------------------------------
def hinge_ref(x, labels, squared):
    x = x.astype(np.float64)
    n = x.shape[0]
    t = np.ones_like(x)
    t[np.arange(n), labels.astype(int)] = -1
    m = np.maximum(0, 1 + t * x)
    loss = (m ** 2 if squared else m).sum() / n
    grad = t * (2 * m if squared else (m > 0)) / n
    return loss, grad


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge(norm):
    x = RNG.standard_normal((4, 3)) * 2
    labels = np.array([0, 2, 1, 2], np.float32)
    layer, bottom, top = layer_with_blobs(
        f'type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}', x, labels)
    want, grad = hinge_ref(bottom[0].data, labels, norm == "L2")
    assert forward(layer, bottom, top) == pytest.approx(want, rel=1e-5)
    (dx, _) = run_backward(layer, bottom, top, [1.0], [True, False])
    np.testing.assert_allclose(dx, grad, rtol=1e-5)


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_gradient(norm):
    # margins 1 + t x kept away from the kink at 0
    x = np.array([[0.3, -2.5, 1.4], [-0.6, 2.2, 0.5], [3.0, -0.2, -2.8]])
    layer, bottom, top = layer_with_blobs(
        f'type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}', x, [1, 0, 2], setup=False)
    check_gradient(layer, bottom, top, check_bottom=[0])


# -- ContrastiveLoss -------------------------------------------------------------------------
def contrastive_ref(a, b, y, margin, legacy):
    a, b = a.astype(np.float64), b.astype(np.float64)
    d = a - b
    d2 = (d ** 2).sum(axis=1)
    dist = np.sqrt(d2)
    sim = y.astype(int) != 0
    if legacy:
        dis_loss = np.maximum(margin - d2, 0)
        dis_coef = np.where(margin - d2 > 0, -1.0, 0.0)
    else:
        dis_loss = np.maximum(margin - dist, 0) ** 2
        dis_coef = np.where(margin - dist > 0, -(margin - dist) / (dist + 1e-4), 0.0)
    n = a.shape[0]
    loss = np.where(sim, d2, dis_loss).sum() / n / 2
    grad = np.where(sim, 1.0, dis_coef)[:, None] * d / n
    return loss, grad


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive(legacy):
    a, b = RNG.standard_normal((6, 3)), RNG.standard_normal((6, 3))
    y = np.array([1, 0, 0, 1, 0, 0], np.float32)
    text = ('type: "ContrastiveLoss" contrastive_loss_param '
            f'{{ margin: 2.5 legacy_version: {str(legacy).lower()} }}')
    layer, bottom, top = layer_with_blobs(text, a, b, y)
    want, grad = contrastive_ref(bottom[0].data, bottom[1].data, y, 2.5, legacy)
    assert forward(layer, bottom, top) == pytest.approx(want, rel=1e-5)
    da, db, _ = run_backward(layer, bottom, top, [1.0], [True, True, False])
    np.testing.assert_allclose(da, grad, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(db, -grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_gradient(legacy):
    a = np.array([[0.5, -0.3], [1.0, 0.2], [-0.4, 0.8], [0.1, 0.1]])
    b = np.array([[-0.2, 0.4], [0.3, -0.5], [0.6, 0.9], [2.5, 1.9]])
    y = [1, 0, 0, 0]  # dissimilar pairs at distance ~1, ~1 and ~3.1 vs margin 2
    text = ('type: "ContrastiveLoss" contrastive_loss_param '
            f'{{ margin: 2 legacy_version: {str(legacy).lower()} }}')
    layer, bottom, top = layer_with_blobs(text, a, b, y, setup=False)
    # Caffe's non-legacy gradient divides by (d + 1e-4), hence the looser threshold.
    check_gradient(layer, bottom, top, check_bottom=[0, 1], step=1e-3, threshold=2e-3)
    assert not layer.allow_force_backward(2)


# -- golden cases --------------------------------------------------------------------------
LOSS_CASES = case_paths("softmax_loss", "euclidean", "hinge", "infogain", "multinomial",
                        "sigmoid_cross", "contrastive")


@pytest.mark.parametrize("path", LOSS_CASES, ids=case_id)
def test_golden(path):
    replay_layer(path, rtol=1e-4)
