"""InnerProduct: the fully connected layer, three BLAS GEMMs (one row through a large W:
netdef's streaming GEMV)."""

import numpy as np

from ..errors import LayerError, ShapeError
from ..fillers import fill
from ..kernels.gemv import GEMV_MIN, gemv_rows
from ..layer import Layer, register
from .shape import canonical_axis

_NO_BIAS = np.zeros(0, np.float32)


@register("InnerProduct")
class InnerProduct(Layer):
    """top (M, N) = bottom (M, K) @ W^T + b, the bottom flattened from ``axis`` on.

    W is (N, K) -- (K, N) with ``transpose`` -- and b is (N,).  The top keeps the
    bottom's axes before ``axis`` and adds one of size num_output.
    Backward: dW += dtop^T @ bottom (bottom^T @ dtop when transposed), db += the sum of
    dtop over rows, dbottom = dtop @ W (dtop @ W^T when transposed).
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def setup(self, bottom, top):
        p = self.layer_param.inner_product_param
        self.num_output = int(p.num_output)
        self.bias_term = bool(p.bias_term)
        self.transpose = bool(p.transpose)
        if self.num_output <= 0:
            raise LayerError(f"{self.describe()}: inner_product_param.num_output must be "
                             "positive")
        self.axis = canonical_axis(self, bottom[0], p.axis)
        self.k = bottom[0].count_range(self.axis)
        if not self.blobs:
            shape = (self.k, self.num_output) if self.transpose else (self.num_output, self.k)
            fill(self.new_param_blob(shape).data, p.weight_filler, self.rng)
            if self.bias_term:
                fill(self.new_param_blob((self.num_output,)).data, p.bias_filler, self.rng)
        self.param_propagate_down = [True] * len(self.blobs)
        self._dw = np.zeros(self.blobs[0].shape, np.float32)
        self._db = np.zeros(self.num_output, np.float32)

    def reshape(self, bottom, top):
        b = bottom[0]
        axis = canonical_axis(self, b, self.layer_param.inner_product_param.axis)
        k = b.count_range(axis)
        if k != self.k:
            raise ShapeError(f"{self.describe()}: bottom '{b.name}' {b.shape} has {k} inputs "
                             f"per row from axis {axis}; the weights expect {self.k}")
        if top[0] is b:
            raise LayerError(f"{self.describe()}: cannot compute in place (top '{b.name}' is "
                             "its own bottom)")
        self.axis = axis
        self.m = b.count_range(0, axis)
        top[0].reshape(b.shape[:axis] + (self.num_output,))

    def _weight(self):
        """W as the right-hand GEMM operand, (K, N)."""
        w = self.blobs[0].data
        return w if self.transpose else w.T

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.m, self.k)
        y = top[0].data.reshape(self.m, self.num_output)
        w = self.blobs[0].data
        if self.m == 1 and not self.transpose and w.size >= GEMV_MIN:
            gemv_rows(w, x[0], self.blobs[1].data if self.bias_term else _NO_BIAS, y[0])
            return
        np.dot(x, self._weight(), out=y)
        if self.bias_term:
            y += self.blobs[1].data

    def backward(self, top, propagate_down, bottom):
        dy = top[0].diff.reshape(self.m, self.num_output)
        x = bottom[0].data.reshape(self.m, self.k)
        down = self.param_propagate_down
        if not down or down[0]:
            if self.transpose:
                np.dot(x.T, dy, out=self._dw)
            else:
                np.dot(dy.T, x, out=self._dw)
            self.blobs[0].diff += self._dw
        if self.bias_term and (len(down) < 2 or down[1]):
            np.sum(dy, axis=0, out=self._db)
            self.blobs[1].diff += self._db
        if propagate_down[0]:
            np.dot(dy, self._weight().T, out=bottom[0].diff.reshape(self.m, self.k))
