"""`netdef summary`: per-layer shapes, parameters, activation memory, multiply-adds and
receptive fields, checked against the classic VGG-16 and AlexNet tables."""

import csv
import io
import json
import os
import subprocess
import sys
import time

import pytest

from netdef.errors import UsageError
from netdef.summary import format_csv, format_json, format_text, parse_shape, summarize
from tests.shared import ROOT

MODELS = os.path.join(ROOT, "models")

# A VGG-16 written here, used when models/vgg16 is not there.
VGG_CFG = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]


def vgg16_text():
    lines = ['name: "VGG16"', 'layer { name: "data" type: "Input" top: "data" '
             'input_param { shape { dim: 10 dim: 3 dim: 224 dim: 224 } } }']
    bottom = "data"
    for stage, (maps, convs) in enumerate(VGG_CFG, 1):
        for i in range(1, convs + 1):
            name = f"conv{stage}_{i}"
            lines.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" '
                         f'top: "{name}" convolution_param {{ num_output: {maps} pad: 1 '
                         'kernel_size: 3 } }')
            lines.append(f'layer {{ name: "relu{stage}_{i}" type: "ReLU" bottom: "{name}" '
                         f'top: "{name}" }}')
            bottom = name
        lines.append(f'layer {{ name: "pool{stage}" type: "Pooling" bottom: "{bottom}" '
                     f'top: "pool{stage}" pooling_param {{ pool: MAX kernel_size: 2 '
                     'stride: 2 } }')
        bottom = f"pool{stage}"
    for name, n in (("fc6", 4096), ("fc7", 4096), ("fc8", 1000)):
        lines.append(f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" '
                     f'top: "{name}" inner_product_param {{ num_output: {n} }} }}')
        bottom = name
    lines.append('layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }')
    return "\n".join(lines)


def model(name, fallback=None):
    path = os.path.join(MODELS, name, "deploy.prototxt")
    if os.path.exists(path):
        return path
    if fallback is None:
        pytest.skip(f"{path} is not there")
    return fallback()


@pytest.fixture(scope="module")
def vgg16():
    start = time.perf_counter()
    summary = summarize(model("vgg16", vgg16_text))
    return summary, time.perf_counter() - start


def test_vgg16_rows_match_the_classic_table(vgg16):
    s, _ = vgg16
    conv1_1 = s.row("conv1_1")
    assert conv1_1.tops == [("conv1_1", (10, 64, 224, 224))]
    assert conv1_1.activations == 224 * 224 * 64 == 3_211_264        # "3.2M"
    assert conv1_1.weights == 1_728 and conv1_1.params == 1_792
    assert conv1_1.macs == 224 * 224 * 64 * 27
    assert s.row("fc6").weights == 102_760_448
    assert s.row("fc7").weights == 16_777_216
    assert s.row("fc8").weights == 4_096_000
    assert s.row("pool5").activations == 7 * 7 * 512
    assert s.row("relu1_1").in_place and s.row("relu1_1").activations == 0
    assert s.row("pool5").receptive_field == (212, 212)
    assert s.row("pool5").stride == (32, 32)
    assert s.row("conv5_3").receptive_field == (196, 196)
    assert s.row("fc6").receptive_field is None


def test_vgg16_totals(vgg16):
    s, seconds = vgg16
    t = s.totals
    assert t["params"] == 138_357_544                                  # "~138M"
    assert t["macs_per_image"] == 15_470_264_320                       # "~15.5G"
    # the true sum of the rows (input and softmax included), not the slide's "24M"
    assert t["activations_per_image"] == sum(r.activations for r in s.rows) == 15_238_608
    assert t["activation_bytes_per_image"] == 4 * 15_238_608
    assert s.batch == 10
    assert t["activation_bytes_per_batch"] == 10 * t["activation_bytes_per_image"]
    assert t["macs_per_batch"] == 10 * t["macs_per_image"]
    assert seconds < 20, f"summary of VGG-16 took {seconds:.1f} s"


