"""Loss layers: SoftmaxWithLoss, SigmoidCrossEntropyLoss, InfogainLoss,
MultinomialLogisticLoss, EuclideanLoss, HingeLoss, ContrastiveLoss.

Every loss writes a scalar top (shape ()) and gets loss weight 1 by default.  Backward
scales the gradient by the top's diff, which the Net sets to the loss weight.
"""

import numpy as np

from ..errors import LayerError, ShapeError
from ..kernels import loss as K
from ..kernels import softmax as SK
from ..layer import Layer, register
from ..proto import caffe_pb2
from .shape import canonical_axis
from .softmax import reuse, softmax_view

FULL, VALID, BATCH_SIZE, NONE = 0, 1, 2, 3  # LossParameter.NormalizationMode


def normalization_mode(loss_param, default):
    """The mode, reading the legacy ``normalize`` flag when ``normalization`` is unset."""
    if loss_param.HasField("normalization"):
        return loss_param.normalization
    if loss_param.HasField("normalize"):
        return VALID if loss_param.normalize else BATCH_SIZE
    return default


def normalizer(mode, outer, inner, valid_count):
    """What the summed loss is divided by (never less than 1, as in Caffe)."""
    if mode == FULL:
        n = outer * inner
    elif mode == VALID:
        n = outer * inner if valid_count == -1 else valid_count
    elif mode == BATCH_SIZE:
        n = outer
    else:
        n = 1
    return float(max(1, n))


def read_blob_proto(path, layer):
    """The array stored in a binary BlobProto file (shape or legacy 4-D dims)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise LayerError(f"{layer.describe()}: cannot read infogain matrix '{path}': "
                         f"{exc.strerror}") from exc
    proto = caffe_pb2.BlobProto()
    try:
        proto.ParseFromString(raw)
    except Exception as exc:  # protobuf's DecodeError
        raise LayerError(f"{layer.describe()}: '{path}' is not a binary BlobProto") from exc
    values = proto.data if len(proto.data) else proto.double_data
    return np.asarray(values, np.float32)


class LossLayer(Layer):
    """Shared rules: two bottoms with the same first dimension, a scalar top, weight 1."""

    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1
    auto_top_blobs = True  # as Caffe's LossLayer: a loss layer with no top still counts
    no_gradient_bottoms = (1,)  # labels

    def default_loss_weight(self, top_index):
        return 1.0 if top_index == 0 else 0.0

    def allow_force_backward(self, bottom_index):
        return bottom_index not in self.no_gradient_bottoms

    def reshape(self, bottom, top):
        a, b = bottom[0], bottom[1]
        if a.num_axes == 0 or b.num_axes == 0 or a.shape[0] != b.shape[0]:
            raise ShapeError(f"{self.describe()}: the data and label should have the same "
                             f"first dimension: bottom '{a.name}' {a.shape}, bottom '{b.name}' "
                             f"{b.shape}")
        top[0].reshape(())

    def check_no_label_gradient(self, propagate_down, bottom):
        for i in self.no_gradient_bottoms:
            if i < len(propagate_down) and propagate_down[i]:
                raise LayerError(f"{self.describe()}: cannot backpropagate to bottom {i} "
                                 f"'{bottom[i].name}' (labels have no gradient); set "
                                 "propagate_down: false for it")

    def bad_label(self, bottom, index, channels):
        value = bottom[1].data.reshape(-1)[index]
        raise LayerError(f"{self.describe()}: label {value:g} at position {index} of bottom "
                         f"'{bottom[1].name}' {bottom[1].shape} is outside [0, {channels})")

    def loss_weight_of(self, top):
        return float(top[0].diff[()])


class _SoftmaxLossBase(LossLayer):
    """A loss on softmax probabilities along an axis, with an optional probability top."""

    exact_num_top_blobs = None
    min_top_blobs = 1
    max_top_blobs = 2
    prob = None
    scratch = None

    def read_loss_param(self, default_mode):
        lp = self.layer_param.loss_param
        self.has_ignore = lp.HasField("ignore_label")
        self.ignore_label = int(lp.ignore_label)
        self.mode = normalization_mode(lp, default_mode)

    def reshape_softmax(self, bottom, top, axis_param, param_name):
        LossLayer.reshape(self, bottom, top)
        self.axis = canonical_axis(self, bottom[0], axis_param, param_name)
        self.view = softmax_view(bottom[0], self.axis)
        outer, _, inner = self.view
        if outer * inner != bottom[1].count:
            raise ShapeError(
                f"{self.describe()}: number of labels must match number of predictions: "
                f"bottom '{bottom[0].name}' {bottom[0].shape} with {param_name} {self.axis} "
                f"needs {outer * inner} labels, bottom '{bottom[1].name}' {bottom[1].shape} "
                f"has {bottom[1].count} (labels are integers in 0..{self.view[1] - 1})")
        self.prob = reuse(self.prob, self.view)
        self.scratch = reuse(self.scratch, (2, inner))
        if len(top) > 1:
            top[1].reshape(bottom[0].shape)

    def forward_softmax(self, bottom, top):
        SK.softmax_forward(self.prob, bottom[0].data.reshape(self.view), self.scratch[0],
                           self.scratch[1])
        if len(top) > 1:
            top[1].data.reshape(self.view)[...] = self.prob

    def labels(self, bottom):
        return bottom[1].data.reshape(self.view[0], self.view[2])

    def finish_forward(self, bottom, top, loss, count, bad):
        """Refuse a bad label, else write the normalized loss (kernels return the raw sum)."""
        if bad >= 0:
            self.bad_label(bottom, bad, self.view[1])
        self.valid_count = count
        outer, _, inner = self.view
        top[0].data[()] = loss / normalizer(self.mode, outer, inner, count)

    def gradient_scale(self, top):
        """loss_weight / the forward's normalizer, as float32 for the backward kernels."""
        outer, _, inner = self.view
        return np.float32(self.loss_weight_of(top)
                          / normalizer(self.mode, outer, inner, self.valid_count))


