"""Embed: a lookup table, i.e. InnerProduct on one-hot inputs without building them."""

import numpy as np

from ..errors import LayerError
from ..fillers import fill
from ..kernels import shape as K
from ..layer import Layer, register
from .shape import index_rows


@register("Embed")
class Embed(Layer):
    """top[..., :] = W[index] (+ b) for each integer index (stored as a float) in the bottom.

    W is (input_dim, num_output), b is (num_output,); the top is the bottom's shape plus
    num_output.  Indices get no gradient; dW[index] and db accumulate the top's diff.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def allow_force_backward(self, bottom_index):
        return False

    def setup(self, bottom, top):
        p = self.layer_param.embed_param
        self.num_output, self.input_dim = int(p.num_output), int(p.input_dim)
        self.bias_term = p.bias_term
        if self.num_output <= 0:
            raise LayerError(f"{self.describe()}: embed_param.num_output must be positive")
        if self.input_dim <= 0:
            raise LayerError(f"{self.describe()}: embed_param.input_dim must be positive")
        if not self.blobs:
            fill(self.new_param_blob((self.input_dim, self.num_output)).data,
                 p.weight_filler, self.rng)
            if self.bias_term:
                fill(self.new_param_blob((self.num_output,)).data, p.bias_filler, self.rng)
        self.param_propagate_down = [True] * len(self.blobs)
        self._no_bias = np.zeros(1, np.float32)

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape + (self.num_output,))

    def _rows(self, bottom):
        return index_rows(self, bottom[0], self.input_dim, "index",
                           require_integer=True)

    def forward(self, bottom, top):
        rows = self._rows(bottom)
        bias = self.blobs[1].data if self.bias_term else self._no_bias
        K.embed_forward(top[0].data.reshape(rows.size, self.num_output), self.blobs[0].data,
                        bias, rows, self.bias_term)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            raise LayerError(f"{self.describe()}: cannot backpropagate to the indices "
                             f"'{bottom[0].name}'")
        dout = top[0].diff.reshape(-1, self.num_output)
        down = self.param_propagate_down
        if not down or down[0]:
            K.scatter_add_rows(self.blobs[0].diff, dout, self._rows(bottom))
        if self.bias_term and (len(down) < 2 or down[1]):
            K.column_sum_add(self.blobs[1].diff, dout)
