"""Real trained Caffe models reproduce OpenCV dnn's outputs; our caffemodels load in OpenCV."""

import json
import os

import numpy as np
import pytest

from netdef.net import Net
from tests.shared import DATA, need

MODELS = {
    "lenet_ethereon": "lenet_iter_10000.caffemodel",
    "cifar10_quick_everpeace": "cifar10_quick_iter_5000.caffemodel",
    "cifar10_quick_h5_bxuan694": "cifar10_quick_iter_5000.caffemodel.h5",
    "mtcnn_det1": "det1.caffemodel",
}


def run_reference(name, weights):
    folder = need(os.path.join(DATA, "models", name))
    ref = np.load(os.path.join(folder, "reference_opencv.npz"))
    net = Net(os.path.join(folder, "deploy.prototxt"), phase="TEST",
              weights=os.path.join(folder, weights))
    meta = json.loads(str(ref["meta_json"][()]))
    results = []
    for run in meta["runs"]:
        shape = run["input_shape"]
        suffix = "" if shape == meta["runs"][0]["input_shape"] else "@" + "x".join(map(str, shape))
        x = ref["input" + suffix]
        blob = net.blobs[net.inputs[0]]
        blob.reshape(x.shape)
        net.reshape()
        out = net.forward(**{net.inputs[0]: x})
        for key in run["outputs"]:
            results.append((key, out[key].copy(), ref[f"out{suffix}/{key}"]))
    return results


@pytest.mark.parametrize("name", sorted(MODELS))
def test_real_model_matches_opencv(name):
    for key, got, want in run_reference(name, MODELS[name]):
        scale = max(1.0, float(np.abs(want).max()))
        err = float(np.abs(got - want.reshape(got.shape)).max())
        assert err <= 1e-4 * scale, f"{name} {key}: max abs err {err:.3g}"


def test_lenet_saved_by_netdef_loads_in_opencv(tmp_path):
    cv2 = pytest.importorskip("cv2")
    deploy = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "examples", "mnist", "lenet.prototxt")
    net = Net(deploy, phase="TEST")
    rng = np.random.default_rng(3)
    for blobs in net.params.values():
        for b in blobs:
            b.data[...] = rng.normal(0, 0.1, b.shape)
    weights = tmp_path / "lenet.caffemodel"
    net.save(str(weights))
    x = rng.uniform(0, 1, net.blobs["data"].shape).astype(np.float32)
    ours = net.forward(data=x)["prob"].copy()
    cvnet = cv2.dnn.readNetFromCaffe(deploy, str(weights))
    cvnet.setInput(x)
    theirs = cvnet.forward("prob")
    assert float(np.abs(ours - theirs.reshape(ours.shape)).max()) <= 1e-4
