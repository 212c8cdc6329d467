"""One layer outside a Net: build it from a prototxt snippet, drive it, and replay the
layer named "l" of a reference Caffe golden case at layer level.

Building: ``make_layer(text)`` gives just the layer (tests wire their own blobs with
``blobs`` / ``tops``); ``layer_with_blobs(text, *arrays)`` gives (layer, bottom, top).

Replaying: ``replay_problems(case)`` lists what disagrees with the case (empty when it
passes); ``replay_layer(case)`` asserts there is nothing and returns the layer.  The layer's
bottoms are the case's inputs, or blobs made by a helper layer ("pre": an identity Power or
a Scale, recomputed here when the layer overwrites them in place).  Parameters and inputs
are written, forward runs, tops and ``param_after_forward`` are compared.  Where the case
has gradients and Caffe ran a backward (force_backward or a loss), loss tops get their loss
weight as diff (other tops get ``top_diff``), backward runs with Caffe's propagate_down /
force_backward choice of bottoms, and bottom and parameter diffs are compared.  A case
that compares nothing is a failure.
"""

import glob
import os

import numpy as np
from google.protobuf import text_format

from netdef.blob import Blob
from netdef.layer import create_layer
from netdef.proto import caffe_pb2
from tests.conformance import close, load_case
from tests.shared import CONFORMANCE, need


# -- building one layer -------------------------------------------------------------
def _layer_param(text):
    return text_format.Parse(text, caffe_pb2.LayerParameter())


def make_layer(text, seed=0):
    """The layer for ``text`` (LayerParameter prototxt), not set up."""
    return create_layer(_layer_param(text), rng=np.random.default_rng(seed))


def layer_with_blobs(text, *arrays, tops=1, phase=caffe_pb2.TRAIN, setup=True):
    """(layer, bottom blobs, top blobs) for ``text``, named "l" unless it says otherwise.

    Each array becomes a float32 bottom blob ``b0``, ``b1``, ...; the tops are ``t0``, ...
    """
    lp = _layer_param(text)
    if not lp.name:
        lp.name = "l"
    lp.phase = phase
    bottom = blobs(*arrays, names=[f"b{i}" for i in range(len(arrays))])
    top = [Blob(name=f"t{i}") for i in range(tops)]
    layer = create_layer(lp, rng=np.random.default_rng(0))
    if setup:
        layer.layer_setup(bottom, top)
    return layer, bottom, top


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


# -- driving it -----------------------------------------------------------------------
def setup_forward(layer, bottom, top):
    layer.layer_setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)


def run_backward(layer, bottom, top, top_diffs, propagate=None):
    """Write ``top_diffs`` into the tops, run backward, return copies of the bottom diffs."""
    for blob, d in zip(top, top_diffs, strict=False):
        blob.diff[...] = d
    for blob in bottom:
        blob.diff[...] = 0
    if propagate is None:
        propagate = [True] * len(bottom)
    layer.backward(top, propagate, bottom)
    return [blob.diff.copy() for blob in bottom]


# -- golden cases -----------------------------------------------------------------------
def case_paths(*prefixes):
    """Golden cases whose file names start with one of ``prefixes``."""
    paths = sorted(glob.glob(os.path.join(CONFORMANCE, "layers", "*.npz")))
    return [p for p in paths if os.path.basename(p).startswith(prefixes)]


def case_id(path):
    return os.path.basename(path)[:-4]


def case_file(case):
    """The file of a case given by name or path; skips the test when it is absent."""
    if not case.endswith(".npz"):
        case = os.path.join(CONFORMANCE, "layers", case + ".npz")
    return need(case)


def replay_layer(case_name, rtol=1e-5, atol=None):
    """Replay layer "l" of a golden case (name or path), assert it agrees, return it."""
    layer, problems = _replay(case_name, rtol, atol)
    assert not problems, f"{case_id(case_file(case_name))}: " + "; ".join(problems)
    return layer


