"""Python layers the pycaffe-compatibility tests load by module name (no numba kernels, so
the tests stay quick)."""

import numpy as np

import netdef


class Times(netdef.Layer):
    """top = k * bottom, k from param_str (default 2)."""

    def setup(self, bottom, top):
        self.k = float(self.param_str or 2)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.k * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = self.k * top[0].diff


class ChannelMean(netdef.Layer):
    """(N, C, H, W) -> (N, C): the mean of each channel."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape[:2])

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data.mean(axis=(2, 3))


class RaiseInSetup(netdef.Layer):
    def setup(self, bottom, top):
        raise RuntimeError("no setup today")


class RaiseInForward(netdef.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        raise KeyError("missing key")


class TwoArgError(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")
        self.code = code


class RaiseCustom(RaiseInForward):
    def forward(self, bottom, top):
        raise TwoArgError(7, "custom failure")


def net_text(*layers, input_shape=(4, 3)):
    """Prototxt: an Input 'data' of ``input_shape`` then Python layers (type name,
    param_str) chained one after another; the tops are 'l0', 'l1', ..."""
    dims = " ".join(f"dim: {d}" for d in input_shape)
    text = (f'name: "py" force_backward: true layer {{ name: "data" type: "Input" top: "data" '
            f'input_param {{ shape {{ {dims} }} }} }}\n')
    bottom = "data"
    for i, (cls, param_str) in enumerate(layers):
        text += (f'layer {{ name: "l{i}" type: "Python" bottom: "{bottom}" top: "l{i}" '
                 f'python_param {{ module: "{__name__}" layer: "{cls}" '
                 f'param_str: "{param_str}" }} }}\n')
        bottom = f"l{i}"
    return text


def random_input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


class OwnRandomData(netdef.Layer):
    """A data layer with its own numpy RandomState in ``self.rng`` (common in user code)."""

    def setup(self, bottom, top):
        self.rng = np.random.RandomState(int(self.param_str or 0))
        top[0].reshape(2, 3)
        top[1].reshape(2, 2)

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        top[0].data[...] = self.rng.standard_normal((2, 3))
        top[1].data[...] = top[0].data[:, :2]
