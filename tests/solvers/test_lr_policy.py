"""Caffe's learning-rate policies against hand computations (and the Solver's use of them)."""

import math

import numpy as np
import pytest

from netdef.errors import SolverError
from netdef.proto import caffe_pb2
from netdef.solvers.lr_policy import LearningRate

BASE = 0.01


def f32(v):
    """Solver fields are float32 in the schema; Caffe computes with those values."""
    return float(np.float32(v))



def rate_fn(policy, **fields):
    p = caffe_pb2.SolverParameter(base_lr=BASE, lr_policy=policy, **fields)
    lr = LearningRate(p)
    return lr


ITERS = [0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 50, 99]

B = f32(BASE)
CASES = {
    "fixed": ({}, lambda it: B),
    "step": ({"gamma": 0.5, "stepsize": 3}, lambda it: B * 0.5 ** (it // 3)),
    "exp": ({"gamma": 0.9}, lambda it: B * f32(0.9) ** it),
    "inv": ({"gamma": 0.1, "power": 0.75},
            lambda it: B * (1 + f32(0.1) * it) ** -0.75),
    "multistep": ({"gamma": 0.1, "stepvalue": [2, 5, 10]},
                  lambda it: B * f32(0.1) ** sum(it >= s for s in (2, 5, 10))),
    "poly": ({"power": 2.0, "max_iter": 100}, lambda it: B * (1 - it / 100) ** 2),
    "sigmoid": ({"gamma": -0.5, "stepsize": 5},
                lambda it: B / (1 + math.exp(0.5 * (it - 5)))),
}


@pytest.mark.parametrize("policy", list(CASES))
def test_policy_matches_hand_computation(policy):
    fields, want = CASES[policy]
    lr = rate_fn(policy, **fields)
    for it in ITERS:
        assert lr.rate(it) == pytest.approx(want(it), rel=1e-6), (policy, it)


def test_step_and_multistep_keep_current_step():
    lr = rate_fn("step", gamma=0.5, stepsize=3)
    lr.rate(7)
    assert lr.current_step == 2
    lr = rate_fn("multistep", gamma=0.1, stepvalue=[2, 5, 10])
    for it in range(7):
        lr.rate(it)
    assert lr.current_step == 2
    # A restored current_step is where multistep continues (the snapshot keeps it).
    lr = rate_fn("multistep", gamma=0.1, stepvalue=[2, 5, 10])
    lr.current_step = 2
    assert lr.rate(6) == pytest.approx(BASE * 0.01)


@pytest.mark.parametrize("policy, fields, match", [
    ("step", {"gamma": 0.5}, "positive stepsize"),
    ("multistep", {"stepvalue": [5, 3]}, "must increase"),
    ("poly", {"power": 1.0}, "max_iter > 0"),
    ("cosine", {}, "unknown lr_policy 'cosine'"),
])
def test_impossible_policies(policy, fields, match):
    with pytest.raises(SolverError, match=match):
        rate_fn(policy, **fields)
