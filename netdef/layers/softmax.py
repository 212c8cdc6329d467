"""Softmax over one axis."""

import numpy as np

from ..kernels import softmax as K
from ..layer import Layer, register
from .shape import canonical_axis


def softmax_view(blob, axis):
    """(outer, channels, inner) sizes of ``blob`` around ``axis``."""
    return blob.count_range(0, axis), blob.shape[axis], blob.count_range(axis + 1)


def reuse(current, shape, dtype=np.float32):
    """``current`` when it already has ``shape`` and ``dtype``, else a new zeroed array.

    Layers keep their scratch arrays across reshapes so that the hot path allocates nothing.
    """
    shape = tuple(shape)
    if current is None or current.shape != shape or current.dtype != dtype:
        return np.zeros(shape, dtype)
    return current


@register("Softmax")
class Softmax(Layer):
    """y = exp(x - max x) / sum exp(x - max x) along ``softmax_param.axis`` (default 1).

    Backward: dx = (dy - sum_c dy * y) * y.  Works in place; backward needs only the top.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1
    scratch = None

    def setup(self, bottom, top):
        self.axis_param = int(self.layer_param.softmax_param.axis)

    def reshape(self, bottom, top):
        self.axis = canonical_axis(self, bottom[0], self.axis_param, "softmax_param.axis")
        self.view = softmax_view(bottom[0], self.axis)
        top[0].reshape(bottom[0].shape)
        self.scratch = reuse(self.scratch, (2, self.view[2]))

    def forward(self, bottom, top):
        K.softmax_forward(top[0].data.reshape(self.view), bottom[0].data.reshape(self.view),
                          self.scratch[0], self.scratch[1])

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K.softmax_backward(bottom[0].diff.reshape(self.view), top[0].diff.reshape(self.view),
                               top[0].data.reshape(self.view), self.scratch[0])
