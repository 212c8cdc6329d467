"""First updates of every solver type, worked out by hand (float64) from Caffe's formulas.

The gradient is either the real one of a tiny Euclidean net (computed here in NumPy) or a
fixed one written into the diffs by a stand-in forward/backward, so each rule, each
multiplier, regularisation, clipping and iter_size scaling is checked on its own.
"""

import numpy as np
import pytest
from google.protobuf import text_format

from netdef.errors import SolverError
from netdef.proto import caffe_pb2
from netdef.solvers import Solver
from tests.solvers.tiny import EUCLID_NET, prevent_snapshots, solver_param

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5], [-1.0, 1.0, 0.75], [0.2, -0.3, 0.1]],
             np.float32)
T = np.array([[1.0, -1.0], [0.5, 2.0], [-0.5, 0.0], [0.25, 0.75]], np.float32)
W0 = np.array([[0.3, -0.2, 0.1], [-0.4, 0.5, 0.25]], np.float32)
B0 = np.array([0.1, -0.3], np.float32)
G_W = np.array([[0.2, -0.4, 1.0], [0.05, -0.6, 0.3]])  # the fixed gradients
G_B = np.array([-0.7, 0.25])


def make(text="", **fields):
    solver = Solver(prevent_snapshots(solver_param(text, **fields)))
    ip = solver.net.params["ip"]
    ip[0].data[...] = W0
    ip[1].data[...] = B0
    solver.net.blobs["x"].data[...] = X
    solver.net.blobs["t"].data[...] = T
    return solver


def fixed_gradient(solver, passes=None):
    """Replace forward/backward: each pass ACCUMULATES a known gradient, as layers do."""
    ip = solver.net.params["ip"]
    passes = passes or [(G_W, G_B)]
    state = {"n": 0}

    def forward_backward():
        gw, gb = passes[state["n"] % len(passes)]
        state["n"] += 1
        ip[0].diff[...] += gw.astype(np.float32)
        ip[1].diff[...] += gb.astype(np.float32)
        return 1.0

    solver.net.forward_backward = forward_backward


def params(solver):
    ip = solver.net.params["ip"]
    return ip[0].data.astype(np.float64), ip[1].data.astype(np.float64)


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)


def euclid_gradient(w, b):
    y = X.astype(np.float64) @ w.T + b
    dy = (y - T) / X.shape[0]
    return dy.T @ X, dy.sum(0)


# -- the real gradient, SGD with momentum, multipliers and L2 decay ---------------------------
def test_sgd_two_steps_with_momentum_lr_mult_and_decay_mult():
    lr, m, wd = 0.1, 0.9, 0.01
    solver = make(base_lr=lr, momentum=m, weight_decay=wd)
    w, b = W0.astype(np.float64), B0.astype(np.float64)
    hw, hb = np.zeros_like(w), np.zeros_like(b)
    for _ in range(2):
        gw, gb = euclid_gradient(w, b)
        hw = m * hw + lr * 1 * (gw + wd * 1 * w)  # weights: lr_mult 1, decay_mult 1
        hb = m * hb + lr * 2 * (gb + wd * 0 * b)  # bias: lr_mult 2, decay_mult 0
        w, b = w - hw, b - hb
        solver.step(1)
        close(params(solver)[0], w)
        close(params(solver)[1], b)
    hist = solver.history_blobs()
    close(hist[0], hw)
    close(hist[1], hb)


# -- each rule's first update, by `type` and by the legacy `solver_type` enum -----------------
def first_update(kind, g, lr, p):
    """The first update Caffe subtracts, with zero history (float64)."""
    if kind == "SGD":
        return lr * g
    if kind == "Nesterov":
        return (1 + p["momentum"]) * lr * g
    if kind == "AdaGrad":
        return lr * g / (np.sqrt(g * g) + p["delta"])
    if kind == "RMSProp":
        return lr * g / (np.sqrt((1 - p["rms_decay"]) * g * g) + p["delta"])
    if kind == "AdaDelta":
        h = (1 - p["momentum"]) * g * g
        return lr * g * np.sqrt(p["delta"] / (h + p["delta"]))
    if kind == "Adam":
        b1, b2 = p["momentum"], p["momentum2"]
        mt, vt = (1 - b1) * g, (1 - b2) * g * g
        return lr * np.sqrt(1 - b2) / (1 - b1) * mt / (np.sqrt(vt) + p["delta"])
    raise AssertionError(kind)


