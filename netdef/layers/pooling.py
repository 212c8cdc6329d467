"""Pooling (MAX, AVE, STOCHASTIC) and SPP, the spatial pyramid built from it."""

import math

import numpy as np

from ..errors import LayerError, ShapeError
from ..kernels import pooling as K
from ..layer import Layer, register
from ..proto import caffe_pb2

MAX = caffe_pb2.PoolingParameter.MAX
AVE = caffe_pb2.PoolingParameter.AVE
STOCHASTIC = caffe_pb2.PoolingParameter.STOCHASTIC
CEIL = caffe_pb2.PoolingParameter.CEIL
_METHOD_NAMES = {MAX: "MAX", AVE: "AVE", STOCHASTIC: "STOCHASTIC"}
TRAIN = caffe_pb2.TRAIN


def pooled_size(layer, blob, size, kernel, stride, pad, ceil_mode, any_pad):
    """Caffe's output size: ceil (or floor) of (size + 2 pad - kernel) / stride, plus one;
    with any padding, a last window that would start inside the padding is dropped."""
    rounding = math.ceil if ceil_mode else math.floor
    n = int(rounding((size + 2 * pad - kernel) / stride)) + 1
    if any_pad and (n - 1) * stride >= size + pad:
        n -= 1
    if n <= 0 or (any_pad and (n - 1) * stride >= size + pad):
        raise ShapeError(f"{layer.describe()}: pooling kernel {kernel}, stride {stride}, pad "
                         f"{pad} leaves no output for bottom '{blob.name}' {blob.shape}")
    return n


def _require_4d(layer, blob):
    if blob.num_axes != 4:
        raise ShapeError(f"{layer.describe()}: bottom '{blob.name}' {blob.shape} must have 4 "
                         "axes (num, channels, height, width)")


class _Pool2d:
    """One pooling geometry and method over (N, C, H, W), with its own mask buffer."""

    def __init__(self, method, kernel, stride, pad, train):
        self.method, self.train = method, train
        self.geo = (*kernel, *stride, *pad)
        self.kernel, self.stride = kernel, stride
        self.mask = np.zeros(0, np.float32)
        self.rand = np.zeros(0, np.float32)

    def buffers(self, top_shape):
        count = int(np.prod(top_shape))
        if self.method in (MAX, STOCHASTIC) and self.mask.size < count:
            self.mask = np.zeros(count, np.float32)
        if self.method == STOCHASTIC and self.rand.size < count:
            self.rand = np.zeros(count, np.float32)

    def forward(self, x, top, rng, mask=None):
        """top: (N, C, PH, PW); ``mask``: where MAX writes its argmax (default: own buffer)."""
        if self.method == MAX:
            if mask is None and not self.train:     # nothing reads a TEST argmax
                K.max_pool_values(x, top, *self.geo)
            else:
                if mask is None:
                    mask = self.mask[: top.size].reshape(top.shape)
                K.max_pool_forward(x, top, mask, *self.geo)
        elif self.method == AVE:
            K.ave_pool_forward(x, top, *self.geo)
        elif self.train:
            rand = self.rand[: top.size]
            rng.random(out=rand, dtype=np.float32)
            K.stochastic_pool_train(x, top, self.mask[: top.size].reshape(top.shape),
                                    rand.reshape(top.shape), *self.kernel, *self.stride)
        else:
            K.stochastic_pool_test(x, top, *self.kernel, *self.stride)

    def backward(self, x, dtop, dx, zero_first, mask=None):
        """dx += (or = with ``zero_first``) the gradient through this pooling."""
        if self.method == AVE:
            K.ave_pool_backward(dtop, dx, *self.geo, zero_first)
        elif self.method == STOCHASTIC and not self.train:
            K.stochastic_pool_test_backward(x, dtop, dx, *self.kernel, *self.stride, zero_first)
        else:
            if mask is None:
                mask = self.mask[: dtop.size].reshape(dtop.shape)
                if self.method == MAX and not self.train:     # forward wrote none
                    K.max_pool_forward(x, np.empty_like(dtop), mask, *self.geo)
            K.mask_pool_backward(dtop, mask, dx, zero_first)


