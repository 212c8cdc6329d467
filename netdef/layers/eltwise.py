"""Eltwise (PROD / SUM / MAX over equally shaped bottoms) and the broadcasting
Bias and Scale layers.

Bias and Scale apply an operand -- a learned parameter, or a second bottom --
whose shape matches the bottom's axes [axis, axis + num_axes); the bottom is
viewed as (outer, dim, inner) around those axes.  An operand with no axes is a
scalar.  All three work in place (top is a bottom).
"""

import numpy as np

from ..errors import LayerError, ShapeError
from ..fillers import fill
from ..kernels import eltwise as E
from ..layer import Layer, register
from .shape import canonical_axis

PROD, SUM, MAX = 0, 1, 2  # EltwiseParameter.EltwiseOp
_OP_NAMES = {PROD: "PROD", SUM: "SUM", MAX: "MAX"}
f32 = np.float32


def flat(a):
    return a.reshape(-1)


def _grow(buf, n, dtype=np.float32):
    """A buffer of at least n elements (reallocated only when it must grow)."""
    return buf if buf is not None and buf.size >= n else np.empty(n, dtype)


def _want_param(layer, k):
    return k >= len(layer.param_propagate_down) or bool(layer.param_propagate_down[k])


# -- Eltwise ---------------------------------------------------------------------------
@register("Eltwise")
class Eltwise(Layer):
    """top = bottom_0 * bottom_1 * ... (PROD), sum_i coeff_i * bottom_i (SUM, the
    default) or the element-wise max (MAX, ties to the earlier blob except that the
    first pair's ties go to bottom 1, as in Caffe).

    PROD's gradient is the product of the other bottoms (``stable_prod_grad``, the
    default) or top / bottom_i; MAX routes the gradient to the winner.
    """

    min_bottom_blobs = 2
    exact_num_top_blobs = 1

    def setup(self, bottom, top):
        p = self.layer_param.eltwise_param
        self.op = int(p.operation)
        if p.coeff and len(p.coeff) != len(bottom):
            raise LayerError(f"{self.describe()}: eltwise_param takes one coeff per bottom blob "
                             f"({len(p.coeff)} coeffs for {len(bottom)} bottoms)")
        if self.op == PROD and p.coeff:
            raise LayerError(f"{self.describe()}: coeff is only for operation SUM, not PROD")
        self.coeffs = [f32(c) for c in p.coeff] if p.coeff else [f32(1)] * len(bottom)
        self.stable_prod_grad = bool(p.stable_prod_grad)
        self._arg = None
        self._kept = None

    def _in_place_index(self, bottom, top):
        for i, b in enumerate(bottom):
            if b is top[0]:
                return i
        return None

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if any(b.shape != shape for b in bottom[1:]):
            shapes = ", ".join(f"'{b.name}' {b.shape}" for b in bottom)
            raise ShapeError(f"{self.describe()}: all bottoms of Eltwise "
                             f"{_OP_NAMES.get(self.op, self.op)} must have the same shape; "
                             f"got {shapes}")
        top[0].reshape_like(bottom[0])
        n = bottom[0].count
        if self.op == MAX:
            self._arg = _grow(self._arg, n, np.int32)
        if self._in_place_index(bottom, top) is not None:
            self._kept = _grow(self._kept, n)

    def _inputs(self, bottom, top):
        """Flat bottom data, the in-place bottom replaced by its kept copy."""
        datas = [flat(b.data) for b in bottom]
        k = self._in_place_index(bottom, top)
        if k is not None:
            datas[k] = self._kept[: datas[k].size]
        return datas, k

    def forward(self, bottom, top):
        k = self._in_place_index(bottom, top)
        if k is not None:  # keep the input the top is about to overwrite
            self._kept[: bottom[k].count] = flat(bottom[k].data)
        datas, _ = self._inputs(bottom, top)
        y = flat(top[0].data)
        if self.op == PROD:
            E.mul(datas[0], datas[1], y)
            for d in datas[2:]:
                E.mul(y, d, y)
        elif self.op == SUM:
            E.scale(self.coeffs[0], datas[0], y)
            for c, d in zip(self.coeffs[1:], datas[1:]):
                E.axpy(c, d, y)
        elif self.op == MAX:
            arg = self._arg[: y.size]
            E.max_first(datas[0], datas[1], y, arg)
            for i in range(2, len(datas)):
                E.max_next(datas[i], i, y, arg)
        else:
            raise LayerError(f"{self.describe()}: unknown eltwise operation {self.op}")

    def backward(self, top, propagate_down, bottom):
        datas, k = self._inputs(bottom, top)
        dy, y = flat(top[0].diff), flat(top[0].data)
        order = [i for i in range(len(bottom)) if i != k] + ([] if k is None else [k])
        for i in order:  # in place, bottom k's diff is dy: write it last
            if not propagate_down[i]:
                continue
            dx = flat(bottom[i].diff)
            if self.op == PROD:
                if self.stable_prod_grad:
                    others = [d for j, d in enumerate(datas) if j != i]
                    E.mul(dy, others[0], dx)
                    for d in others[1:]:
                        E.mul(dx, d, dx)
                else:
                    E.mul(dy, y, dx)
                    E.div(dx, datas[i], dx)
            elif self.op == SUM:
                if self.coeffs[i] != 1:
                    E.scale(self.coeffs[i], dy, dx)
                elif i != k:
                    dx[...] = dy
            else:
                E.max_backward(dy, self._arg[: dy.size], i, dx)


