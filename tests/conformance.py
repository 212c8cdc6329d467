"""Replaying the reference Caffe's golden layer cases through a Net."""

import numpy as np

from netdef.net import Net


def load_case(path):
    z = np.load(path)
    case = {"net": str(z["net"][()]), "phase": str(z["phase"][()])}
    for k in z.files:
        if "/" in k:
            group, rest = k.split("/", 1)
            case.setdefault(group, {})[rest] = z[k]
    return case


def close(got, want, rtol, atol=None):
    """None when ``got`` matches ``want``, else what is wrong.

    By default the error is measured against the largest expected magnitude (at least 1);
    with ``atol`` every element must satisfy |got - want| <= atol + rtol * |want|.
    """
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.shape != want.shape:
        if got.size != want.size:
            return f"shape {got.shape} != expected {want.shape}"
        got = got.reshape(want.shape)
    scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
    err = float(np.abs(got - want).max()) if want.size else 0.0
    if atol is not None:
        bad = int(np.count_nonzero(~(np.abs(got - want) <= atol + rtol * np.abs(want))))
        return None if not bad else (f"{bad} of {want.size} elements beyond atol {atol:g} + "
                                     f"rtol {rtol:g} * |want| (max abs err {err:.3g})")
    return None if err <= rtol * scale else f"max abs err {err:.3g} (scale {scale:.3g})"


def replay(path, rtol=1e-4):
    """Return a list of mismatch descriptions (empty when the case passes)."""
    case = load_case(path)
    net = Net(case["net"], phase=case["phase"])
    problems = []
    params = {}
    for key, arr in case.get("param", {}).items():
        layer, i = key.split("/")
        params[(layer, int(i))] = arr
    for (layer, i), arr in params.items():
        net.params[layer][i].data[...] = arr.reshape(net.params[layer][i].shape)
    for name, arr in case.get("input", {}).items():
        blob = net.blobs[name]
        if blob.shape != arr.shape:
            blob.reshape(arr.shape)
        blob.data[...] = arr
    net.reshape()
    net.forward_from_to()
    for name, want in case.get("output", {}).items():
        if name in net.blobs:
            msg = close(net.blobs[name].data, want, rtol)
            if msg:
                problems.append(f"output {name}: {msg}")
        elif "_split_" not in name:
            problems.append(f"output {name}: blob missing")
    for key, want in case.get("param_after_forward", {}).items():
        layer, i = key.split("/")
        msg = close(net.params[layer][int(i)].data, want, rtol)
        if msg:
            problems.append(f"param_after_forward {key}: {msg}")
    if not any(k in case for k in ("bottom_diff", "param_diff", "blob_diff")):
        return problems
    net.clear_param_diffs()
    for name, want in case.get("top_diff", {}).items():
        net.blobs[name].diff[...] = want.reshape(net.blobs[name].shape)
    net.backward_from_to()
    for group in ("bottom_diff", "blob_diff"):
        for name, want in case.get(group, {}).items():
            if name in net.blobs:
                msg = close(net.blobs[name].diff, want, rtol)
                if msg:
                    problems.append(f"{group} {name}: {msg}")
    for key, want in case.get("param_diff", {}).items():
        layer, i = key.split("/")
        msg = close(net.params[layer][int(i)].diff, want, rtol)
        if msg:
            problems.append(f"param_diff {key}: {msg}")
    return problems
