"""Accuracy: the fraction of labels found among the top-k scores (forward only)."""

import numpy as np

from ..errors import LayerError, ShapeError
from ..kernels import loss as K
from ..layer import Layer, register
from .shape import canonical_axis
from .softmax import reuse, softmax_view


@register("Accuracy")
class Accuracy(Layer):
    """Top-k accuracy of scores (bottom 0) along ``accuracy_param.axis`` against labels.

    A prediction counts as correct when fewer than ``top_k`` classes score at least as
    high as the true class (other classes tying with it count against it).  Labels equal
    to ``ignore_label`` are skipped; with no counted label the accuracy is 0.  Optional
    top 1: the accuracy per class (0 for classes that never occur).  No gradient.
    """

    exact_num_bottom_blobs = 2
    min_top_blobs = 1
    max_top_blobs = 2
    hits = None

    def allow_force_backward(self, bottom_index):
        return False

    def setup(self, bottom, top):
        p = self.layer_param.accuracy_param
        self.top_k = int(p.top_k)
        self.axis_param = int(p.axis)
        self.has_ignore = p.HasField("ignore_label")
        self.ignore_label = int(p.ignore_label)

    def reshape(self, bottom, top):
        scores, labels = bottom
        if labels.count == 0 or self.top_k > scores.count // labels.count:
            raise LayerError(f"{self.describe()}: accuracy_param.top_k {self.top_k} must be at "
                             f"most the number of classes: bottom '{scores.name}' "
                             f"{scores.shape}, bottom '{labels.name}' {labels.shape}")
        axis = canonical_axis(self, scores, self.axis_param, "accuracy_param.axis")
        self.view = softmax_view(scores, axis)
        outer, channels, inner = self.view
        if outer * inner != labels.count:
            raise ShapeError(
                f"{self.describe()}: number of labels must match number of predictions: "
                f"bottom '{scores.name}' {scores.shape} with axis {axis} needs {outer * inner} "
                f"labels, bottom '{labels.name}' {labels.shape} has {labels.count}")
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape((channels,))
        self.hits = reuse(self.hits, (2, channels))

    def forward(self, bottom, top):
        outer, channels, inner = self.view
        hits, count, bad = K.accuracy_forward(
            bottom[0].data.reshape(self.view), bottom[1].data.reshape(outer, inner), self.top_k,
            self.has_ignore, self.ignore_label, self.hits[0], self.hits[1])
        if bad >= 0:
            value = bottom[1].data.reshape(-1)[bad]
            raise LayerError(f"{self.describe()}: label {value:g} at position {bad} of bottom "
                             f"'{bottom[1].name}' {bottom[1].shape} is outside [0, {channels})")
        top[0].data[()] = hits / count if count else 0.0
        if len(top) > 1:
            class_hits, class_counts = self.hits
            np.divide(class_hits, class_counts, out=top[1].data, where=class_counts > 0)
            top[1].data[class_counts == 0] = 0.0