@register("SoftmaxWithLoss")
class SoftmaxWithLoss(_SoftmaxLossBase):
    """Multinomial logistic loss of the softmax of bottom 0 along ``softmax_param.axis``.

    loss = -sum log(max(p[label], FLT_MIN)) / normalizer, skipping ``ignore_label``;
    normalization VALID by default (legacy ``normalize: false`` = BATCH_SIZE).
    Gradient: (p - onehot(label)) * loss_weight / normalizer.  Optional top 1: p.
    """

    def setup(self, bottom, top):
        self.read_loss_param(VALID)
        self.axis_param = int(self.layer_param.softmax_param.axis)

    def reshape(self, bottom, top):
        self.reshape_softmax(bottom, top, self.axis_param, "softmax_param.axis")

    def forward(self, bottom, top):
        self.forward_softmax(bottom, top)
        loss, count, bad = K.softmax_loss_forward(self.prob, self.labels(bottom),
                                                  self.has_ignore, self.ignore_label)
        self.finish_forward(bottom, top, loss, count, bad)

    def backward(self, top, propagate_down, bottom):
        self.check_no_label_gradient(propagate_down, bottom)
        if propagate_down[0]:
            scale = self.gradient_scale(top)
            K.softmax_loss_backward(bottom[0].diff.reshape(self.view), self.prob,
                                    self.labels(bottom), self.has_ignore, self.ignore_label,
                                    scale)


@register("InfogainLoss")
class InfogainLoss(_SoftmaxLossBase):
    """Softmax loss weighted by an infogain matrix H (C x C) along ``infogain_loss_param.axis``.

    loss = -sum_l H[label, l] * log(max(p_l, 1e-20)) / normalizer, p = softmax(bottom 0);
    H comes from bottom 2 or from the BlobProto file ``infogain_loss_param.source``.
    Gradient: (p * sum_l H[label, l] - H[label, :]) * loss_weight / normalizer.
    With H = identity this is SoftmaxWithLoss.  Optional top 1: p.
    """

    exact_num_bottom_blobs = None
    min_bottom_blobs = 2
    max_bottom_blobs = 3
    no_gradient_bottoms = (1, 2)  # labels, infogain matrix
    row_sums = None

    def setup(self, bottom, top):
        lp = self.layer_param.loss_param
        if lp.HasField("normalize"):
            raise LayerError(f"{self.describe()}: loss_param.normalize is deprecated for "
                             "InfogainLoss; use loss_param.normalization")
        self.read_loss_param(VALID)
        p = self.layer_param.infogain_loss_param
        self.axis_param = int(p.axis)
        self.file_matrix = None
        if len(bottom) < 3:
            if not p.HasField("source") or not p.source:
                raise LayerError(f"{self.describe()}: the infogain matrix must come from a "
                                 "third bottom or infogain_loss_param.source")
            self.file_matrix = read_blob_proto(p.source, self)

    def matrix(self, bottom):
        flat = bottom[2].data.reshape(-1) if len(bottom) > 2 else self.file_matrix
        c = self.view[1]
        return flat.reshape(c, c)

    def reshape(self, bottom, top):
        self.reshape_softmax(bottom, top, self.axis_param, "infogain_loss_param.axis")
        c = self.view[1]
        count = bottom[2].count if len(bottom) > 2 else self.file_matrix.size
        if count != c * c:
            where = (f"bottom '{bottom[2].name}' {bottom[2].shape}" if len(bottom) > 2
                     else f"'{self.layer_param.infogain_loss_param.source}'")
            raise ShapeError(f"{self.describe()}: the infogain matrix {where} has {count} "
                             f"values; {c} labels need {c}x{c} = {c * c}")
        self.row_sums = reuse(self.row_sums, (c,))
        if len(bottom) < 3:
            K.infogain_row_sums(self.row_sums, self.matrix(bottom))

    def forward(self, bottom, top):
        self.forward_softmax(bottom, top)
        loss, count, bad = K.infogain_forward(self.prob, self.labels(bottom), self.matrix(bottom),
                                              self.has_ignore, self.ignore_label)
        self.finish_forward(bottom, top, loss, count, bad)

    def backward(self, top, propagate_down, bottom):
        self.check_no_label_gradient(propagate_down, bottom)
        if propagate_down[0]:
            h = self.matrix(bottom)
            if len(bottom) > 2:  # the matrix may change between passes
                K.infogain_row_sums(self.row_sums, h)
            scale = self.gradient_scale(top)
            K.infogain_backward(bottom[0].diff.reshape(self.view), self.prob, self.labels(bottom),
                                h, self.row_sums, self.has_ignore, self.ignore_label, scale)


