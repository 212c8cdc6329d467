"""Neuron layers: one bottom, one top of the same shape, element by element.

Every one works in place (top is bottom).  Backward then cannot read the input
that forward overwrote, so each layer either derives its gradient from the top
(Sigmoid, TanH, Exp, Swish; ReLU and ELU while the sign of x survives in y), keeps
its own state (Dropout's draws), or -- where the gradient needs x itself --
copies the input aside before overwriting it, as Caffe's PReLU does.  (Caffe
refuses in-place AbsVal and silently mis-computes in-place Clip/BNLL/Log/Power;
here they are exact.)
"""

import math

import numpy as np

from ..errors import LayerError, ShapeError
from ..fillers import fill
from ..kernels import neuron as K
from ..layer import Layer, register

TRAIN = 0
f32 = np.float32


def flat(a):
    """The 1-D view the kernels take (blobs are C-contiguous: no copy)."""
    return a.reshape(-1)


class NeuronLayer(Layer):
    """Base: shapes the top like the bottom and keeps the input for backward when
    forward runs in place and ``backward_reads_input()``."""

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1
    _kept = None

    def backward_reads_input(self):
        """Whether backward needs x itself (not recoverable from the top)."""
        return False

    def reshape(self, bottom, top):
        top[0].reshape_like(bottom[0])
        if bottom[0] is top[0] and self.backward_reads_input():
            n = bottom[0].count
            if self._kept is None or self._kept.size < n:
                self._kept = np.empty(n, np.float32)

    def input_for_forward(self, bottom, top):
        """Flat x; in place, also copied aside first when backward will need it."""
        x = flat(bottom[0].data)
        if bottom[0] is top[0] and self.backward_reads_input():
            self._kept[: x.size] = x
        return x

    def input_for_backward(self, bottom, top):
        """The x forward saw: the kept copy in place, else the bottom itself."""
        if bottom[0] is top[0] and self.backward_reads_input():
            return self._kept[: bottom[0].count]
        return flat(bottom[0].data)


@register("ReLU")
class ReLU(NeuronLayer):
    """y = max(x, 0) + negative_slope * min(x, 0); dx = dy * (x > 0 ? 1 : slope)."""

    def setup(self, bottom, top):
        self.negative_slope = f32(self.layer_param.relu_param.negative_slope)

    def backward_reads_input(self):
        return self.negative_slope < 0  # a negative slope flips the sign in y

    def forward(self, bottom, top):
        K.relu_forward(self.input_for_forward(bottom, top), flat(top[0].data),
                       self.negative_slope)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K.relu_backward(self.input_for_backward(bottom, top), flat(top[0].diff),
                            flat(bottom[0].diff), self.negative_slope)


@register("Sigmoid")
class Sigmoid(NeuronLayer):
    """y = 1 / (1 + e^-x); dx = dy * y * (1 - y)."""

    def forward(self, bottom, top):
        K.sigmoid_forward(flat(bottom[0].data), flat(top[0].data))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K.sigmoid_backward(flat(top[0].data), flat(top[0].diff), flat(bottom[0].diff))


@register("TanH")
class TanH(NeuronLayer):
    """y = tanh(x); dx = dy * (1 - y^2)."""

    def forward(self, bottom, top):
        K.tanh_forward(flat(bottom[0].data), flat(top[0].data))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K.tanh_backward(flat(top[0].data), flat(top[0].diff), flat(bottom[0].diff))


@register("AbsVal")
class AbsVal(NeuronLayer):
    """y = |x|; dx = sign(x) * dy."""

    def backward_reads_input(self):
        return True

    def forward(self, bottom, top):
        K.absval_forward(self.input_for_forward(bottom, top), flat(top[0].data))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K.absval_backward(self.input_for_backward(bottom, top), flat(top[0].diff),
                              flat(bottom[0].diff))


@register("BNLL")
class BNLL(NeuronLayer):
    """Binomial normal log likelihood, y = log(1 + e^x); dx = dy * e^x / (1 + e^x)."""

    def backward_reads_input(self):
        return True

    def forward(self, bottom, top):
        K.bnll_forward(self.input_for_forward(bottom, top), flat(top[0].data))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K.bnll_backward(self.input_for_backward(bottom, top), flat(top[0].diff),
                            flat(bottom[0].diff))


@register("Clip")
class Clip(NeuronLayer):
    """y = max(min, min(x, max)); dx = dy where min <= x <= max, else 0."""

    def setup(self, bottom, top):
        p = self.layer_param.clip_param
        if not (p.HasField("min") and p.HasField("max")):
            raise LayerError(f"{self.describe()}: clip_param needs both min and max")
        self.min, self.max = f32(p.min), f32(p.max)

    def backward_reads_input(self):
        return True

    def forward(self, bottom, top):
        K.clip_forward(self.input_for_forward(bottom, top), flat(top[0].data),
                       self.min, self.max)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K.clip_backward(self.input_for_backward(bottom, top), flat(top[0].diff),
                            flat(bottom[0].diff), self.min, self.max)