SETTINGS = {
    "SGD": {"momentum": 0.9},
    "Nesterov": {"momentum": 0.8},
    "AdaGrad": {"delta": 1e-3},
    "RMSProp": {"rms_decay": 0.95, "delta": 1e-4},
    "AdaDelta": {"momentum": 0.9, "delta": 1e-2},
    "Adam": {"momentum": 0.9, "momentum2": 0.99, "delta": 1e-3},
}
ENUM = {"SGD": "SGD", "Nesterov": "NESTEROV", "AdaGrad": "ADAGRAD", "RMSProp": "RMSPROP",
        "AdaDelta": "ADADELTA", "Adam": "ADAM"}


@pytest.mark.parametrize("spelling", ["type", "solver_type"])
@pytest.mark.parametrize("kind", list(SETTINGS))
def test_first_update_of_each_type(kind, spelling):
    p = SETTINGS[kind]
    fields = " ".join(f"{k}: {v}" for k, v in p.items())
    named = f'type: "{kind}"' if spelling == "type" else f"solver_type: {ENUM[kind]}"
    lr = 0.05
    solver = make(f"{named} {fields} base_lr: {lr}")
    assert solver.type == kind
    fixed_gradient(solver)
    solver.step(1)
    w, b = params(solver)
    close(w, W0 - first_update(kind, G_W, lr * 1, p))
    close(b, B0 - first_update(kind, G_B, lr * 2, p))


def test_solver_type_and_type_together_is_an_error():
    with pytest.raises(Exception, match="cannot both be specified"):
        make('type: "Adam" solver_type: NESTEROV')


def test_adam_second_update_uses_bias_correction_of_step_two():
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    solver = make(f'type: "Adam" momentum: {b1} momentum2: {b2} delta: {eps} base_lr: {lr}')
    g2w = G_W * -0.5 + 0.1
    fixed_gradient(solver, passes=[(G_W, G_B), (g2w, G_B)])
    solver.step(2)
    m = b1 * (1 - b1) * G_W + (1 - b1) * g2w
    v = b2 * (1 - b2) * G_W ** 2 + (1 - b2) * g2w ** 2
    u1 = first_update("Adam", G_W, lr, {"momentum": b1, "momentum2": b2, "delta": eps})
    u2 = lr * np.sqrt(1 - b2 ** 2) / (1 - b1 ** 2) * m / (np.sqrt(v) + eps)
    close(params(solver)[0], W0 - u1 - u2)


def test_adadelta_second_update_uses_both_histories():
    m, d, lr = 0.9, 1e-2, 1.0
    solver = make(f'type: "AdaDelta" momentum: {m} delta: {d} base_lr: {lr}')
    fixed_gradient(solver)
    solver.step(2)
    g = G_W
    h1 = (1 - m) * g * g
    s1 = g * np.sqrt(d / (h1 + d))
    u1 = (1 - m) * s1 * s1
    h2 = m * h1 + (1 - m) * g * g
    s2 = g * np.sqrt((u1 + d) / (h2 + d))
    close(params(solver)[0], W0 - lr * s1 - lr * s2)
    hist = solver.history_blobs()
    close(hist[0], h2)  # running mean of squared gradients (weights)
    close(hist[2], m * u1 + (1 - m) * s2 * s2)  # running mean of squared updates (weights)


# -- regularisation, clipping, iter_size ------------------------------------------------------
def test_l2_and_l1_regularization_times_decay_mult():
    lr, wd = 0.1, 0.05
    for reg in ("L2", "L1"):
        solver = make(f'regularization_type: "{reg}" base_lr: {lr} weight_decay: {wd}')
        fixed_gradient(solver)
        solver.step(1)
        term = W0 if reg == "L2" else np.sign(W0)
        close(params(solver)[0], W0 - lr * (G_W + wd * term))
        close(params(solver)[1], B0 - 2 * lr * G_B)  # decay_mult 0 on the bias


