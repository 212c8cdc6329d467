"""The model zoo's deploy nets (models/*/deploy.prototxt) are the real architectures.

Each net is built, its parameter count checked against the published architecture, filled
with seeded random weights (scaled so activations stay O(1)), saved with ``net.save`` as a
caffemodel, and read back by OpenCV's dnn module -- an independent Caffe importer -- whose
outputs for the same input must match ours.  Where Caffe's own prototxt or a real trained
caffemodel exists, the zoo net must equal the former layer for layer and load the latter by
layer name.
"""

import gc
import os
from dataclasses import dataclass

import numpy as np
import pytest
from google.protobuf import text_format

from netdef.net import Net
from netdef.proto import caffe_pb2
from netdef.weights import load_weights
from tests.shared import DATA, ROOT, need

ZOO = os.path.join(ROOT, "models")
BVLC = os.path.join(DATA, "prototxt", "BVLC_caffe")


@dataclass(frozen=True)
class Case:
    folder: str
    input_shape: tuple       # batch 1 and the smallest input the architecture allows
    outputs: tuple           # the net's outputs (unconsumed blobs)
    compared: tuple          # blobs checked against OpenCV: the outputs plus the logits
    learnable: int           # parameters of the published architecture
    statistics: int = 0      # BatchNorm's stored mean/variance/factor values
    slow: bool = False


CASES = [
    Case("lenet", (1, 1, 28, 28), ("prob",), ("ip2", "prob"), 431_080),
    Case("cifar10_quick", (1, 3, 32, 32), ("prob",), ("ip2", "prob"), 145_578),
    Case("mtcnn_pnet", (1, 3, 12, 12), ("conv4-2", "prob1"), ("conv4-1", "conv4-2", "prob1"),
         6_632),
    Case("mtcnn_rnet", (1, 3, 24, 24), ("conv5-2", "prob1"), ("conv5-1", "conv5-2", "prob1"),
         100_178),
    Case("mtcnn_onet", (1, 3, 48, 48), ("conv6-2", "conv6-3", "prob1"),
         ("conv6-1", "conv6-2", "conv6-3", "prob1"), 389_040),
    Case("squeezenet1.1", (1, 3, 227, 227), ("prob",), ("pool10", "prob"), 1_235_496,
         slow=True),
    Case("caffenet", (1, 3, 227, 227), ("prob",), ("fc8", "prob"), 60_965_224, slow=True),
    Case("alexnet", (1, 3, 227, 227), ("prob",), ("fc8", "prob"), 60_965_224, slow=True),
    Case("googlenet", (1, 3, 224, 224), ("prob",), ("loss3/classifier", "prob"), 6_998_552,
         slow=True),
    Case("resnet50", (1, 3, 224, 224), ("prob",), ("fc1000", "prob"), 25_557_096,
         statistics=2 * 26_560 + 53, slow=True),
    Case("vgg16", (1, 3, 224, 224), ("prob",), ("fc8", "prob"), 138_357_544, slow=True),
    Case("fcn32s", (1, 3, 64, 64), ("score",), ("score_fr", "score"), 136_152_917, slow=True),
]


def deploy(folder):
    return os.path.join(ZOO, folder, "deploy.prototxt")


def param_counts(net):
    """(learnable values, BatchNorm statistics values) over every layer's blobs."""
    learnable = statistics = 0
    for name, blobs in net.params.items():
        n = sum(b.count for b in blobs)
        if net.layer_dict[name].type == "BatchNorm":
            statistics += n
        else:
            learnable += n
    return learnable, statistics


def randomize(net, rng):
    """Seeded weights that keep activations O(1) through deep stacks: He-scaled filters,
    small biases, positive BatchNorm variances with scale factor 1, modest Scale and PReLU
    slopes."""
    for name, blobs in net.params.items():
        kind = net.layer_dict[name].type
        if kind == "BatchNorm":
            mean, var, factor = blobs
            mean.data[...] = rng.normal(0.0, 0.1, mean.shape)
            var.data[...] = rng.uniform(0.5, 1.5, var.shape)
            factor.data[...] = 1.0
            continue
        weight = blobs[0]
        if kind in ("Convolution", "InnerProduct"):
            fan_in = weight.count // weight.shape[0]
            std = np.sqrt(2.0 / fan_in)
        elif kind == "Deconvolution":
            # each output sums over (kernel / stride)^2 taps of every input channel
            std = 1.0 / np.sqrt(weight.shape[0] * 4)
        elif kind == "Scale":
            std = None
            weight.data[...] = rng.uniform(0.5, 1.0, weight.shape)
        elif kind == "PReLU":
            std = None
            weight.data[...] = rng.uniform(0.0, 0.5, weight.shape)
        else:
            raise AssertionError(f"no random fill for layer type {kind} ({name})")
        if std is not None:
            values = rng.standard_normal(weight.shape, dtype=np.float32)
            values *= np.float32(std)
            weight.data[...] = values
        for bias in blobs[1:]:
            bias.data[...] = rng.uniform(-0.1, 0.1, bias.shape)


