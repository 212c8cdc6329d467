"""Normalisation layers: LRN, MVN, BatchNorm."""

import numpy as np

from ..errors import LayerError, ShapeError
from ..kernels import norm as K
from ..layer import Layer, register
from ..proto import caffe_pb2
from .softmax import reuse

ACROSS_CHANNELS, WITHIN_CHANNEL = 0, 1  # LRNParameter.NormRegion
PARALLEL_MIN_COUNT = 1 << 18  # below this, starting threads costs more than it saves


def _in_place(bottom, top):
    return top[0] is bottom[0] or np.shares_memory(top[0].data, bottom[0].data)


@register("LRN")
class LRN(Layer):
    """Local response normalisation, y = x * scale^-beta.

    ACROSS_CHANNELS: scale = k + alpha/n * sum of x^2 over the n channels centred on c.
    WITHIN_CHANNEL: scale = 1 + alpha/n^2 * sum of x^2 over the n x n spatial window
    centred on (h, w), zero-padded (Caffe's square/AVE-pool/power/product chain; ``k``
    plays no part there).  ``local_size`` n must be odd.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1
    scale = None
    scratch = None
    saved_x = None
    saved_dy = None

    def setup(self, bottom, top):
        p = self.layer_param.lrn_param
        self.size = int(p.local_size)
        if self.size < 1 or self.size % 2 == 0:
            raise LayerError(f"{self.describe()}: lrn_param.local_size must be a positive odd "
                             f"number (LRN only supports odd sizes), got {self.size}")
        self.alpha = np.float32(p.alpha)
        self.beta = np.float32(p.beta)
        self.k = np.float32(p.k)
        self.region = int(p.norm_region)
        if self.region not in (ACROSS_CHANNELS, WITHIN_CHANNEL):
            raise LayerError(f"{self.describe()}: unknown lrn_param.norm_region {self.region}")

    def reshape(self, bottom, top):
        b = bottom[0]
        if b.num_axes != 4:
            raise ShapeError(f"{self.describe()}: input must have 4 axes (num, channels, height, "
                             f"width); bottom '{b.name}' has shape {b.shape}")
        n, c, h, w = b.shape
        top[0].reshape(b.shape)
        self.scale = reuse(self.scale, b.shape)
        if self.region == ACROSS_CHANNELS:
            self.view = (n, c, h * w)
            self.scratch = reuse(self.scratch, (n, h * w))
        else:
            self.view = (n * c, h, w)
            self.scratch = reuse(self.scratch, (3, h, w))
        self.parallel = n > 1 and b.count >= PARALLEL_MIN_COUNT
        if _in_place(bottom, top):
            self.saved_x = reuse(self.saved_x, b.shape)
            self.saved_dy = reuse(self.saved_dy, b.shape)

    def forward(self, bottom, top):
        x = bottom[0].data
        if _in_place(bottom, top):  # backward needs x, which the output overwrites
            np.copyto(self.saved_x, x)
        x = x.reshape(self.view)
        y = top[0].data.reshape(self.view)
        scale = self.scale.reshape(self.view)
        if self.region == ACROSS_CHANNELS:
            run = K.lrn_across_forward_parallel if self.parallel else K.lrn_across_forward
            run(y, scale, x, self.size, np.float32(self.alpha / self.size), self.k, self.beta)
        else:
            K.lrn_within_forward(y, scale, x, self.scratch, self.size, self.alpha, self.beta)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x, dy = bottom[0].data, top[0].diff
        if _in_place(bottom, top):
            x = self.saved_x
            np.copyto(self.saved_dy, dy)
            dy = self.saved_dy
        v = self.view
        dx, dy, x = bottom[0].diff.reshape(v), dy.reshape(v), x.reshape(v)
        y, scale = top[0].data.reshape(v), self.scale.reshape(v)
        if self.region == ACROSS_CHANNELS:
            run = K.lrn_across_backward_parallel if self.parallel else K.lrn_across_backward
            ratio = np.float32(2.0 * self.alpha * self.beta / self.size)
            run(dx, dy, x, y, scale, self.scratch, self.size, ratio, self.beta)
        else:
            K.lrn_within_backward(dx, dy, x, y, scale, self.scratch, self.size, self.alpha,
                                  self.beta)


@register("MVN")
class MVN(Layer):
    """Mean-variance normalisation per image and channel (or per image, across_channels).

    y = (x - mean) / (std + eps) with ``normalize_variance`` (eps added to the standard
    deviation, as Caffe does), else y = x - mean.  Backward uses the top data (Caffe's
    formula), so it works in place.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1
    std = None

    def setup(self, bottom, top):
        p = self.layer_param.mvn_param
        self.normalize_variance = bool(p.normalize_variance)
        self.across_channels = bool(p.across_channels)
        self.eps = np.float32(p.eps)

    def reshape(self, bottom, top):
        b = bottom[0]
        rows = max(1, b.num if self.across_channels else b.num * b.channels)
        top[0].reshape(b.shape)
        self.view = (rows, b.count // rows)
        self.std = reuse(self.std, (rows,))

    def forward(self, bottom, top):
        K.mvn_forward(top[0].data.reshape(self.view), bottom[0].data.reshape(self.view),
                      self.std, self.normalize_variance, self.eps)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K.mvn_backward(bottom[0].diff.reshape(self.view), top[0].diff.reshape(self.view),
                           top[0].data.reshape(self.view), self.std, self.normalize_variance)


@register("BatchNorm")
class BatchNorm(Layer):
    """y = (x - mean) / sqrt(var + eps) per channel (axis 1), over batch and space.

    Blobs: running mean, running variance, and their scale factor s (shape (1,)); the
    stored statistics are mean = blob0 / s, var = blob1 / s (s == 0 reads as 0).  With
    batch statistics (``use_global_stats`` false; default in TRAIN) forward also updates
    them: s = f s + 1, blob0 = mean + f blob0, blob1 = m/(m-1) var + f blob1, with f the
    moving_average_fraction and m the values per channel.  The blobs are not learned:
    their lr_mult is forced to 0 and backward never writes their diffs.
    Backward (batch statistics): dx = (dy - mean(dy) - y mean(dy y)) / sqrt(var + eps);
    (stored statistics): dx = dy / sqrt(var + eps).  Works in place.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1
    x_norm = None
    stats = None
    sums = None

    def setup(self, bottom, top):
        p = self.layer_param.batch_norm_param
        self.moving_average_fraction = np.float32(p.moving_average_fraction)
        self.use_global_stats = self.phase == caffe_pb2.TEST
        if p.HasField("use_global_stats"):
            self.use_global_stats = bool(p.use_global_stats)
        b = bottom[0]
        if b.num_axes == 0:
            raise ShapeError(f"{self.describe()}: bottom '{b.name}' needs at least one axis")
        self.channels = 1 if b.num_axes == 1 else b.shape[1]
        self.eps = np.float32(p.eps)
        if not self.blobs:
            self.new_param_blob((self.channels,))
            self.new_param_blob((self.channels,))
            self.new_param_blob((1,))
        # The statistics are not learnable: lr_mult 0, as Caffe forces.
        specs = self.layer_param.param
        for i in range(len(self.blobs)):
            if len(specs) == i:
                specs.add().lr_mult = 0.0
            elif specs[i].lr_mult != 0:
                raise LayerError(f"{self.describe()}: cannot configure batch normalization "
                                 f"statistics as layer parameters (param {i} has lr_mult "
                                 f"{specs[i].lr_mult:g}; it must be 0)")
        self.param_propagate_down = [False] * len(self.blobs)

    def reshape(self, bottom, top):
        b = bottom[0]
        if b.num_axes >= 2 and b.shape[1] != self.channels:
            raise ShapeError(f"{self.describe()}: bottom '{b.name}' {b.shape} has {b.shape[1]} "
                             f"channels; the layer was set up for {self.channels}")
        top[0].reshape(b.shape)
        num = b.shape[0]
        spatial = b.count // (num * self.channels) if num * self.channels else 0
        self.view = (num, self.channels, spatial)
        self.stats = reuse(self.stats, (3, self.channels))  # mean, var, std
        self.sums = reuse(self.sums, (2, self.channels), np.float64)
        if not self.use_global_stats:
            self.x_norm = reuse(self.x_norm, self.view)

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.view)
        mean, var, std = self.stats
        if self.use_global_stats:
            s = self.blobs[2].data[0]
            factor = np.float32(0.0) if s == 0 else np.float32(1.0) / s
            np.multiply(self.blobs[0].data, factor, out=mean)
            np.multiply(self.blobs[1].data, factor, out=var)
        else:
            K.batch_norm_stats(mean, var, x)
            self.update_running_stats(mean, var, bottom[0].count)
        np.add(var, self.eps, out=std)
        np.sqrt(std, out=std)
        keep = not self.use_global_stats
        K.batch_norm_forward(top[0].data.reshape(self.view),
                             self.x_norm if keep else x, x, mean, std, keep)

    def update_running_stats(self, mean, var, count):
        f = self.moving_average_fraction
        m0, v0, s = (blob.data for blob in self.blobs)
        s *= f
        s += np.float32(1.0)
        m0 *= f
        m0 += mean
        m = count // self.channels
        correction = np.float32(m / (m - 1)) if m > 1 else np.float32(1.0)
        v0 *= f
        v0 += correction * var

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dx = bottom[0].diff.reshape(self.view)
        dy = top[0].diff.reshape(self.view)
        std = self.stats[2]
        if self.use_global_stats:
            K.batch_norm_backward_global(dx, dy, std)
        else:
            K.batch_norm_backward(dx, dy, self.x_norm, std, self.sums)
