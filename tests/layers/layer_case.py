"""Single-layer helpers: build a layer from a prototxt snippet, and replay the layer
named "l" of a golden case at layer level (no Net)."""

import os

import numpy as np
from google.protobuf import text_format

from netdef.blob import Blob
from netdef.layer import create_layer
from netdef.proto import caffe_pb2
from tests.conformance import load_case
from tests.shared import CONFORMANCE, need


def make_layer(text, seed=0):
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    return create_layer(lp, rng=np.random.default_rng(seed))


def blobs(*arrays, names="abcdefgh"):
    """Blobs holding copies of ``arrays`` (float32), named a, b, c, ..."""
    out = []
    for name, a in zip(names, arrays, strict=False):
        a = np.asarray(a, np.float32)
        b = Blob(a.shape, name=name)
        b.data[...] = a
        out.append(b)
    return out


def tops(n):
    return [Blob((), name=f"top{i}") for i in range(n)]


def setup_forward(layer, bottom, top):
    layer.layer_setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)


def assert_close(got, want, rtol=1e-5, what=""):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
    err = float(np.abs(got - want).max()) if want.size else 0.0
    assert err <= rtol * scale, f"{what}: max abs err {err:.3g} (scale {scale:.3g})"


def replay_layer(case_name, rtol=1e-5):
    """Replay layer "l" of a golden case: forward, then backward where the case has diffs.

    Bottoms come from ``input/`` or, for blobs made by a helper layer, ``output/``;
    the expected bottom gradient is ``bottom_diff/`` or ``blob_diff/`` of that blob.
    Backward is replayed only for cases with ``force_backward``.
    """
    case = load_case(need(os.path.join(CONFORMANCE, "layers", case_name + ".npz")))
    net = text_format.Parse(case["net"], caffe_pb2.NetParameter())
    lp = next(layer for layer in net.layer if layer.name == "l")
    lp.phase = caffe_pb2.TRAIN if case["phase"] == "TRAIN" else caffe_pb2.TEST
    layer = create_layer(lp, rng=np.random.default_rng(0))
    inputs, outputs = case.get("input", {}), case.get("output", {})
    bottom = []
    for name in lp.bottom:
        arr = inputs[name] if name in inputs else outputs[name]
        b = Blob(arr.shape, name=name)
        b.data[...] = arr
        bottom.append(b)
    top = [Blob((), name=name) for name in lp.top]
    layer.layer_setup(bottom, top)
    for key, arr in case.get("param", {}).items():
        owner, i = key.split("/")
        if owner == "l":
            layer.blobs[int(i)].data[...] = arr
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    for t in top:
        assert_close(t.data, outputs[t.name], rtol, f"output {t.name}")
    top_diffs = case.get("top_diff", {})
    if not top_diffs or not net.force_backward:
        # Without force_backward and without a loss, Caffe's Net runs no backward at
        # all (its recorded diffs are zeros): that is the Net's business, not ours.
        return layer
    bottom_diffs = {**case.get("blob_diff", {}), **case.get("bottom_diff", {})}
    for p in layer.blobs:
        p.diff[...] = 0
    for b in bottom:
        b.diff[...] = 0
    for t in top:
        t.diff[...] = top_diffs[t.name]
    down = [b.name in bottom_diffs for b in bottom]
    if lp.propagate_down:
        down = [d and bool(p) for d, p in zip(down, lp.propagate_down, strict=True)]
    layer.backward(top, down, bottom)
    for b in bottom:
        if b.name in bottom_diffs:
            assert_close(b.diff, bottom_diffs[b.name], rtol, f"bottom_diff {b.name}")
    for key, want in case.get("param_diff", {}).items():
        owner, i = key.split("/")
        if owner == "l":
            assert_close(layer.blobs[int(i)].diff, want, rtol, f"param_diff {key}")
    return layer