@register("ELU")
class ELU(NeuronLayer):
    """y = x (x > 0), alpha * (e^x - 1) (x <= 0); dx = dy * (x > 0 ? 1 : y + alpha)."""

    def setup(self, bottom, top):
        self.alpha = f32(self.layer_param.elu_param.alpha)

    def backward_reads_input(self):
        return self.alpha < 0  # a negative alpha flips the sign in y

    def forward(self, bottom, top):
        K.elu_forward(self.input_for_forward(bottom, top), flat(top[0].data), self.alpha)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K.elu_backward(self.input_for_backward(bottom, top), flat(top[0].data),
                           flat(top[0].diff), flat(bottom[0].diff), self.alpha)


def _log_base(layer, base):
    """ln(base); Caffe's base -1 means e."""
    if base == -1:
        return 1.0
    if not base > 0:
        raise LayerError(f"{layer.describe()}: base must be strictly positive (or -1 for e), "
                         f"got {base}")
    return math.log(base)


@register("Exp")
class Exp(NeuronLayer):
    """y = base^(shift + scale * x) (base -1 means e); dx = dy * y * ln(base) * scale."""

    def setup(self, bottom, top):
        p = self.layer_param.exp_param
        log_base = _log_base(self, f32(p.base))
        self.inner_scale = f32(log_base * f32(p.scale))
        self.outer_scale = f32(1.0 if p.shift == 0 else math.exp(log_base * f32(p.shift)))

    def forward(self, bottom, top):
        K.exp_forward(flat(bottom[0].data), flat(top[0].data), self.inner_scale,
                      self.outer_scale)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K.exp_backward(flat(top[0].data), flat(top[0].diff), flat(bottom[0].diff),
                           self.inner_scale)


@register("Log")
class Log(NeuronLayer):
    """y = log_base(shift + scale * x) (base -1 means e);
    dx = dy * scale / (ln(base) * (shift + scale * x))."""

    def setup(self, bottom, top):
        p = self.layer_param.log_param
        log_base = _log_base(self, f32(p.base))
        if log_base == 0:
            raise LayerError(f"{self.describe()}: log_param.base 1 has no logarithm")
        self.base_scale = f32(1.0 / log_base)
        self.scale, self.shift = f32(p.scale), f32(p.shift)
        self.numerator = f32(self.scale * self.base_scale)

    def backward_reads_input(self):
        return True

    def forward(self, bottom, top):
        K.log_forward(self.input_for_forward(bottom, top), flat(top[0].data), self.scale,
                      self.shift, self.base_scale)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K.log_backward(self.input_for_backward(bottom, top), flat(top[0].diff),
                           flat(bottom[0].diff), self.scale, self.shift, self.numerator)


@register("Power")
class Power(NeuronLayer):
    """y = (shift + scale * x)^power; dx = dy * power * scale * (shift + scale x)^(power-1).

    As in Caffe: with power * scale == 0 the output is the constant shift^power (1 for
    power 0) and the gradient 0; power 1 has the constant gradient scale.
    """

    def setup(self, bottom, top):
        p = self.layer_param.power_param
        self.power, self.scale, self.shift = f32(p.power), f32(p.scale), f32(p.shift)
        self.diff_scale = f32(self.power * self.scale)

    def _constant_gradient(self):
        return self.diff_scale == 0 or self.power == 1

    def backward_reads_input(self):
        return not self._constant_gradient()

    def forward(self, bottom, top):
        if self.diff_scale == 0:
            with np.errstate(invalid="ignore", divide="ignore"):
                value = f32(1.0) if self.power == 0 else np.power(self.shift, self.power)
            top[0].data[...] = value
            return
        K.power_forward(self.input_for_forward(bottom, top), flat(top[0].data), self.power,
                        self.scale, self.shift)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, dx = flat(top[0].diff), flat(bottom[0].diff)
        if self._constant_gradient():
            K.scale_backward(dy, dx, self.diff_scale)
            return
        x = self.input_for_backward(bottom, top)
        if self.power == 2:
            K.square_backward(x, dy, dx, f32(self.diff_scale * self.scale),
                              f32(self.diff_scale * self.shift))
        else:
            K.power_backward(x, flat(top[0].data), dy, dx, self.power, self.scale, self.shift)


