"""Replay a golden case layer by layer, without a Net.

Builds each non-Input layer of the case's ``net`` text straight from its
LayerParameter, wires blobs by name (a top named like its bottom is the same Blob
object: in place), writes inputs and params, runs forward, then writes the top
diffs and runs backward in reverse order with every bottom propagating.  This
checks the layers on their own, whatever state the Net is in.
"""

import os

import numpy as np
from google.protobuf import text_format

from netdef.blob import Blob
from netdef.layer import create_layer
from netdef.proto import caffe_pb2
from tests.conformance import load_case
from tests.shared import CONFORMANCE, need


def case_path(name):
    return need(os.path.join(CONFORMANCE, "layers", name + ".npz"))


def _compare(what, got, want, rtol, atol):
    np.testing.assert_allclose(np.asarray(got).reshape(want.shape), want, rtol=rtol,
                               atol=atol, err_msg=what)


def replay_layers(name, rtol=1e-5, atol=1e-6):
    case = load_case(case_path(name))
    net = text_format.Parse(case["net"], caffe_pb2.NetParameter())
    phase = caffe_pb2.TRAIN if case["phase"] == "TRAIN" else caffe_pb2.TEST
    blobs = {}
    for blob_name, arr in case.get("input", {}).items():
        blobs[blob_name] = Blob(arr.shape, name=blob_name)
        blobs[blob_name].data[...] = arr
    params = case.get("param", {})
    steps = []
    for lp in net.layer:
        if lp.type == "Input":
            continue
        lp.phase = phase
        layer = create_layer(lp, rng=np.random.default_rng(0))
        bottom = [blobs[n] for n in lp.bottom]
        top = [blobs.setdefault(n, Blob(name=n)) for n in lp.top]
        layer.layer_setup(bottom, top)
        for i, p in enumerate(layer.blobs):
            key = f"{lp.name}/{i}"
            if key in params:
                p.data[...] = params[key].reshape(p.shape)
        steps.append((layer, bottom, top))
    for layer, bottom, top in steps:
        layer.forward(bottom, top)
    for blob_name, want in case.get("output", {}).items():
        _compare(f"output {blob_name}", blobs[blob_name].data, want, rtol, atol)
    if "bottom_diff" not in case and "param_diff" not in case:
        return
    for layer, _, _ in steps:
        for p in layer.blobs:
            p.diff[...] = 0
    for blob_name, d in case.get("top_diff", {}).items():
        blobs[blob_name].diff[...] = d.reshape(blobs[blob_name].shape)
    for layer, bottom, top in reversed(steps):
        layer.backward(top, [True] * len(bottom), bottom)
    for blob_name, want in case.get("bottom_diff", {}).items():
        _compare(f"bottom_diff {blob_name}", blobs[blob_name].diff, want, rtol, atol)
    by_name = {layer.name: layer for layer, _, _ in steps}
    for key, want in case.get("param_diff", {}).items():
        layer_name, i = key.split("/")
        _compare(f"param_diff {key}", by_name[layer_name].blobs[int(i)].diff, want, rtol,
                 atol)