def test_alexnet_rows_and_totals():
    s = summarize(model("alexnet"), {None: (1, 3, 227, 227)})
    assert s.batch == 1
    conv1 = s.row("conv1")
    assert conv1.tops == [("conv1", (1, 96, 55, 55))]
    assert conv1.weights == 34_848 and conv1.activations == 290_400
    assert s.row("conv2").weights == 256 * 48 * 25                    # group 2
    assert s.row("fc6").weights == 37_748_736
    assert s.totals["params"] == 60_965_224
    assert s.totals["macs_per_image"] == 724_406_816                  # "~720M"
    assert s.row("pool5").receptive_field == (195, 195)
    assert s.row("pool5").stride == (32, 32)


def test_lenet_by_hand():
    s = summarize(model("lenet"), {None: (4, 1, 28, 28)})
    assert [r.macs for r in s.rows if r.macs] == [24 * 24 * 20 * 25, 8 * 8 * 50 * 500,
                                                    800 * 500, 500 * 10]
    assert s.totals["params"] == 431_080
    assert s.row("prob").tops == [("prob", (4, 10))]
    assert s.totals["activations_per_batch"] == 4 * s.totals["activations_per_image"]
    assert s.row("pool2").receptive_field == (16, 16)


def test_deconvolution_crop_and_batchnorm(tmp_path):
    net = """
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3
            dim: 32 dim: 32 } } }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
            convolution_param { num_output: 8 kernel_size: 3 stride: 2 pad: 1 } }
    layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
    layer { name: "up" type: "Deconvolution" bottom: "conv" top: "up"
            convolution_param { num_output: 4 kernel_size: 4 stride: 2 bias_term: false } }
    layer { name: "crop" type: "Crop" bottom: "up" bottom: "data" top: "crop"
            crop_param { axis: 2 offset: 1 } }
    """
    s = summarize(net)
    assert s.row("conv").tops == [("conv", (2, 8, 16, 16))]
    assert s.row("bn").statistics == 8 + 8 + 1 and s.row("bn").params == 0
    up = s.row("up")
    assert up.tops == [("up", (2, 4, 34, 34))]
    assert up.weights == 8 * 4 * 16 and up.macs == 8 * 16 * 16 * 4 * 16
    assert up.stride == (1, 1) and up.receptive_field == (5, 5)
    assert s.row("crop").tops == [("crop", (2, 4, 32, 32))]
    assert s.row("crop").receptive_field == (5, 5)


def test_formats_csv_json_text():
    s = summarize(model("lenet"))
    rows = list(csv.DictReader(io.StringIO(format_csv(s))))
    assert rows[-1]["layer"] == "TOTAL" and int(rows[-1]["params"]) == 431_080
    conv1 = next(r for r in rows if r["layer"] == "conv1")
    assert conv1["top_shapes"] == "64x20x24x24" and conv1["receptive_field"] == "5x5"
    data = json.loads(format_json(s))
    assert data["batch"] == 64 and data["totals"]["params"] == 431_080
    assert data["layers"][1]["macs_per_image"] == 288_000
    text = format_text(s)
    assert "conv1" in text and "431,080" in text and "multiply-adds" in text


def test_input_shapes():
    assert parse_shape("1,3,224,224") == (None, (1, 3, 224, 224))
    assert parse_shape("data=2x3x8x8") == ("data", (2, 3, 8, 8))
    with pytest.raises(UsageError):
        parse_shape("1,a")
    with pytest.raises(UsageError, match="nope"):
        summarize(model("lenet"), {"nope": (1, 1, 28, 28)})


def test_command_line():
    cmd = [sys.executable, "-m", "netdef.tools.main", "summary", model("lenet"),
           "--input-shape", "1,1,28,28", "--format", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["totals"]["macs_per_image"] == 2_293_000