# -- Bias and Scale --------------------------------------------------------------------
def learned_operand_shape(layer, bottom, axis, num_axes, what):
    """Shape of a learned Bias/Scale parameter: bottom's axes [axis, axis + num_axes)
    (num_axes -1: to the end)."""
    axis = canonical_axis(layer, bottom, axis)
    if num_axes < -1:
        raise LayerError(f"{layer.describe()}: num_axes must be non-negative, or -1 to extend "
                         f"to the end of bottom[0] (got {num_axes})")
    if num_axes >= 0 and bottom.num_axes < axis + num_axes:
        raise ShapeError(f"{layer.describe()}: the {what} blob's {num_axes} axes extend past "
                         f"bottom '{bottom.name}' {bottom.shape} from axis {axis}")
    end = bottom.num_axes if num_axes == -1 else axis + num_axes
    return bottom.shape[axis:end]


def broadcast_dims(layer, bottom, operand_shape, axis, what):
    """(outer, dim, inner) viewing ``bottom`` around the axes ``operand_shape`` covers."""
    operand_shape = tuple(operand_shape)
    axis = 0 if not operand_shape else canonical_axis(layer, bottom, axis)
    end = axis + len(operand_shape)
    if bottom.shape[axis:end] != operand_shape:
        raise ShapeError(f"{layer.describe()}: {what} shape {operand_shape} does not match "
                         f"bottom '{bottom.name}' {bottom.shape} at axes {axis}..{end - 1}")
    dim = 1
    for d in operand_shape:
        dim *= d
    return bottom.count_range(0, axis), dim, bottom.count_range(end)


@register("Bias")
class Bias(Layer):
    """top = bottom[0] + b, b broadcast over the axes it does not cover.

    b is bottom[1], or a learned parameter of shape bottom[0].shape[axis:axis+num_axes]
    (filler default constant 0).  db = dy summed over the broadcast axes.
    """

    min_bottom_blobs = 1
    max_bottom_blobs = 2
    exact_num_top_blobs = 1

    def setup(self, bottom, top):
        p = self.layer_param.bias_param
        self.axis = p.axis
        if len(bottom) == 1:
            shape = learned_operand_shape(self, bottom[0], p.axis, p.num_axes, "bias")
            fill(self.new_param_blob(shape).data, p.filler, self.rng)
        self.param_propagate_down = [True] * len(self.blobs)

    def _operand(self, bottom):
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom, top):
        self.dims = broadcast_dims(self, bottom[0], self._operand(bottom).shape, self.axis,
                                   "bias")
        top[0].reshape_like(bottom[0])

    def forward(self, bottom, top):
        E.channel_add(bottom[0].data.reshape(self.dims), flat(self._operand(bottom).data),
                      top[0].data.reshape(self.dims))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0] and bottom[0] is not top[0]:
            bottom[0].diff[...] = top[0].diff
        learned = len(bottom) == 1
        if (propagate_down[1] if not learned else _want_param(self, 0)):
            E.channel_sum(top[0].diff.reshape(self.dims), flat(self._operand(bottom).diff),
                          learned)


