"""Solvers: the training loop and Caffe's update rules."""

from .signals import SignalHandler
from .solver import Solver, get_solver

__all__ = ["Solver", "SignalHandler", "get_solver"]