@register("Pooling")
class Pooling(Layer):
    """Max, average or stochastic pooling over 2-D windows of (N, C, H, W).

    Output size ceil((H + 2 pad - kernel) / stride) + 1 (floor with round_mode FLOOR);
    with padding, a last window starting inside the padding is dropped.  AVE divides by
    the window clipped to the padded image.  MAX may have a second top, the argmax of
    each window as a float index h * W + w into its plane; in TEST a single-top MAX
    skips the argmax, and a backward (a saliency map through a deploy net) computes it
    from the bottom first.  STOCHASTIC samples in TRAIN (probability proportional to
    the activation) and takes the probability-weighted average in TEST; its TEST
    backward is the derivative of that average.
    """

    exact_num_bottom_blobs = 1
    min_top_blobs = 1

    @property
    def max_top_blobs(self):
        return 2 if self.layer_param.pooling_param.pool == MAX else 1

    def setup(self, bottom, top):
        p = self.layer_param.pooling_param
        where = self.describe()
        has = p.HasField
        self.method = p.pool
        self.global_pooling = p.global_pooling
        self.ceil_mode = p.round_mode == CEIL
        if self.global_pooling:
            if has("kernel_size") or has("kernel_h") or has("kernel_w"):
                raise LayerError(f"{where}: with global_pooling the kernel size cannot be "
                                 "given (it is the bottom's height and width)")
        else:
            if has("kernel_size") == (has("kernel_h") and has("kernel_w")):
                raise LayerError(f"{where}: give kernel_size, or both kernel_h and kernel_w "
                                 "(not both forms, and not one of kernel_h/kernel_w alone)")
        for name in ("pad", "stride"):
            if has(f"{name}_h") or has(f"{name}_w"):
                if has(name) or not (has(f"{name}_h") and has(f"{name}_w")):
                    raise LayerError(f"{where}: give {name}, or both {name}_h and {name}_w "
                                     "(not both forms)")
        _require_4d(self, bottom[0])
        if self.global_pooling:
            kernel = bottom[0].shape[2:]
        elif has("kernel_size"):
            kernel = (p.kernel_size, p.kernel_size)
        else:
            kernel = (p.kernel_h, p.kernel_w)
        pad = (p.pad_h, p.pad_w) if has("pad_h") else (p.pad, p.pad)
        stride = (p.stride_h, p.stride_w) if has("stride_h") else (p.stride, p.stride)
        self.kernel = tuple(int(k) for k in kernel)
        self.pad, self.stride = tuple(int(v) for v in pad), tuple(int(v) for v in stride)
        if min(self.kernel) <= 0:
            raise LayerError(f"{where}: kernel dimensions must be nonzero (got {self.kernel})")
        if min(self.stride) <= 0:
            raise LayerError(f"{where}: stride must be nonzero (got {self.stride})")
        if self.global_pooling and (any(self.pad) or self.stride != (1, 1)):
            raise LayerError(f"{where}: with global_pooling only pad = 0 and stride = 1 are "
                             f"allowed (got pad {self.pad}, stride {self.stride})")
        if any(self.pad):
            if self.method not in (MAX, AVE):
                raise LayerError(f"{where}: padding is implemented only for MAX and AVE "
                                 f"pooling, not {_METHOD_NAMES.get(self.method, self.method)}")
            if self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]:
                raise LayerError(f"{where}: pad {self.pad} must be smaller than the kernel "
                                 f"{self.kernel}")
        self.pool = None

    def reshape(self, bottom, top):
        b = bottom[0]
        _require_4d(self, b)
        if top[0] is b:
            raise LayerError(f"{self.describe()}: cannot compute in place (top '{b.name}' is "
                             "its own bottom)")
        N, C, H, W = b.shape
        if self.global_pooling:
            self.kernel = (H, W)
        any_pad = any(self.pad)
        ph = pooled_size(self, b, H, self.kernel[0], self.stride[0], self.pad[0],
                         self.ceil_mode, any_pad)
        pw = pooled_size(self, b, W, self.kernel[1], self.stride[1], self.pad[1],
                         self.ceil_mode, any_pad)
        for t in top:
            t.reshape(N, C, ph, pw)
        if self.pool is None or self.pool.kernel != self.kernel:
            self.pool = _Pool2d(self.method, self.kernel, self.stride, self.pad,
                                self.phase == TRAIN)
        self.pool.buffers((N, C, ph, pw))

    def forward(self, bottom, top):
        mask = top[1].data if len(top) > 1 else None
        self.pool.forward(bottom[0].data, top[0].data, self.rng, mask)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        mask = top[1].data if len(top) > 1 else None
        self.pool.backward(bottom[0].data, top[0].diff, bottom[0].diff, True, mask)


