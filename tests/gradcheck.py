"""The one numeric gradient checker every layer test uses.

``check_gradient(layer, bottom, top)`` sets the layer up, builds a random linear
objective L = sum_i r_i * top_i over all tops, runs backward with top.diff = r, and
compares each analytic derivative (bottom diffs, parameter diffs) with a central
difference of L.  ``check_bottom`` limits which bottoms are checked (labels are not
differentiable).  ``directional=True`` checks one random direction instead of every
element (for bigger shapes).  Inputs should be kept away from kinks by the caller.
"""

import numpy as np


def _objective(layer, bottom, top, weights):
    layer.forward(bottom, top)
    return sum(float(np.dot(t.data.ravel().astype(np.float64), w.ravel()))
               for t, w in zip(top, weights))


def check_gradient(layer, bottom, top, check_bottom=None, step=1e-2, threshold=1e-3,
                   kink=None, seed=1701, directional=False, check_params=True, setup=True):
    rng = np.random.default_rng(seed)
    if setup:
        layer.layer_setup(bottom, top)
    else:
        layer.reshape(bottom, top)
    layer.forward(bottom, top)
    weights = [rng.standard_normal(t.shape) for t in top]
    if check_bottom is None:
        check_bottom = list(range(len(bottom)))
    # Analytic.  Top diffs are written last: a top may share its diff with a
    # bottom or a parameter (Flatten, Reshape, Parameter).
    for b in bottom:
        b.diff[...] = 0
    for p in layer.blobs:
        p.diff[...] = 0
    for t, w in zip(top, weights):
        t.diff[...] = w
    propagate = [i in check_bottom for i in range(len(bottom))]
    layer.backward(top, propagate, bottom)
    targets = [(f"bottom[{i}]", bottom[i]) for i in check_bottom]
    if check_params:
        targets += [(f"param[{k}]", p) for k, p in enumerate(layer.blobs)]
    analytic = [blob.diff.astype(np.float64).copy() for _, blob in targets]
    failures = []
    for (label, blob), grad in zip(targets, analytic):
        flat = blob.data.reshape(-1)
        if directional:
            d = rng.standard_normal(flat.shape)
            saved = flat.copy()
            flat[...] = saved + step * d
            plus = _objective(layer, bottom, top, weights)
            flat[...] = saved - step * d
            minus = _objective(layer, bottom, top, weights)
            flat[...] = saved
            numeric = (plus - minus) / (2 * step)
            expected = float(np.dot(grad.ravel(), d))
            scale = max(abs(numeric), abs(expected), 1.0)
            if abs(numeric - expected) > threshold * scale * 10:
                failures.append(f"{label} direction: analytic {expected:.6g} numeric {numeric:.6g}")
            continue
        g = grad.reshape(-1)
        for i in range(flat.size):
            if kink is not None and abs(flat[i]) < kink:
                continue
            saved = flat[i]
            flat[i] = saved + step
            plus = _objective(layer, bottom, top, weights)
            flat[i] = saved - step
            minus = _objective(layer, bottom, top, weights)
            flat[i] = saved
            numeric = (plus - minus) / (2 * step)
            scale = max(abs(numeric), abs(g[i]), 1.0)
            if abs(numeric - g[i]) > threshold * scale:
                failures.append(f"{label}[{i}]: analytic {g[i]:.6g} numeric {numeric:.6g}")
    layer.forward(bottom, top)
    assert not failures, "gradient check failed:\n" + "\n".join(failures[:20])