@register("Scale")
class Scale(Layer):
    """top = bottom[0] * s (+ b with ``bias_term``), s and b broadcast over the axes they
    do not cover.

    s is bottom[1], or a learned parameter of shape bottom[0].shape[axis:axis+num_axes]
    (filler default constant 1); b is always learned (``bias_filler``, default 0) and
    spans s's axes.  ds = sum of dy * x and db = sum of dy over the broadcast axes;
    dx = dy * s.  In place, x is kept for ds, as Caffe does.
    """

    min_bottom_blobs = 1
    max_bottom_blobs = 2
    exact_num_top_blobs = 1

    def setup(self, bottom, top):
        p = self.layer_param.scale_param
        self.axis = p.axis
        if len(bottom) == 1:
            shape = learned_operand_shape(self, bottom[0], p.axis, p.num_axes, "scale")
            scale = self.new_param_blob(shape)
            if p.HasField("filler"):
                fill(scale.data, p.filler, self.rng)
            else:
                scale.data[...] = 1.0
        self.bias_index = None
        if p.bias_term:
            num_axes = bottom[1].num_axes if len(bottom) > 1 else p.num_axes
            shape = learned_operand_shape(self, bottom[0], p.axis, num_axes, "bias")
            self.bias_index = len(self.blobs)
            fill(self.new_param_blob(shape).data, p.bias_filler, self.rng)
        self.param_propagate_down = [True] * len(self.blobs)
        self._kept = None

    def _scale(self, bottom):
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom, top):
        self.dims = broadcast_dims(self, bottom[0], self._scale(bottom).shape, self.axis,
                                   "scale")
        if self.bias_index is not None:
            bias_dims = broadcast_dims(self, bottom[0], self.blobs[self.bias_index].shape,
                                       self.axis, "bias")
            if bias_dims != self.dims:
                raise ShapeError(f"{self.describe()}: bias shape "
                                 f"{self.blobs[self.bias_index].shape} does not span the "
                                 f"scale's axes {self._scale(bottom).shape}")
        top[0].reshape_like(bottom[0])
        if bottom[0] is top[0]:
            self._kept = _grow(self._kept, bottom[0].count)

    def _input(self, bottom, top):
        """x as forward saw it: in place, the kept copy."""
        if bottom[0] is top[0]:
            return self._kept[: bottom[0].count].reshape(self.dims)
        return bottom[0].data.reshape(self.dims)

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.dims)
        if bottom[0] is top[0]:
            self._input(bottom, top)[...] = x
        s = flat(self._scale(bottom).data)
        y = top[0].data.reshape(self.dims)
        if self.bias_index is None:
            E.channel_mul(x, s, y)
        else:
            E.channel_mul_add(x, s, flat(self.blobs[self.bias_index].data), y)

    def backward(self, top, propagate_down, bottom):
        dy = top[0].diff.reshape(self.dims)
        # Parameter/operand gradients first: in place, dx overwrites dy.
        if self.bias_index is not None and _want_param(self, self.bias_index):
            E.channel_sum(dy, flat(self.blobs[self.bias_index].diff), True)
        learned = len(bottom) == 1
        scale = self._scale(bottom)
        if (propagate_down[1] if not learned else _want_param(self, 0)):
            E.channel_dot(dy, self._input(bottom, top), flat(scale.diff), learned)
        if propagate_down[0]:
            E.channel_mul(dy, flat(scale.data), bottom[0].diff.reshape(self.dims))
