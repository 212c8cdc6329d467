"""One layer outside a Net: build it from a prototxt snippet, and replay a golden case.

``make_layer`` builds a layer from a LayerParameter text and blobs holding the given
arrays.  ``replay_layer`` replays a single-layer golden case from the reference Caffe.

The layer under test is named "l" in the case's net text.  Its bottoms are the case's
inputs (or, when a helper layer "pre" feeds it, a blob computed here from the inputs);
parameters and inputs are written, forward runs, outputs are compared; then loss tops get
their loss weight as diff (other tops get ``top_diff``), backward runs and bottom / param
diffs are compared.
"""

import glob
import os

import numpy as np
from google.protobuf import text_format

from netdef.blob import Blob
from netdef.layer import create_layer
from netdef.proto import caffe_pb2
from tests.conformance import close, load_case
from tests.shared import CONFORMANCE


def make_layer(text, *arrays, tops=1, phase=caffe_pb2.TRAIN, setup=True):
    """(layer, bottom blobs, top blobs) for ``text`` (LayerParameter prototxt).

    Each array becomes a float32 bottom blob ``b0``, ``b1``, ...; the tops are ``t0``, ...
    """
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    if not lp.name:
        lp.name = "l"
    lp.phase = phase
    bottom = []
    for i, a in enumerate(arrays):
        a = np.asarray(a, np.float32)
        blob = Blob(a.shape, name=f"b{i}")
        blob.data[...] = a
        bottom.append(blob)
    top = [Blob(name=f"t{i}") for i in range(tops)]
    layer = create_layer(lp, rng=np.random.default_rng(0))
    if setup:
        layer.layer_setup(bottom, top)
    return layer, bottom, top


def run_backward(layer, bottom, top, top_diffs, propagate=None):
    """Write ``top_diffs`` into the tops, run backward, return copies of the bottom diffs."""
    for blob, d in zip(top, top_diffs):
        blob.diff[...] = d
    for blob in bottom:
        blob.diff[...] = 0
    if propagate is None:
        propagate = [True] * len(bottom)
    layer.backward(top, propagate, bottom)
    return [blob.diff.copy() for blob in bottom]


def case_paths(*prefixes):
    """Golden cases whose file names start with one of ``prefixes``."""
    paths = sorted(glob.glob(os.path.join(CONFORMANCE, "layers", "*.npz")))
    return [p for p in paths if os.path.basename(p).startswith(prefixes)]


def case_id(path):
    return os.path.basename(path)[:-4]


def _pre_output(pre, case):
    """The blob a helper layer "pre" makes from the inputs (identity Power or Scale)."""
    x = case["input"][pre.bottom[0]]
    if pre.type == "Power":
        p = pre.power_param
        return ((p.shift + p.scale * x) ** p.power).astype(np.float32)
    if pre.type == "Scale":
        w = case["param"]["pre/0"]
        shape = (1,) + w.shape + (1,) * (x.ndim - 1 - w.ndim)
        return (x * w.reshape(shape)).astype(np.float32)
    raise NotImplementedError(pre.type)


def replay_layer(path, rtol=1e-4):
    """Return a list of mismatch descriptions (empty when the case passes)."""
    case = load_case(path)
    net = caffe_pb2.NetParameter()
    text_format.Parse(case["net"], net)
    layers = {lp.name: lp for lp in net.layer}
    lp = layers["l"]
    lp.phase = caffe_pb2.TRAIN if case["phase"] == "TRAIN" else caffe_pb2.TEST
    pre = layers.get("pre")
    produced_by_pre = set(pre.top) if pre is not None else set()
    inputs = case.get("input", {})

    bottom = []
    for name in lp.bottom:
        value = _pre_output(pre, case) if name in produced_by_pre else inputs[name]
        blob = Blob(value.shape, name=name)
        blob.data[...] = value
        bottom.append(blob)
    top = []
    for name in lp.top:
        if name in lp.bottom:
            top.append(bottom[list(lp.bottom).index(name)])
        else:
            top.append(Blob(name=name))

    layer = create_layer(lp, rng=np.random.default_rng(0))
    layer.layer_setup(bottom, top)
    params = case.get("param", {})
    for i, blob in enumerate(layer.blobs):
        if f"l/{i}" in params:
            blob.data[...] = params[f"l/{i}"].reshape(blob.shape)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)

    problems = []
    checked = []

    def compare(what, got, want):
        checked.append(what)
        msg = close(got, want, rtol)
        if msg:
            problems.append(f"{what}: {msg}")

    for blob in top:
        want = case.get("output", {}).get(blob.name)
        if want is not None:
            compare(f"output {blob.name}", blob.data, want)
    for key, want in case.get("param_after_forward", {}).items():
        if key.startswith("l/"):
            compare(f"param_after_forward {key}", layer.blobs[int(key[2:])].data, want)
    if not any(k in case for k in ("bottom_diff", "blob_diff", "param_diff")):
        return problems or _nothing_checked(checked)

    for blob in layer.blobs:
        blob.diff[...] = 0
    top_diff = case.get("top_diff", {})
    for blob, w in zip(top, layer.loss_weights):
        if w != 0:
            blob.diff[...] = w
        elif blob.name in top_diff:
            blob.diff[...] = top_diff[blob.name].reshape(blob.shape)
    if lp.propagate_down:
        propagate = [bool(f) for f in lp.propagate_down]
    else:
        propagate = [net.force_backward and layer.allow_force_backward(i) or
                     name in produced_by_pre for i, name in enumerate(lp.bottom)]
    layer.backward(top, propagate, bottom)

    bottom_diff = case.get("bottom_diff", {})
    blob_diff = case.get("blob_diff", {})
    for blob, flag in zip(bottom, propagate):
        if not flag:
            continue
        name = blob.name
        if name in produced_by_pre and pre.type == "Power":
            name = pre.bottom[0]  # identity helper: its input gets the same diff
        want = bottom_diff.get(name, blob_diff.get(name))
        if want is not None:
            compare(f"bottom diff {blob.name}", blob.diff, want)
    for key, want in case.get("param_diff", {}).items():
        if key.startswith("l/"):
            compare(f"param_diff {key}", layer.blobs[int(key[2:])].diff, want)
    replay_layer.last_checked = checked
    return problems or _nothing_checked(checked, backward=True)


def _nothing_checked(checked, backward=False):
    replay_layer.last_checked = checked
    if not checked:
        return ["nothing was compared"]
    if backward and not any("diff" in c for c in checked):
        return ["no gradient was compared"]
    return []