@register("SPP")
class SPP(Layer):
    """Spatial pyramid pooling: levels l = 0..pyramid_height-1 pool each channel into
    2^l x 2^l bins, flattened per image and concatenated: top (N, sum_l C * bins_l).

    Level l uses kernel ceil(H / 2^l), stride = kernel, pad (kernel 2^l - H + 1) / 2
    (and likewise for W), ceil rounding -- exactly the Pooling layers Caffe builds
    inside SPP.  With pyramid_height 1 the top is that one pooling's (N, C, 1, 1).
    Those inner layers run in Caffe's default TRAIN phase, so STOCHASTIC always samples.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def setup(self, bottom, top):
        p = self.layer_param.spp_param
        self.pyramid_height = int(p.pyramid_height)
        self.method = p.pool
        if self.pyramid_height < 1:
            raise LayerError(f"{self.describe()}: spp_param.pyramid_height must be at least 1 "
                             f"(got {self.pyramid_height})")
        _require_4d(self, bottom[0])
        self._shape = None

    def _level(self, b, level):
        N, C, H, W = b.shape
        bins = 2 ** level
        kernel = (math.ceil(H / bins), math.ceil(W / bins))
        pad = tuple((k * bins - size + 1) // 2 for k, size in zip(kernel, (H, W)))
        if any(pad):
            if self.method not in (MAX, AVE):
                raise LayerError(f"{self.describe()}: pyramid level {level} needs padding "
                                 f"{pad} for bottom '{b.name}' {b.shape}, which "
                                 f"{_METHOD_NAMES.get(self.method, self.method)} pooling "
                                 "does not support")
            if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
                raise LayerError(f"{self.describe()}: bottom '{b.name}' {b.shape} is too "
                                 f"small for pyramid level {level} ({bins}x{bins} bins need "
                                 f"kernel {kernel} with pad {pad}, and pad must be smaller)")
        any_pad = any(pad)
        out = tuple(pooled_size(self, b, size, k, k, p_, True, any_pad)
                    for size, k, p_ in zip((H, W), kernel, pad))
        pool = _Pool2d(self.method, kernel, kernel, pad, train=True)
        shape = (N, C) + out
        pool.buffers(shape)
        return pool, shape

    def reshape(self, bottom, top):
        b = bottom[0]
        _require_4d(self, b)
        if min(b.shape[2:]) <= 0:
            raise ShapeError(f"{self.describe()}: bottom '{b.name}' {b.shape} has an empty "
                             "spatial axis")
        if top[0] is b:
            raise LayerError(f"{self.describe()}: cannot compute in place (top '{b.name}' is "
                             "its own bottom)")
        if b.shape != self._shape:
            self._shape = b.shape
            self.levels = [self._level(b, i) for i in range(self.pyramid_height)]
            self.outs = [np.zeros(shape, np.float32) for _, shape in self.levels]
            self.douts = [np.zeros(shape, np.float32) for _, shape in self.levels]
        N = b.shape[0]
        if self.pyramid_height == 1:
            top[0].reshape(self.levels[0][1])
        else:
            top[0].reshape(N, sum(int(np.prod(shape[1:])) for _, shape in self.levels))

    def _slices(self):
        start = 0
        for out in self.outs:
            size = out[0].size
            yield slice(start, start + size)
            start += size

    def forward(self, bottom, top):
        x = bottom[0].data
        if self.pyramid_height == 1:
            self.levels[0][0].forward(x, top[0].data, self.rng)
            return
        y = top[0].data
        for (pool, _), out, cols in zip(self.levels, self.outs, self._slices(), strict=True):
            pool.forward(x, out, self.rng)
            y[:, cols] = out.reshape(out.shape[0], -1)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x, dx = bottom[0].data, bottom[0].diff
        if self.pyramid_height == 1:
            self.levels[0][0].backward(x, top[0].diff, dx, True)
            return
        dy = top[0].diff
        for i, ((pool, _), dout, cols) in enumerate(zip(self.levels, self.douts, self._slices(),
                                                        strict=True)):
            dout.reshape(dout.shape[0], -1)[...] = dy[:, cols]
            pool.backward(x, dout, dx, i == 0)
