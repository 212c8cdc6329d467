"""Classifier (pycaffe's caffe.Classifier) and `netdef classify`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import netdef
from netdef import io as nio
from netdef.classifier import Classifier, load_mean, read_labels, top_k
from tests.shared import DATA, need

NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 4 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3
          weight_filler { type: "gaussian" std: 0.2 } bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
        inner_product_param { num_output: CLASSES
          weight_filler { type: "gaussian" std: 0.2 } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


@pytest.fixture
def model(tmp_path):
    def make(classes=5):
        deploy = tmp_path / f"deploy{classes}.prototxt"
        deploy.write_text(NET.replace("CLASSES", str(classes)))
        netdef.set_random_seed(7)
        net = netdef.Net(str(deploy), netdef.TEST)
        weights = tmp_path / f"w{classes}.caffemodel"
        net.save(str(weights))
        return str(deploy), str(weights)
    return make


def reference(deploy, weights, images, image_dims, mean, raw_scale, swap, oversample):
    """Straight NumPy: resize, crop(s), preprocess, one forward per crop, average."""
    net = netdef.Net(deploy, netdef.TEST, weights=weights)
    net.blobs["data"].reshape(1, 3, 6, 6)
    net.reshape()
    out = []
    for im in images:
        im = nio.resize_image(im, image_dims)
        h, w = image_dims
        if oversample:
            starts = [(0, 0), (0, w - 6), (h - 6, 0), (h - 6, w - 6),
                      (int(h / 2 - 3), int(w / 2 - 3))]
            crops = [im[y:y + 6, x:x + 6] for y, x in starts]
            crops += [c[:, ::-1] for c in crops]
        else:
            y, x = int(h / 2.0 - 3), int(w / 2.0 - 3)
            crops = [im[y:y + 6, x:x + 6]]
        probs = []
        for c in crops:
            x_in = c.transpose(2, 0, 1)[list(swap)] * raw_scale - mean[:, None, None]
            probs.append(net.forward(data=x_in[None])["prob"][0].copy())
        out.append(np.mean(probs, axis=0))
    return np.array(out)


@pytest.mark.parametrize("oversample", [True, False])
def test_predict_matches_a_plain_reference(model, oversample):
    deploy, weights = model()
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 1, (9, 11, 3)).astype(np.float32) for _ in range(3)]
    mean = np.array([0.3, 0.5, 0.2], np.float32)
    clf = Classifier(deploy, weights, image_dims=(8, 10), mean=mean, raw_scale=2.0,
                     channel_swap=(2, 1, 0))
    got = clf.predict(images, oversample=oversample)
    want = reference(deploy, weights, images, (8, 10), mean, 2.0, (2, 1, 0), oversample)
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_defaults_and_input_scale(model):
    deploy, weights = model()
    clf = Classifier(deploy, weights, input_scale=0.5)
    assert tuple(clf.image_dims) == tuple(clf.crop_dims) == (6, 6)
    image = np.random.default_rng(1).uniform(0, 1, (6, 6, 3)).astype(np.float32)
    net = netdef.Net(deploy, netdef.TEST, weights=weights)
    net.blobs["data"].reshape(1, 3, 6, 6)
    net.reshape()
    want = net.forward(data=(image.transpose(2, 0, 1) * 0.5)[None])["prob"][0]
    np.testing.assert_allclose(clf.predict([image], oversample=False)[0], want, rtol=1e-5)


def test_bad_sizes_are_named(model):
    deploy, weights = model()
    with pytest.raises(netdef.NetdefError, match="smaller"):
        Classifier(deploy, weights, image_dims=(4, 4))


def test_means_labels_and_top_k(tmp_path):
    mean = need(os.path.join(DATA, "ilsvrc12", "ilsvrc_2012_mean.npy"))
    per_channel = load_mean(mean, 3, (227, 227))
    assert per_channel.shape == (3,)
    assert load_mean(mean, 3, (256, 256)).shape == (3, 256, 256)
    proto = need(os.path.join(DATA, "ilsvrc12", "imagenet_mean.binaryproto"))
    np.testing.assert_allclose(load_mean(proto, 3, (227, 227)), per_channel, rtol=0.05)
    labels = read_labels(need(os.path.join(DATA, "ilsvrc12", "synset_words.txt")))
    assert len(labels) == 1000 and labels[0].startswith("n01440764")
    assert top_k([0.1, 0.7, 0.2], 2, ["a", "b", "c"]) == [(1, pytest.approx(0.7), "b"),
                                                          (2, pytest.approx(0.2), "c")]


def test_classify_command(model, tmp_path):
    cat = need(os.path.join(DATA, "images", "cat.jpg"))
    synsets = need(os.path.join(DATA, "ilsvrc12", "synset_words.txt"))
    deploy, weights = model(classes=1000)
    out_json = tmp_path / "top.json"
    cmd = [sys.executable, "-m", "netdef.tools.main", "classify", cat,
           os.path.join(DATA, "images", "fish-bike.jpg"), "--model", deploy, "--weights",
           weights, "--labels", synsets, "--top-k", "3", "--images-dim", "8,8",
           "--mean", "104,117,123", "--output", str(out_json)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == cat and len(lines) == 8
    assert all(line.startswith("  0.") and " n" in line for line in lines[1:4])
    report = json.loads(out_json.read_text())
    assert [len(r["top"]) for r in report] == [3, 3]
    clf = Classifier(deploy, weights, image_dims=(8, 8), raw_scale=255.0,
                     channel_swap=(2, 1, 0), mean=np.array([104.0, 117.0, 123.0]))
    probs = clf.predict([nio.load_image(cat)])[0]
    assert report[0]["top"][0]["class"] == int(np.argmax(probs))
    assert report[0]["top"][0]["probability"] == pytest.approx(float(probs.max()), rel=1e-5)