@register("Swish")
class Swish(NeuronLayer):
    """y = x * sigmoid(beta x); dx = dy * (beta y + sigmoid(beta x) * (1 - beta y))."""

    def setup(self, bottom, top):
        self.beta = f32(self.layer_param.swish_param.beta)
        self._sigmoid = np.empty(0, np.float32)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if self._sigmoid.size < bottom[0].count:
            self._sigmoid = np.empty(bottom[0].count, np.float32)

    def forward(self, bottom, top):
        x = flat(bottom[0].data)
        K.swish_forward(x, flat(top[0].data), self._sigmoid[: x.size], self.beta)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y = flat(top[0].data)
            K.swish_backward(y, self._sigmoid[: y.size], flat(top[0].diff),
                             flat(bottom[0].diff), self.beta)


@register("Threshold")
class Threshold(NeuronLayer):
    """y = 1 where x > threshold, else 0.  A step has no useful gradient: as in Caffe,
    there is no backward."""

    def setup(self, bottom, top):
        self.threshold = f32(self.layer_param.threshold_param.threshold)

    def forward(self, bottom, top):
        K.threshold_forward(flat(bottom[0].data), flat(top[0].data), self.threshold)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            raise LayerError(f"{self.describe()}: Threshold has no backward (as in Caffe); "
                             "nothing that needs a gradient may depend on it")


@register("Dropout")
class Dropout(NeuronLayer):
    """TRAIN: keep each unit with probability 1 - dropout_ratio and scale the kept ones
    by 1 / (1 - dropout_ratio), so TEST is the identity.  Backward uses the same draws."""

    def setup(self, bottom, top):
        ratio = float(self.layer_param.dropout_param.dropout_ratio)
        if not 0.0 < ratio < 1.0:
            raise LayerError(f"{self.describe()}: dropout_ratio must be in (0, 1), got {ratio}")
        self.ratio = f32(ratio)
        self.scale = f32(1.0 / (1.0 - ratio))
        self._draws = np.empty(0, np.float32)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if self._draws.size < bottom[0].count:
            self._draws = np.empty(bottom[0].count, np.float32)

    def forward(self, bottom, top):
        x, y = flat(bottom[0].data), flat(top[0].data)
        if self.phase != TRAIN:
            if top[0] is not bottom[0]:
                y[...] = x
            return
        u = self._draws[: x.size]
        self.rng.random(out=u, dtype=np.float32)
        K.dropout_forward(x, u, y, self.ratio, self.scale)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, dx = flat(top[0].diff), flat(bottom[0].diff)
        if self.phase != TRAIN:
            if top[0] is not bottom[0]:
                dx[...] = dy
            return
        K.dropout_backward(self._draws[: dy.size], dy, dx, self.ratio, self.scale)


@register("PReLU")
class PReLU(NeuronLayer):
    """ReLU with a learned negative slope per channel (axis 1), or one shared slope.

    y = max(x, 0) + a_c * min(x, 0); dx = dy * (x > 0 ? 1 : a_c);
    da_c += sum over x <= 0 of dy * x.  Slopes start at 0.25 unless a filler is given.
    """

    def setup(self, bottom, top):
        p = self.layer_param.prelu_param
        b = bottom[0]
        if b.num_axes < 2:
            raise ShapeError(f"{self.describe()}: bottom '{b.name}' {b.shape} needs at least 2 "
                             "axes (PReLU's slopes run along axis 1)")
        self.channel_shared = bool(p.channel_shared)
        slopes = self.new_param_blob(() if self.channel_shared else (b.shape[1],))
        if p.HasField("filler"):
            fill(slopes.data, p.filler, self.rng)
        else:
            slopes.data[...] = 0.25
        self.param_propagate_down = [True]

    def backward_reads_input(self):
        return True

    def reshape(self, bottom, top):
        b = bottom[0]
        if b.num_axes < 2:
            raise ShapeError(f"{self.describe()}: bottom '{b.name}' {b.shape} needs at least 2 "
                             "axes (PReLU's slopes run along axis 1)")
        if not self.channel_shared and b.shape[1] != self.blobs[0].count:
            raise ShapeError(f"{self.describe()}: bottom '{b.name}' {b.shape} has {b.shape[1]} "
                             f"channels but the layer has {self.blobs[0].count} slopes")
        super().reshape(bottom, top)

    def _view(self, a, blob):
        return a.reshape(blob.shape[0], blob.shape[1], blob.count_range(2))

    def forward(self, bottom, top):
        b = bottom[0]
        x = self._view(self.input_for_forward(bottom, top), b)
        K.prelu_forward(x, self._view(top[0].data, b), flat(self.blobs[0].data),
                        self.channel_shared)

    def backward(self, top, propagate_down, bottom):
        want_slope = bool(self.param_propagate_down[0]) if self.param_propagate_down else True
        if not (propagate_down[0] or want_slope):
            return
        b = bottom[0]
        x = self._view(self.input_for_backward(bottom, top), b)
        K.prelu_backward(x, self._view(top[0].diff, b), self._view(b.diff, b),
                         flat(self.blobs[0].data), flat(self.blobs[0].diff),
                         self.channel_shared, bool(propagate_down[0]), want_slope)
