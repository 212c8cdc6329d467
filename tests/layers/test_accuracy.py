"""Accuracy: NumPy reference (top_k, axis, ignore_label, ties, per-class), errors, golden."""

import numpy as np
import pytest

from netdef.errors import LayerError, ShapeError
from tests.layers.layer_case import case_id, case_paths, layer_with_blobs, replay_layer


def accuracy_ref(x, labels, top_k=1, axis=1, ignore=None):
    """Per position: correct when fewer than top_k classes score >= the true class."""
    classes = x.shape[axis]
    scores = np.moveaxis(x, axis, -1).reshape(-1, classes)
    lab = labels.reshape(-1).astype(int)
    hits, counts = np.zeros(classes), np.zeros(classes)
    for s, t in zip(scores, lab):
        if ignore is not None and t == ignore:
            continue
        counts[t] += 1
        if (s >= s[t]).sum() - 1 < top_k:
            hits[t] += 1
    total = counts.sum()
    per_class = np.divide(hits, counts, out=np.zeros(classes), where=counts > 0)
    return (hits.sum() / total if total else 0.0), per_class


@pytest.mark.parametrize("top_k", [1, 2, 4])
@pytest.mark.parametrize("ignore", [None, 3])
def test_matches_numpy(top_k, ignore):
    rng = np.random.default_rng(top_k)
    x = rng.integers(0, 4, (6, 4, 2, 3)).astype(np.float32)  # many ties
    labels = rng.integers(0, 4, (6, 1, 2, 3)).astype(np.float32)
    ig = "" if ignore is None else f"ignore_label: {ignore}"
    layer, bottom, top = layer_with_blobs(
        f'type: "Accuracy" accuracy_param {{ top_k: {top_k} {ig} }}', x, labels, tops=2)
    layer.forward(bottom, top)
    want, per_class = accuracy_ref(x, labels, top_k, ignore=ignore)
    assert top[0].shape == () and top[1].shape == (4,)
    assert float(top[0].data) == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(top[1].data, per_class, rtol=1e-6)


def test_ties_count_against_the_prediction():
    x = np.array([[1.0, 1.0, 0.0], [2.0, 1.0, 2.0], [0.0, 0.0, 0.0]])
    layer, bottom, top = layer_with_blobs('type: "Accuracy"', x, [0, 0, 2])
    layer.forward(bottom, top)
    assert float(top[0].data) == 0.0
    layer, bottom, top = layer_with_blobs(
        'type: "Accuracy" accuracy_param { top_k: 2 }', x, [0, 0, 2])
    layer.forward(bottom, top)
    assert float(top[0].data) == pytest.approx(2 / 3)


def test_axis():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 5)).astype(np.float32)
    labels = rng.integers(0, 5, (3, 2)).astype(np.float32)
    layer, bottom, top = layer_with_blobs('type: "Accuracy" accuracy_param { axis: -1 }', x, labels)
    layer.forward(bottom, top)
    assert float(top[0].data) == pytest.approx(accuracy_ref(x, labels, axis=2)[0])


def test_all_ignored_gives_zero():
    layer, bottom, top = layer_with_blobs(
        'type: "Accuracy" accuracy_param { ignore_label: 1 }', np.zeros((2, 3)), [1, 1], tops=2)
    layer.forward(bottom, top)
    assert float(top[0].data) == 0.0 and not top[1].data.any()


def test_errors_name_the_layer():
    with pytest.raises(LayerError, match="layer 'l'.*top_k 4"):
        layer_with_blobs('type: "Accuracy" accuracy_param { top_k: 4 }', np.zeros((2, 3)), [0, 1])
    with pytest.raises(ShapeError, match=r"layer 'l'.*\(2, 3, 2\).*\(2,\)"):
        layer_with_blobs('type: "Accuracy"', np.zeros((2, 3, 2)), [0, 1])
    layer, bottom, top = layer_with_blobs('type: "Accuracy"', np.zeros((2, 3)), [0, 5])
    with pytest.raises(LayerError, match="label 5 .* outside"):
        layer.forward(bottom, top)


def test_no_gradient():
    layer, _, _ = layer_with_blobs('type: "Accuracy"', np.zeros((2, 3)), [0, 1])
    assert not layer.allow_force_backward(0) and not layer.allow_force_backward(1)
    assert layer.default_loss_weight(0) == 0.0


@pytest.mark.parametrize("path", case_paths("accuracy"), ids=case_id)
def test_golden(path):
    replay_layer(path, rtol=1e-6)
