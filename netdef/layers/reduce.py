"""Reductions over the tail of a blob: ArgMax (top-k, forward only) and Reduction."""

from ..errors import LayerError
from ..kernels import shape as K
from ..layer import Layer, register
from .shape import canonical_axis

_REDUCTION_OPS = {K.SUM: "SUM", K.ASUM: "ASUM", K.SUMSQ: "SUMSQ", K.MEAN: "MEAN"}


@register("ArgMax")
class ArgMax(Layer):
    """Indices (and with ``out_max_val`` the values) of the ``top_k`` largest entries.

    Without ``axis`` each item's entries over axes 1.. compete and the top is
    (N, 1, top_k) -- or (N, 2, top_k) holding indices then values with
    ``out_max_val``.  With ``axis`` the top is the bottom's shape with that axis cut to
    ``top_k``, holding indices, or values alone with ``out_max_val``.  Ties go to the
    larger index.  There is no gradient.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def allow_force_backward(self, bottom_index):
        return False

    def setup(self, bottom, top):
        p = self.layer_param.argmax_param
        self.out_max_val, self.top_k = p.out_max_val, int(p.top_k)
        self.has_axis, self.axis_param = p.HasField("axis"), p.axis
        if self.top_k < 1:
            raise LayerError(f"{self.describe()}: argmax_param.top_k must be at least 1")

    def reshape(self, bottom, top):
        b = bottom[0]
        if self.has_axis:
            self.axis = canonical_axis(self, b, self.axis_param)
            dim = b.shape[self.axis]
            if self.top_k > dim:
                raise LayerError(f"{self.describe()}: top_k {self.top_k} exceeds the size "
                                 f"{dim} of axis {self.axis} of bottom '{b.name}' {b.shape}")
            shape = list(b.shape)
            shape[self.axis] = self.top_k
            self.rows = (b.count_range(0, self.axis), dim, b.count_range(self.axis + 1))
        else:
            if b.num_axes < 1:
                raise LayerError(f"{self.describe()}: bottom '{b.name}' needs at least one axis")
            dim = b.count_range(1)
            if self.top_k > dim:
                raise LayerError(f"{self.describe()}: top_k {self.top_k} exceeds the number "
                                 f"of classes {dim} of bottom '{b.name}' {b.shape}")
            shape = [1] * max(b.num_axes, 3)
            shape[0], shape[2] = b.shape[0], self.top_k
            if self.out_max_val:
                shape[1] = 2
            self.rows = (b.shape[0], dim, 1)
        top[0].reshape(shape)

    def forward(self, bottom, top):
        outer, dim, inner = self.rows
        k = self.top_k
        if self.has_axis:
            stride = k * inner
            index_base, value_base = (-1, 0) if self.out_max_val else (0, -1)
        elif self.out_max_val:
            stride, index_base, value_base = 2 * k, 0, k
        else:
            stride, index_base, value_base = k, 0, -1
        K.argmax_topk(top[0].data.reshape(-1), bottom[0].data.reshape(outer, dim, inner), k,
                      stride, index_base, value_base)

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise LayerError(f"{self.describe()}: ArgMax has no gradient; nothing that "
                             "needs backward may depend on it")


@register("Reduction")
class Reduction(Layer):
    """top[i] = coeff * op(bottom[i, ...]) over all axes from ``axis`` on.

    op is SUM, ASUM (sum of |x|), SUMSQ (sum of x^2) or MEAN; the top keeps the axes
    before ``axis`` (a scalar for axis 0).
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def setup(self, bottom, top):
        p = self.layer_param.reduction_param
        if p.operation not in _REDUCTION_OPS:
            raise LayerError(f"{self.describe()}: unknown reduction_param.operation "
                             f"{p.operation} (known: SUM, ASUM, SUMSQ, MEAN)")
        self.op, self.axis_param, self.coeff = int(p.operation), p.axis, float(p.coeff)

    def reshape(self, bottom, top):
        b = bottom[0]
        axis = canonical_axis(self, b, self.axis_param)
        top[0].reshape(b.shape[:axis])
        self.num, self.dim = b.count_range(0, axis), b.count_range(axis)
        self.scale = self.coeff
        if self.op == K.MEAN:
            self.scale = self.coeff / self.dim if self.dim else float("nan")

    def forward(self, bottom, top):
        K.reduce_forward(top[0].data.reshape(self.num),
                         bottom[0].data.reshape(self.num, self.dim), self.op, self.scale)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            b = bottom[0]
            K.reduce_backward(b.diff.reshape(self.num, self.dim),
                              b.data.reshape(self.num, self.dim),
                              top[0].diff.reshape(self.num), self.op, self.scale)
