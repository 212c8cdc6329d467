"""Solvers: the training loop and Caffe's update rules."""

from .solver import SignalHandler, Solver, get_solver

__all__ = ["Solver", "SignalHandler", "get_solver"]