def replay_problems(case, rtol=1e-4, atol=None):
    """What disagrees when layer "l" of a golden case is replayed (empty when it passes).

    Closeness is ``tests.conformance.close`` (``atol`` switches it to per element).
    """
    return _replay(case, rtol, atol)[1]


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


def _bottom_value(name, lp, pre, case):
    if name in case.get("input", {}):
        return case["input"][name]
    if name not in lp.top and name in case.get("output", {}):
        return case["output"][name]  # made by a helper layer, recorded as it was
    return _pre_output(pre, case)  # made by "pre", then overwritten in place by "l"


def _replay(case_name, rtol, atol):
    """(layer, problems) for layer "l" of a golden case."""
    case = load_case(case_file(case_name))
    net = text_format.Parse(case["net"], caffe_pb2.NetParameter())
    layers = {lp.name: lp for lp in net.layer}
    lp = layers["l"]
    lp.phase = caffe_pb2.TRAIN if case["phase"] == "TRAIN" else caffe_pb2.TEST
    pre = layers.get("pre")
    made_by_pre = set(pre.top) if pre is not None else set()

    bottom = blobs(*(_bottom_value(name, lp, pre, case) for name in lp.bottom),
                   names=lp.bottom)
    top = []
    for name in lp.top:
        if name in lp.bottom:  # in place: the top is the bottom blob itself
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

    problems, checked = [], []

    def compare(what, got, want):
        checked.append(what)
        if got.shape != want.shape:
            problems.append(f"{what}: shape {got.shape} != expected {want.shape}")
            return
        msg = close(got, want, rtol, atol)
        if msg:
            problems.append(f"{what}: {msg}")

    outputs = case.get("output", {})
    for blob in top:
        if blob.name in outputs:
            compare(f"output {blob.name}", blob.data, outputs[blob.name])
        else:
            problems.append(f"output {blob.name}: not in the case")
    for key, want in case.get("param_after_forward", {}).items():
        if key.startswith("l/"):
            compare(f"param_after_forward {key}", layer.blobs[int(key[2:])].data, want)
    has_diffs = any(k in case for k in ("bottom_diff", "blob_diff", "param_diff"))
    if not has_diffs or not (net.force_backward or any(layer.loss_weights)):
        # Without force_backward and without a loss, Caffe's Net runs no backward at
        # all (its recorded diffs are zeros): there is no gradient to compare.
        return layer, problems or _nothing_compared(checked)

    for blob in layer.blobs:
        blob.diff[...] = 0
    for blob in bottom:
        blob.diff[...] = 0
    top_diff = case.get("top_diff", {})
    for blob, w in zip(top, layer.loss_weights, strict=True):
        if w != 0:
            blob.diff[...] = w  # Caffe seeds a loss top's diff with its loss weight
        elif blob.name in top_diff:
            blob.diff[...] = top_diff[blob.name].reshape(blob.shape)
    if lp.propagate_down:
        propagate = [bool(f) for f in lp.propagate_down]
    else:
        propagate = [net.force_backward and layer.allow_force_backward(i) or
                     name in made_by_pre for i, name in enumerate(lp.bottom)]
    layer.backward(top, propagate, bottom)

    recorded = {**case.get("blob_diff", {}), **case.get("bottom_diff", {})}
    for blob in bottom:
        name = blob.name
        if name in made_by_pre and pre.type == "Power":
            name = pre.bottom[0]  # identity helper: its input gets the same diff
        if name in recorded:
            compare(f"bottom diff {blob.name}", blob.diff, recorded[name])
    for key, want in case.get("param_diff", {}).items():
        if key.startswith("l/"):
            compare(f"param_diff {key}", layer.blobs[int(key[2:])].diff, want)
    return layer, problems or _nothing_compared(checked, backward=True)


def _nothing_compared(checked, backward=False):
    if not checked:
        return ["nothing was compared"]
    if backward and not any("diff" in c for c in checked):
        return ["no gradient was compared"]
    return []