def assert_close(name, key, got, want):
    want = want.reshape(got.shape)
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= 1e-4 * scale, (f"{name} '{key}' {got.shape}: max abs diff {err:.3g} "
                                 f"(max |output| {scale:.3g}) against OpenCV dnn")


@pytest.mark.parametrize("case", [pytest.param(c, id=c.folder, marks=[pytest.mark.slow]
                                               if c.slow else []) for c in CASES])
def test_zoo_net_matches_opencv(case, tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = deploy(case.folder)
    net = Net(path, phase="TEST")
    assert sorted(net.outputs) == sorted(case.outputs)
    assert param_counts(net) == (case.learnable, case.statistics)

    rng = np.random.default_rng(20240611)
    randomize(net, rng)
    weights = str(tmp_path / f"{case.folder}.caffemodel")
    try:
        net.save(weights)
        x = rng.uniform(-1.0, 1.0, case.input_shape).astype(np.float32)
        net.blobs["data"].reshape(case.input_shape)
        net.reshape()
        net.forward(data=x)
        ours = {key: net.blobs[key].data.copy() for key in case.compared}
        del net
        gc.collect()

        cvnet = cv2.dnn.readNetFromCaffe(path, weights)
        cvnet.setInput(x)
        theirs = dict(zip(case.compared, cvnet.forward(list(case.compared))))
    finally:
        if os.path.exists(weights):
            os.remove(weights)
    for key in case.compared:
        assert_close(case.folder, key, ours[key], theirs[key])


# --------------------------------------------------------------- against the published prototxts

def normalized_layers(net_param):
    """Each non-Input layer as text, without training-only specs (lr/decay multipliers,
    fillers) and with Caffe's default stride 1 made implicit."""
    out = []
    for layer in net_param.layer:
        if layer.type == "Input":
            continue
        layer = caffe_pb2.LayerParameter.FromString(layer.SerializeToString())
        del layer.param[:]
        for field in ("convolution_param", "inner_product_param"):
            if layer.HasField(field):
                getattr(layer, field).ClearField("weight_filler")
                getattr(layer, field).ClearField("bias_filler")
        conv = layer.convolution_param
        if list(conv.stride) == [1]:
            conv.ClearField("stride")
        pool = layer.pooling_param
        if pool.HasField("stride") and pool.stride == 1:
            pool.ClearField("stride")
        out.append(text_format.MessageToString(layer, as_one_line=True))
    return out


def read_text(path):
    param = caffe_pb2.NetParameter()
    with open(path) as f:
        text_format.Parse(f.read(), param)
    return param


@pytest.mark.parametrize("folder, reference", [
    ("lenet", os.path.join(BVLC, "examples", "mnist", "lenet.prototxt")),
    ("cifar10_quick", os.path.join(BVLC, "examples", "cifar10", "cifar10_quick.prototxt")),
    ("caffenet", os.path.join(BVLC, "models", "bvlc_reference_caffenet", "deploy.prototxt")),
    ("alexnet", os.path.join(BVLC, "models", "bvlc_alexnet", "deploy.prototxt")),
    ("googlenet", os.path.join(BVLC, "models", "bvlc_googlenet", "deploy.prototxt")),
    ("mtcnn_pnet", os.path.join(DATA, "models", "mtcnn_det1", "deploy.prototxt")),
], ids=lambda v: os.path.relpath(v, DATA) if os.sep in v else v)
def test_zoo_net_equals_the_published_prototxt(folder, reference):
    """Same layers, names, blobs and hyper-parameters as the authors' own deploy file
    (training-only specs aside), so the published caffemodels fit."""
    theirs = read_text(need(reference))
    ours = read_text(deploy(folder))
    assert normalized_layers(ours) == normalized_layers(theirs)


# --------------------------------------------------------------- real trained weights

@pytest.mark.parametrize("folder, real, weights", [
    ("lenet", "lenet_ethereon", "lenet_iter_10000.caffemodel"),
    ("cifar10_quick", "cifar10_quick_everpeace", "cifar10_quick_iter_5000.caffemodel"),
    ("cifar10_quick", "cifar10_quick_h5_bxuan694", "cifar10_quick_iter_5000.caffemodel.h5"),
    ("mtcnn_pnet", "mtcnn_det1", "det1.caffemodel"),
])
def test_zoo_net_loads_real_weights_by_name(folder, real, weights):
    """Every parameter layer of the zoo net takes its weights from the published file by
    name, and the result reproduces OpenCV's outputs for that trained model."""
    src = need(os.path.join(DATA, "models", real))
    ref = np.load(os.path.join(src, "reference_opencv.npz"))
    net = Net(deploy(folder), phase="TEST")
    matched = net.copy_trained_layers(load_weights(os.path.join(src, weights)))
    assert matched == len(net.params)
    x = ref["input"]
    net.blobs["data"].reshape(x.shape)
    net.reshape()
    net.forward(data=x)
    for key in net.outputs:
        assert_close(folder, key, net.blobs[key].data, ref[f"out/{key}"])