@register("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLoss(LossLayer):
    """Cross-entropy of sigmoid(bottom 0) against targets in [0, 1] (bottom 1, same count).

    loss = -sum [t log s + (1 - t) log(1 - s)] / normalizer, computed without overflow;
    normalization BATCH_SIZE by default; ``ignore_label`` skips targets equal to it.
    Gradient: (sigmoid(x) - t) * loss_weight / normalizer.
    """

    def setup(self, bottom, top):
        lp = self.layer_param.loss_param
        self.has_ignore = lp.HasField("ignore_label")
        self.ignore_label = int(lp.ignore_label)
        self.mode = normalization_mode(lp, BATCH_SIZE)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise ShapeError(f"{self.describe()}: inputs must have the same count: bottom "
                             f"'{bottom[0].name}' {bottom[0].shape}, bottom '{bottom[1].name}' "
                             f"{bottom[1].shape}")
        self.outer = bottom[0].shape[0]
        self.inner = bottom[0].count_range(1)

    def forward(self, bottom, top):
        loss, valid = K.sigmoid_cross_entropy_forward(
            bottom[0].data.reshape(-1), bottom[1].data.reshape(-1), self.has_ignore,
            self.ignore_label)
        self.norm = normalizer(self.mode, self.outer, self.inner, valid)
        top[0].data[()] = loss / self.norm

    def backward(self, top, propagate_down, bottom):
        self.check_no_label_gradient(propagate_down, bottom)
        if propagate_down[0]:
            scale = np.float32(self.loss_weight_of(top) / self.norm)
            K.sigmoid_cross_entropy_backward(
                bottom[0].diff.reshape(-1), bottom[0].data.reshape(-1),
                bottom[1].data.reshape(-1), self.has_ignore, self.ignore_label, scale)


class _PerItemLoss(LossLayer):
    """Losses over (num, dim) predictions with one integer label per item."""

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.num = bottom[0].shape[0]
        self.dim = bottom[0].count // self.num if self.num else 0
        if bottom[1].count != self.num:
            raise ShapeError(f"{self.describe()}: needs one label per item: bottom "
                             f"'{bottom[0].name}' {bottom[0].shape}, bottom '{bottom[1].name}' "
                             f"{bottom[1].shape}")

    def rows(self, array):
        return array.reshape(self.num, self.dim)


@register("MultinomialLogisticLoss")
class MultinomialLogisticLoss(_PerItemLoss):
    """loss = -sum_i log(max(p[i, label_i], 1e-20)) / num for probabilities p (bottom 0).

    Gradient: -loss_weight / (num * max(p, 1e-20)) at each label, 0 elsewhere.
    """

    def forward(self, bottom, top):
        loss, bad = K.multinomial_logistic_forward(self.rows(bottom[0].data),
                                                   bottom[1].data.reshape(-1))
        if bad >= 0:
            self.bad_label(bottom, bad, self.dim)
        top[0].data[()] = loss / max(self.num, 1)

    def backward(self, top, propagate_down, bottom):
        self.check_no_label_gradient(propagate_down, bottom)
        if propagate_down[0]:
            scale = np.float32(self.loss_weight_of(top) / max(self.num, 1))
            K.multinomial_logistic_backward(self.rows(bottom[0].diff), self.rows(bottom[0].data),
                                            bottom[1].data.reshape(-1), scale)


@register("HingeLoss")
class HingeLoss(_PerItemLoss):
    """One-vs-all hinge: m = max(0, 1 + t * x), t = -1 at the label and +1 elsewhere.

    loss = sum m / num (L1, default) or sum m^2 / num (L2).
    Gradient: t * [m > 0] (L1) or 2 t m (L2), times loss_weight / num.
    """

    margin = None

    def setup(self, bottom, top):
        self.squared = self.layer_param.hinge_loss_param.norm == caffe_pb2.HingeLossParameter.L2

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.margin = reuse(self.margin, (self.num, self.dim))

    def forward(self, bottom, top):
        total, bad = K.hinge_forward(self.margin, self.rows(bottom[0].data),
                                     bottom[1].data.reshape(-1), self.squared)
        if bad >= 0:
            self.bad_label(bottom, bad, self.dim)
        top[0].data[()] = total / max(self.num, 1)

    def backward(self, top, propagate_down, bottom):
        self.check_no_label_gradient(propagate_down, bottom)
        if propagate_down[0]:
            factor = 2.0 if self.squared else 1.0
            scale = np.float32(self.loss_weight_of(top) * factor / max(self.num, 1))
            K.hinge_backward(self.rows(bottom[0].diff), self.margin, bottom[1].data.reshape(-1),
                             self.squared, scale)


@register("EuclideanLoss")
class EuclideanLoss(LossLayer):
    """loss = sum (a - b)^2 / (2 num).  Gradient: +-(a - b) * loss_weight / num to a and b."""

    no_gradient_bottoms = ()
    diff = None

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count_range(1) != bottom[1].count_range(1):
            raise ShapeError(f"{self.describe()}: inputs must have the same dimension: bottom "
                             f"'{bottom[0].name}' {bottom[0].shape}, bottom '{bottom[1].name}' "
                             f"{bottom[1].shape}")
        self.num = bottom[0].shape[0]
        self.diff = reuse(self.diff, (bottom[0].count,))

    def forward(self, bottom, top):
        dot = K.euclidean_forward(self.diff, bottom[0].data.reshape(-1),
                                  bottom[1].data.reshape(-1))
        top[0].data[()] = dot / max(self.num, 1) / 2.0

    def backward(self, top, propagate_down, bottom):
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                alpha = np.float32(sign * self.loss_weight_of(top) / max(self.num, 1))
                np.multiply(self.diff, alpha, out=bottom[i].diff.reshape(-1))


@register("ContrastiveLoss")
class ContrastiveLoss(LossLayer):
    """Siamese loss on feature pairs (a, b) with a similarity flag y (bottom 2).

    d = ||a - b||; loss = sum [y d^2 + (1 - y) max(margin - d, 0)^2] / (2 num)
    (``legacy_version``: max(margin - d^2, 0) for dissimilar pairs).
    Gradient to a and b (with opposite signs); none to y.
    """

    exact_num_bottom_blobs = 3
    no_gradient_bottoms = (2,)
    diff = None
    dist_sq = None

    def setup(self, bottom, top):
        p = self.layer_param.contrastive_loss_param
        self.margin = np.float32(p.margin)
        self.legacy = bool(p.legacy_version)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        a, b, y = bottom
        self.num = a.shape[0]
        self.dim = a.count_range(1)
        if b.count_range(1) != self.dim or y.count != self.num:
            raise ShapeError(f"{self.describe()}: needs two feature bottoms of the same shape "
                             f"and one similarity flag per pair: '{a.name}' {a.shape}, "
                             f"'{b.name}' {b.shape}, '{y.name}' {y.shape}")
        self.diff = reuse(self.diff, (self.num, self.dim))
        self.dist_sq = reuse(self.dist_sq, (self.num,))

    def forward(self, bottom, top):
        a, b, y = bottom
        loss = K.contrastive_forward(self.diff, self.dist_sq, a.data.reshape(self.num, self.dim),
                                     b.data.reshape(self.num, self.dim), y.data.reshape(-1),
                                     self.margin, self.legacy)
        top[0].data[()] = loss / max(self.num, 1) / 2.0

    def backward(self, top, propagate_down, bottom):
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                alpha = np.float32(sign * self.loss_weight_of(top) / max(self.num, 1))
                K.contrastive_backward(bottom[i].diff.reshape(self.num, self.dim), self.diff,
                                       self.dist_sq, bottom[2].data.reshape(-1), self.margin,
                                       self.legacy, alpha)
