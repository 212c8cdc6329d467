"""Caffe's learning-rate policies, computed in double and handed out as float32."""

import math

import numpy as np

from ..errors import SolverError
from ..log import logger

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


class LearningRate:
    """``rate(iter)``; keeps Caffe's ``current_step`` for multistep (saved in snapshots)."""

    def __init__(self, param):
        self.param = param
        self.policy = param.lr_policy
        self.current_step = 0
        if not self.policy:
            raise SolverError(f"the solver sets no lr_policy (one of {', '.join(POLICIES)}; "
                              "\"fixed\" keeps base_lr)")
        if self.policy not in POLICIES:
            raise SolverError(f"unknown lr_policy {self.policy!r} (known: {', '.join(POLICIES)})")
        if self.policy == "step" and param.stepsize <= 0:
            raise SolverError("lr_policy 'step' needs a positive stepsize")
        if self.policy == "multistep":
            values = list(param.stepvalue)
            if any(b <= a for a, b in zip(values, values[1:])):
                raise SolverError(f"multistep stepvalue must increase: {values}")
        if self.policy == "poly" and param.max_iter <= 0:
            raise SolverError("lr_policy 'poly' needs max_iter > 0")

    def rate(self, it):
        p = self.param
        base = float(np.float32(p.base_lr))
        gamma = float(np.float32(p.gamma))
        power = float(np.float32(p.power))
        if self.policy == "fixed":
            r = base
        elif self.policy == "step":
            self.current_step = it // p.stepsize
            r = base * gamma ** self.current_step
        elif self.policy == "exp":
            r = base * gamma ** it
        elif self.policy == "inv":
            r = base * (1.0 + gamma * it) ** (-power)
        elif self.policy == "multistep":
            while self.current_step < len(p.stepvalue) and it >= p.stepvalue[self.current_step]:
                self.current_step += 1
                logger.info("MultiStep Status: Iteration %d, step = %d", it, self.current_step)
            r = base * gamma ** self.current_step
        elif self.policy == "poly":
            r = base * (1.0 - it / float(p.max_iter)) ** power
        else:  # sigmoid
            r = base * (1.0 / (1.0 + math.exp(-gamma * (it - p.stepsize))))
        return float(np.float32(r))