def test_l1_uses_sign_zero_at_zero():
    solver = make('regularization_type: "L1" base_lr: 1 weight_decay: 0.5')
    solver.net.params["ip"][0].data[0, 0] = 0.0
    fixed_gradient(solver, passes=[(np.zeros((2, 3)), np.zeros(2))])
    solver.step(1)
    w = params(solver)[0]
    assert w[0, 0] == 0.0
    close(w[1, 1], W0[1, 1] - 0.5)


def test_clip_gradients_scales_by_the_global_l2_norm_before_regularization():
    lr, clip, wd = 0.1, 0.5, 0.01
    solver = make(f"base_lr: {lr} clip_gradients: {clip} weight_decay: {wd}")
    fixed_gradient(solver)
    solver.step(1)
    norm = np.sqrt((G_W ** 2).sum() + (G_B ** 2).sum())
    assert norm > clip
    s = clip / norm
    close(params(solver)[0], W0 - lr * (s * G_W + wd * W0))
    close(params(solver)[1], B0 - 2 * lr * s * G_B)


def test_clip_gradients_leaves_small_gradients_alone():
    solver = make("base_lr: 0.1 clip_gradients: 100")
    fixed_gradient(solver)
    solver.step(1)
    close(params(solver)[0], W0 - 0.1 * G_W)


def test_iter_size_accumulates_then_divides_and_clips_the_sum():
    lr, k = 0.1, 3
    passes = [(G_W * (j + 1), G_B * (1 - j)) for j in range(k)]
    solver = make(f"base_lr: {lr} iter_size: {k} momentum: 0.9")
    fixed_gradient(solver, passes)
    losses = iter([2.0, 4.0, 9.0])
    inner = solver.net.forward_backward
    solver.net.forward_backward = lambda: (inner(), next(losses))[1]
    solver.step(1)
    gw = sum(p[0] for p in passes) / k
    gb = sum(p[1] for p in passes) / k
    close(params(solver)[0], W0 - lr * gw)
    close(params(solver)[1], B0 - 2 * lr * gb)
    assert solver.smoothed_loss == pytest.approx(5.0)

    # Clipping applies to the accumulated sum, before the division (Caffe's order).
    solver = make(f"base_lr: {lr} iter_size: {k} clip_gradients: 1")
    fixed_gradient(solver, passes)
    solver.step(1)
    sw, sb = sum(p[0] for p in passes), sum(p[1] for p in passes)
    s = 1 / np.sqrt((sw ** 2).sum() + (sb ** 2).sum())
    close(params(solver)[0], W0 - lr * s * sw / k)


def test_lr_mult_zero_freezes_a_parameter():
    net = EUCLID_NET.replace("param { lr_mult: 2 decay_mult: 0 }",
                             "param { lr_mult: 0 decay_mult: 0 }")
    solver = Solver(prevent_snapshots(solver_param("base_lr: 0.1", net=net)))
    solver.net.params["ip"][1].data[...] = B0
    fixed_gradient(solver)
    solver.step(1)
    np.testing.assert_array_equal(solver.net.params["ip"][1].data, B0)


# -- impossible settings ----------------------------------------------------------------------
@pytest.mark.parametrize("text, match", [
    ('type: "Adamax"', "unknown solver type 'Adamax'"),
    ('regularization_type: "L3"', "unknown regularization_type"),
    ("iter_size: 0", "iter_size must be at least 1"),
    ('type: "AdaGrad" momentum: 0.9', "momentum cannot be used with AdaGrad"),
    ('type: "RMSProp" rms_decay: 1.5', "rms_decay must lie in"),
    ('lr_policy: "triangle"', "unknown lr_policy 'triangle'"),
])
def test_impossible_settings_name_the_field(text, match):
    param = solver_param(text)
    with pytest.raises(SolverError, match=match):
        Solver(prevent_snapshots(param))


def test_missing_lr_policy_is_explained():
    param = caffe_pb2.SolverParameter()
    text_format.Parse(EUCLID_NET, param.net_param)
    with pytest.raises(SolverError, match="sets no lr_policy"):
        Solver(prevent_snapshots(param))
