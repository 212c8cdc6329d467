"""Convolution, Deconvolution and Im2col.

Convolution has three routes (``NETDEF_CONV_ALGO`` = ``gemm`` | ``blocked`` |
``winograd`` forces one where it applies; unset or ``auto``, see "Choosing" below):

``gemm`` -- the whole minibatch goes through im2col into ONE column matrix (rows: input
channel x kernel offset; columns: image x output position) and each product is one
BLAS GEMM per group:

    forward          Y_g (Cout_g, N*P)  = W_g (Cout_g, K_g) @ col_g (K_g, N*P)
    weight gradient  dW_g              += dY_g @ col_g^T
    data gradient    dcol_g             = W_g^T @ dY_g, then col2im

The GEMM result is in (C, N*P) order; one layout pass turns it into NCHW and adds the
bias on the way (and the reverse pass sums the bias gradient while it copies).  The
column buffer is allocated at first use and reused; minibatches whose column matrix
would exceed ``COL_BUFFER_LIMIT`` floats are processed in chunks of images.  A 1x1,
stride-1, unpadded convolution needs no im2col: its column matrix is the input itself.
Serves every geometry (N-D, grouped, dilated, strided).

``blocked`` (2-D, not 1x1) -- the same products, a few images at a time: each core takes a
share of the minibatch and works through it in chunks whose column matrix fits its L2
cache (``BLOCK_FLOATS``), so im2col writes into cache and the GEMM reads from there
(layers/conv_blocked.py, kernels/conv_blocked.py, kernels/conv_threads.py).  Ungrouped
undilated layers use pixel-major columns (one row per output pixel, kernel offsets ordered
(i, j, c)), whose im2col copies runs of kernel_w * C floats; the GEMM col @ W^T gives
pixels x channels, which the bias pass transposes into NCHW.  The data gradient of a
stride-1 undilated layer is itself computed as a forward convolution -- dtop padded by
kernel - 1 - pad, correlated with the rotated filters, in/out channels swapped -- a GEMM
with reduction Cout * kernel instead of a reduction-Cout GEMM that writes a huge column
matrix for col2im to read back.  Other layers' data gradients take the gemm route's way.

``winograd`` -- for stride-1 undilated 2-D layers (grouped too) with 3x3 or 5x5 kernels:
F(4x4, 3x3) or F(4x4, 5x5) (kernels/winograd_general.py) for forward, data and weight
gradient; 3x3 layers with fewer than ``GENERAL_3X3_MIN_BATCH`` images and small outputs take
the hand-written F(2x2, 3x3) (kernels/winograd.py) with the blocked route's weight
gradient.
A TEST net reuses its transformed filters while the weights keep their bits.

Choosing (``auto``): a TEST-phase layer times each applicable route's forward
(``TEST_TIMING_ROUNDS`` rounds, the routes taking turns) once per layer shape and process
and keeps the fastest; a TRAIN-phase layer starts on ``blocked`` (where it applies) and,
at its first backward, times a whole forward + backward step of each route on its real
blobs (restoring the top and the parameter diffs afterwards) and keeps the fastest.
``layer.algo`` names the choice.

Two load-time rewrites for inference nets: ``Convolution.fuse_relu`` applies a following
in-place ReLU inside the output pass, ``Convolution.fold_affine`` folds a following
per-channel affine map (BatchNorm with global statistics + Scale) into W and b.

Deconvolution is the transpose: its forward is Convolution's data gradient (col2im,
with the bias folded into col2im's first write), its data gradient is Convolution's
forward (gemm route only).  Both share one weight layout, (conv-output channels,
conv-input channels / group, *kernel): (num_output, C/g, ...) for Convolution,
(C, num_output/g, ...) for Deconvolution.
"""

import os
import time

import numpy as np

from ..errors import LayerError, ShapeError
from ..fillers import fill
from ..kernels import conv as K
from ..kernels import conv_blocked as KB
from ..kernels import winograd as WG
from ..kernels import winograd_general as WGG
from ..layer import Layer, register
from ..proto.caffe_pb2 import TRAIN
from .conv_blocked import NO_BIAS, BlockedRoute
from .shape import canonical_axis

# Largest column matrix (in floats, 128 MB) built at once; bigger batches go in chunks.
COL_BUFFER_LIMIT = 1 << 25

# The Winograd variants: the general F(m x m, r x r) with m = WINOGRAD_TILE[r], and for 3x3
# layers with fewer than GENERAL_3X3_MIN_BATCH images and outputs smaller than
# GENERAL_3X3_MIN_SIDE the hand-written F(2x2, 3x3) (4x4 tiles waste up to half of a 13x13
# output's products).  One thread, transformed filters ready, F(4x4, 3x3) / F(2x2, 3x3):
# GoogLeNet's conv2/3x3 (56x56) 5.1 / 6.2 ms at batch 1, 35 / 51 at batch 8;
# inception_3a (28x28) 2.3 / 2.8 at batch 1; 14x14 2.3 / 2.0; CaffeNet's conv3 (13x13)
# 3.6 / 3.1 at batch 1, 9.2 / 9.4 at batch 4.
WINOGRAD_TILE = {3: 4, 5: 4}
GENERAL_3X3_MIN_BATCH = 4
GENERAL_3X3_MIN_SIDE = 24
# Winograd is not chunked: a layer whose transformed input and output would exceed this many
# floats (512 MB; 4 floats per pixel and channel for both variants) is not offered it.
WINOGRAD_MAX_FLOATS = 1 << 27

# auto mode considers the blocked route only up to this many outputs per group
BLOCKED_MAX_OUTPUTS = 128

ALGO_ENV = "NETDEF_CONV_ALGO"
ALGORITHMS = ("gemm", "blocked", "winograd")
# (layer shape and geometry, "test" | "train"[, data gradient wanted]) -> route, by timing
_ALGO_CHOICE = {}


def requested_algorithm():
    """The algorithm the environment asks for: one of ``ALGORITHMS`` or "auto"."""
    algo = os.environ.get(ALGO_ENV, "auto").strip().lower() or "auto"
    if algo != "auto" and algo not in ALGORITHMS:
        raise LayerError(f"{ALGO_ENV}={algo!r}: expected {', '.join(ALGORITHMS)} or auto")
    return algo


# Timed rounds per candidate route when a TEST net chooses (its forwards are cheap, and at
# batch 1 the routes are often within 20% of each other, where one sample on a busy machine
# picked a route 36% slower than the best).
TEST_TIMING_ROUNDS = 2


def _fastest(candidates, run, rounds):
    """The candidate whose ``run(candidate)`` takes least time: each runs once untimed
    (compile / load, allocate, warm caches), then ``rounds`` timed rounds taking turns,
    best time per candidate -- turns keep the machine's drift from favouring whichever
    candidate ran in a quiet moment."""
    for a in candidates:
        run(a)
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(rounds):
        for a in candidates:
            t0 = time.perf_counter()
            run(a)
            best[a] = min(best[a], time.perf_counter() - t0)
    return min(best, key=best.get)


# -- geometry ------------------------------------------------------------------
def read_geometry(layer, p, num_spatial):
    """(kernel, stride, pad, dilation), one value per spatial axis, with Caffe's rules.

    Each may be given once (all axes) or once per axis; kernel/stride/pad also as
    ``_h``/``_w`` for 2-D only, never together with the repeated form.
    """
    where = layer.describe()

    def per_axis(name, default, positive, hw=True):
        values = list(getattr(p, name))
        h_name, w_name = (f"{name.split('_')[0]}_h", f"{name.split('_')[0]}_w")
        if hw and (p.HasField(h_name) or p.HasField(w_name)):
            if num_spatial != 2:
                raise LayerError(f"{where}: {h_name} & {w_name} can only be used for 2-D "
                                 f"convolution; the bottom has {num_spatial} spatial axes")
            if values:
                raise LayerError(f"{where}: give either {name} or {h_name}/{w_name}, not both")
            dims = (int(getattr(p, h_name)), int(getattr(p, w_name)))
            hint = f"; give both {h_name} and {w_name}"
        else:
            hint = ""
            allowed = (1, num_spatial) if default is None else (0, 1, num_spatial)
            if len(values) not in allowed:
                raise LayerError(f"{where}: {name} must be given once, or once per spatial "
                                 f"axis ({name} given {len(values)} times; {num_spatial} "
                                 "spatial axes)")
            if not values:
                values = [default]
            dims = tuple(int(values[i if len(values) > 1 else 0]) for i in range(num_spatial))
        if positive and any(d <= 0 for d in dims):
            raise LayerError(f"{where}: every {name} dimension must be nonzero (got {dims}"
                             f"{hint})")
        return dims

    kernel = per_axis("kernel_size", None, True)
    stride = per_axis("stride", 1, True)
    pad = per_axis("pad", 0, False)
    dilation = per_axis("dilation", 1, False, hw=False)
    return kernel, stride, pad, dilation


def conv_out_shape(layer, blob, in_shape, kernel, stride, pad, dilation):
    """Output spatial shape (in + 2p - (d(k-1)+1)) / s + 1 per axis."""
    out = []
    for size, k, s, p, d in zip(in_shape, kernel, stride, pad, dilation, strict=True):
        extent = d * (k - 1) + 1
        if size + 2 * p < extent:
            raise ShapeError(f"{layer.describe()}: the kernel (extent {extent} with dilation) "
                             f"does not fit bottom '{blob.name}' {blob.shape} padded by {p} "
                             f"(kernel {kernel}, pad {pad}, dilation {dilation})")
        out.append((size + 2 * p - extent) // s + 1)
    return tuple(out)


def deconv_out_shape(layer, blob, in_shape, kernel, stride, pad, dilation):
    """Output spatial shape s(in - 1) + d(k-1)+1 - 2p per axis."""
    out = []
    for size, k, s, p, d in zip(in_shape, kernel, stride, pad, dilation, strict=True):
        o = s * (size - 1) + d * (k - 1) + 1 - 2 * p
        if o <= 0:
            raise ShapeError(f"{layer.describe()}: pad {pad} leaves no output for bottom "
                             f"'{blob.name}' {blob.shape} (kernel {kernel}, stride {stride})")
        out.append(o)
    return tuple(out)


def _prod(values):
    n = 1
    for v in values:
        n *= v
    return n


class _ColumnOps:
    """im2col / col2im for one geometry, dispatching to the 2-D or the N-D kernel."""

    def __init__(self, kernel, stride, pad, dilation, in_shape, out_shape):
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.two_d = len(kernel) == 2
        self.flat = (kernel[0], kernel[1], stride[0], stride[1], pad[0], pad[1],
                     dilation[0], dilation[1], out_shape[0], out_shape[1]) if self.two_d else None
        self.arrays = tuple(np.array(v, np.int64) for v in
                            (in_shape, out_shape, kernel, stride, pad, dilation))

    def im2col(self, image, col, row_stride, n_stride):
        """image: (n, C, prod(in_shape)); col: flat."""
        if self.two_d:
            n, c = image.shape[:2]
            K.im2col_2d(image.reshape(n, c, *self.in_shape), col, row_stride, n_stride,
                        *self.flat)
        else:
            K.im2col_nd(image, col, row_stride, n_stride, *self.arrays)

    def im2col_serial(self, image, col, row_stride, n_stride):
        """im2col on the calling thread only (2-D, pads >= 0): the blocked route's."""
        n, c = image.shape[:2]
        KB.im2col_padded(image.reshape(n, c, *self.in_shape), col, row_stride, n_stride,
                         *self.flat)

    def im2col_pixels(self, image, col):
        """Pixel-major columns (one row per output pixel, kernel offsets (i, j, c));
        2-D, undilated, on the calling thread."""
        n, c = image.shape[:2]
        kh, kw, sh, sw, ph, pw, _, _, oh, ow = self.flat
        KB.im2col_pixels(image.reshape(n, c, *self.in_shape), col, kh, kw, sh, sw, ph, pw,
                         oh, ow)

    def col2im(self, col, image, row_stride, n_stride, bias):
        """Overwrites image: (n, C, prod(in_shape)) with bias + the column sums."""
        if self.two_d:
            n, c = image.shape[:2]
            K.col2im_2d(col, image.reshape(n, c, *self.in_shape), row_stride, n_stride,
                        *self.flat, bias)
        else:
            K.col2im_nd(col, image, row_stride, n_stride, *self.arrays, bias)


def _no_in_place(layer, bottom, top):
    for b, t in zip(bottom, top, strict=False):
        if b is t:
            raise LayerError(f"{layer.describe()}: cannot compute in place (top '{t.name}' "
                             "is its own bottom)")


# -- Convolution / Deconvolution -------------------------------------------------
class _ConvolutionBase(BlockedRoute, Layer):
    """What Convolution and Deconvolution share: parameters, weights, buffers, products.

    Names follow the convolution direction: the *image* side has ``c_image`` channels
    and the larger spatial shape; the *column* side has ``c_col`` channels and one
    position per column of the column matrix.  Convolution maps image -> column side,
    Deconvolution column -> image side.
    """

    min_bottom_blobs = 1
    min_top_blobs = 1
    equal_num_bottom_top_blobs = True
    transposed = False
    fused_relu = None       # see Convolution.fuse_relu
    filters_tracked = False     # see _filters_transformed

    def setup(self, bottom, top):
        p = self.layer_param.convolution_param
        b = bottom[0]
        self.channel_axis = canonical_axis(self, b, p.axis)
        self.num_spatial = b.num_axes - self.channel_axis - 1
        geo = read_geometry(self, p, self.num_spatial)
        self.kernel, self.stride, self.pad, self.dilation = geo
        self.is_1x1 = all(k == 1 for k in self.kernel) and all(s == 1 for s in self.stride) \
            and all(v == 0 for v in self.pad)
        self.channels = b.shape[self.channel_axis]
        self.num_output = int(p.num_output)
        self.group = int(p.group)
        self.bias_term = bool(p.bias_term)
        where = self.describe()
        if self.num_output <= 0:
            raise LayerError(f"{where}: convolution_param.num_output must be positive")
        if self.group <= 0:
            raise LayerError(f"{where}: convolution_param.group must be positive")
        if self.channels % self.group:
            raise LayerError(f"{where}: the {self.channels} input channels of bottom "
                             f"'{b.name}' {b.shape} are not divisible by group {self.group}")
        if self.num_output % self.group:
            raise LayerError(f"{where}: num_output {self.num_output} is not a multiple of "
                             f"group {self.group}")
        if self.transposed:
            self.c_col, self.c_image = self.channels, self.num_output
        else:
            self.c_col, self.c_image = self.num_output, self.channels
        self.kernel_count = _prod(self.kernel)
        self.k_group = self.c_image // self.group * self.kernel_count   # GEMM inner size
        self.col_group = self.c_col // self.group
        if not self.blobs:
            weight_shape = (self.c_col, self.c_image // self.group) + self.kernel
            fill(self.new_param_blob(weight_shape).data, p.weight_filler, self.rng)
            if self.bias_term:
                fill(self.new_param_blob((self.num_output,)).data, p.bias_filler, self.rng)
        self.param_propagate_down = [True] * len(self.blobs)
        side = self.kernel[0] if len(set(self.kernel)) == 1 else 0
        self.winograd_ok = (not self.transposed and side in WINOGRAD_TILE
                            and len(self.kernel) == 2 and self.stride == (1, 1)
                            and self.dilation == (1, 1) and max(self.pad) <= side - 1)
        self._col = np.zeros(0, np.float32)
        self._cs = np.zeros(0, np.float32)
        self._part_buffers = {}
        self._dw = np.zeros((self.col_group, self.k_group), np.float32)
        self._col_holds = None      # bottom index whose im2col the column buffer holds
        self._geometry_key = None

    def reshape(self, bottom, top):
        b0 = bottom[0]
        first_spatial = self.channel_axis + 1
        if b0.num_axes != first_spatial + self.num_spatial:
            raise ShapeError(f"{self.describe()}: bottom '{b0.name}' {b0.shape} changed its "
                             f"number of axes (expected {first_spatial + self.num_spatial})")
        if b0.shape[self.channel_axis] != self.channels:
            raise ShapeError(f"{self.describe()}: bottom '{b0.name}' {b0.shape} has "
                             f"{b0.shape[self.channel_axis]} channels on axis "
                             f"{self.channel_axis}; the weights expect {self.channels}")
        for b in bottom[1:]:
            if b.shape != b0.shape:
                raise ShapeError(f"{self.describe()}: all bottoms must have one shape: "
                                 f"'{b0.name}' {b0.shape} vs '{b.name}' {b.shape}")
        _no_in_place(self, bottom, top)
        self.num = b0.count_range(0, self.channel_axis)
        in_spatial = b0.shape[first_spatial:]
        out_of = deconv_out_shape if self.transposed else conv_out_shape
        out_spatial = out_of(self, b0, in_spatial, self.kernel, self.stride, self.pad,
                             self.dilation)
        for t in top:
            t.reshape(b0.shape[:self.channel_axis] + (self.num_output,) + out_spatial)
        self.out_spatial = out_spatial
        image_spatial, col_spatial = ((out_spatial, in_spatial) if self.transposed
                                      else (in_spatial, out_spatial))
        self.p_image, self.p_col = _prod(image_spatial), _prod(col_spatial)
        if self._geometry_key == (self.num, in_spatial):
            return
        self._geometry_key = (self.num, in_spatial)
        self.algo = None            # chosen at the first forward of this shape
        self._train_choice_made = False     # ... and re-chosen at its first backward
        self._wg_fwd = self._wg_bwd = self._wg_holds = None
        self._wg_seen = (None, None)     # (workspace, the weights its filters came from)
        self.ops = _ColumnOps(self.kernel, self.stride, self.pad, self.dilation,
                              image_spatial, col_spatial)
        self._setup_blocked(image_spatial, col_spatial)
        rows = self.c_image * self.kernel_count
        per_image = rows * max(self.p_col, 1)
        self.chunk = max(1, min(self.num, COL_BUFFER_LIMIT // max(per_image, 1)))
        self._col_holds = None

    # -- the pieces ------------------------------------------------------------
    def _chunks(self):
        for n0 in range(0, self.num, self.chunk):
            yield n0, min(n0 + self.chunk, self.num)

    def _buffers(self, n, column_side=True):
        """The column matrix (rows, n*P) and the column-side matrix (c_col, n*P), or None
        for the latter when not ``column_side``."""
        cols = n * self.p_col
        rows = self.c_image * self.kernel_count
        if self._col.size < rows * cols:        # allocated at first use: the blocked
            self._col = np.zeros(rows * cols, np.float32)     # route needs no full-size one
        col = self._col[: rows * cols]
        if not column_side:
            return col, None
        if self._cs.size < self.c_col * cols:
            self._cs = np.zeros(self.c_col * cols, np.float32)
        return col, self._cs[: self.c_col * cols].reshape(self.c_col, cols)

    def _groups(self, col, cs):
        """Per group: weight rows (col_group, k_group), column rows, column-side rows."""
        w = self.blobs[0].data.reshape(self.c_col, self.k_group)
        col2d = col.reshape(self.c_image * self.kernel_count, -1)
        for g in range(self.group):
            rw = slice(g * self.col_group, (g + 1) * self.col_group)
            rc = slice(g * self.k_group, (g + 1) * self.k_group)
            yield g, w[rw], col2d[rc], cs[rw]

    def _image_to_col(self, image, col):
        """col = im2col(image); image: (n, c_image, p_image)."""
        n = image.shape[0]
        cols = n * self.p_col
        if self.is_1x1:
            K.nc_to_cn(image, col.reshape(self.c_image, cols), NO_BIAS)
        else:
            self.ops.im2col(image, col, cols, self.p_col)

    def _col_to_image(self, col, image, bias):
        """image = col2im(col) + bias; image: (n, c_image, p_image)."""
        n = image.shape[0]
        if self.is_1x1:
            K.cn_to_nc(col.reshape(self.c_image, n * self.p_col), image, bias, False, 0.0)
        else:
            self.ops.col2im(col, image, n * self.p_col, self.p_col, bias)

    def _forward_product(self, image, out, bias, have_col=False, relu_slope=None):
        """Convolution proper: out (n, c_col, p_col) = W * image (n, c_image, p_image) + bias.

        ``have_col``: the column buffer already holds im2col(image); ``relu_slope``: not
        None applies a (leaky) ReLU of that slope in the output pass."""
        n = image.shape[0]
        relu, slope = relu_slope is not None, float(relu_slope or 0.0)
        if self.is_1x1:
            G = self.group
            w = self.blobs[0].data.reshape(G, self.col_group, self.c_image // G)
            np.matmul(w, image.reshape(n, G, self.c_image // G, self.p_image),
                      out=out.reshape(n, G, self.col_group, self.p_col))
            if bias.size or relu:
                K.add_channel_bias(out, bias, relu, slope)
            return
        one_image = n == 1 and out.flags.c_contiguous      # (c_col, p_col) is then out
        col, cs = self._buffers(n, column_side=not one_image)
        if not have_col:
            self._image_to_col(image, col)
        product = out.reshape(self.c_col, self.p_col) if one_image else cs
        for _, w_g, col_g, cs_g in self._groups(col, product):
            np.dot(w_g, col_g, out=cs_g)
        if not one_image:
            K.cn_to_nc(cs, out, bias, relu, slope)
        elif bias.size or relu:
            K.add_channel_bias(out, bias, relu, slope)

    def _transpose_product(self, cs, image, bias, source=None):
        """image (n, c_image, p_image) = W^T * cs + bias, where cs (c_col, n*p_col) holds
        the column side in GEMM order.  In the 1x1 case ``source`` (n, c_col, p_col), the
        same values in NCHW order, feeds a batched matmul instead."""
        n = image.shape[0]
        if self.is_1x1 and source is not None:
            G = self.group
            w = self.blobs[0].data.reshape(G, self.col_group, self.c_image // G)
            np.matmul(w.transpose(0, 2, 1), source.reshape(n, G, self.col_group, self.p_col),
                      out=image.reshape(n, G, self.c_image // G, self.p_image))
            if bias.size:
                K.add_channel_bias(image, bias, False, 0.0)
            return
        col, _ = self._buffers(n)
        for _, w_g, col_g, cs_g in self._groups(col, cs):
            np.dot(w_g.T, cs_g, out=col_g)
        self._col_to_image(col, image, bias)

    def _accumulate_weight_diff(self, col, cs):
        """dW_g += cs_g @ col_g^T for every group."""
        dw = self.blobs[0].diff.reshape(self.c_col, self.k_group)
        for g, _, col_g, cs_g in self._groups(col, cs):
            np.dot(cs_g, col_g.T, out=self._dw)
            dw[g * self.col_group:(g + 1) * self.col_group] += self._dw

    def _views(self, blob, n0, n1, channels, positions, diff=False):
        arr = blob.diff if diff else blob.data
        return arr.reshape(self.num, channels, positions)[n0:n1]

    def _weight_grad_wanted(self):
        down = self.param_propagate_down
        return not down or down[0]

    def _bias_grad_wanted(self):
        down = self.param_propagate_down
        return self.bias_term and (len(down) < 2 or down[1])

    def _bias(self):
        return self.blobs[1].data if self.bias_term else NO_BIAS


@register("Convolution")
class Convolution(_ConvolutionBase):
    """top = W * bottom + b, a (grouped, dilated, N-D) cross-correlation per image.

    Output size per spatial axis: (in + 2 pad - (dilation (kernel - 1) + 1)) / stride + 1.
    Weights (num_output, C / group, *kernel), bias (num_output,).  Each bottom/top pair
    uses the same weights.

    Two load-time rewrites for nets that fold layers into this one: ``fuse_relu`` (a
    following in-place ReLU applied in the output pass) and ``fold_affine`` (a following
    per-channel affine map, e.g. inference BatchNorm + Scale, folded into W and b).
    """

    def fuse_relu(self, negative_slope):
        """From now on forward applies y = max(z, 0) + negative_slope * min(z, 0) to its
        output z (after the bias) in the same output pass; ``None`` switches it off.

        Backward is unchanged: the net keeps the (in-place) ReLU layer's backward, which
        sees the post-activation top, whose sign is the pre-activation sign for slopes
        >= 0.  Applying the ReLU a second time in the ReLU layer is then harmless too.
        """
        self.fused_relu = None if negative_slope is None else float(negative_slope)

    def fold_affine(self, scale, shift):
        """Fold a per-output-channel affine map y' = scale * y + shift into the weights:
        W[c] *= scale[c]; b[c] = b[c] * scale[c] + shift[c].  A layer without a bias term
        gains one (appended as ``blobs[1]``, holding ``shift``; its propagate-down flag
        copies the weights').

        For inference nets only (e.g. BatchNorm with use_global_stats + Scale after this
        layer, folded at load time): it changes the parameters in place, so the gradients
        of the original W and b are no longer what a solver would want.
        """
        scale = np.asarray(scale, np.float32).reshape(-1)
        shift = np.asarray(shift, np.float32).reshape(-1)
        if scale.size != self.num_output or shift.size != self.num_output:
            raise ShapeError(f"{self.describe()}: fold_affine needs one scale and shift per "
                             f"output channel ({self.num_output}); got {scale.size} and "
                             f"{shift.size}")
        w = self.blobs[0].data
        w *= scale.reshape((-1,) + (1,) * (w.ndim - 1))
        if self.bias_term:
            b = self.blobs[1].data
            b *= scale
            b += shift
        else:
            self.new_param_blob((self.num_output,)).data[...] = shift
            self.bias_term = True
            down = list(self.param_propagate_down)      # the new bias learns as W does
            self.param_propagate_down = down + [down[0] if down else True]

    def forward(self, bottom, top):
        if self.algo is None:
            self.algo = self._choose_algorithm(bottom[0], top[0])
        if self.algo == "winograd":
            for b, t in zip(bottom, top, strict=True):
                self._winograd_forward(b, t)
            self._col_holds = None
            return
        if self.algo == "blocked":
            for b, t in zip(bottom, top, strict=True):
                self._blocked_forward(b, t)
            self._col_holds = None
            return
        single = self.chunk >= self.num
        for i, (b, t) in enumerate(zip(bottom, top, strict=True)):
            self._gemm_forward(b, t)
            self._col_holds = i if single and not self.is_1x1 else None

    def _gemm_forward(self, b, t):
        for n0, n1 in self._chunks():
            self._forward_product(self._views(b, n0, n1, self.c_image, self.p_image),
                                  self._views(t, n0, n1, self.c_col, self.p_col),
                                  self._bias(), relu_slope=self.fused_relu)

    # -- the Winograd route ------------------------------------------------------
    def _image_4d(self, blob, channels, diff=False):
        arr = blob.diff if diff else blob.data
        return arr.reshape((self.num, channels) + blob.shape[self.channel_axis + 1:])

    def _winograd_general(self):
        """Whether this layer shape takes the general F(m, r) (else the hand-written
        F(2x2, 3x3))."""
        return (self.kernel[0] != 3 or self.num >= GENERAL_3X3_MIN_BATCH
                or min(self.out_spatial) >= GENERAL_3X3_MIN_SIDE)

    def _winograd_workspace(self, channels, num_output, out_spatial):
        """Buffers (and transforms) of this layer's Winograd variant for one product."""
        if not self._winograd_general():
            return WG.Workspace(self.num, channels, num_output, *out_spatial, group=self.group)
        return WGG.Workspace(WINOGRAD_TILE[self.kernel[0]], self.kernel[0], self.num, channels,
                             num_output, *out_spatial, group=self.group)

    def _winograd(self, *args, **kwargs):
        (WGG.convolve if self._winograd_general() else WG.conv3x3)(*args, **kwargs)

    def _winograd_forward(self, b, t):
        x = self._image_4d(b, self.c_image)
        y = self._image_4d(t, self.c_col)
        if self._wg_fwd is None:
            self._wg_fwd = self._winograd_workspace(self.c_image, self.c_col, y.shape[2:])
        self._winograd(x, self.blobs[0].data, self._bias(), y, *self.pad, self._wg_fwd,
                       filters_ready=self._filters_transformed(), relu_slope=self.fused_relu)
        self._wg_holds = b

    def _filters_transformed(self):
        """Whether the forward workspace already holds the transform of the current weights.

        A TEST net keeps a copy of the weights it last transformed and compares bits: the
        comparison reads the weights twice, the transform cost up to 10x more (1.1 ms for
        GoogLeNet's 192 x 128 x 3 x 3 inception_3b/3x3 at batch 1, whose whole Winograd
        forward is then 1.9 ms).  Weights changed in place (net surgery, a new
        caffemodel) fail the comparison and are transformed again.  Inside an inference
        plan's forward (``filters_tracked``) the layer skips even the comparison: the plan
        calls ``forget_filters`` whenever the net's weights may change, as it refolds
        then.  A TRAIN net's weights change every step, so it transforms them every time.
        """
        if self.phase == TRAIN:
            return False
        w = self.blobs[0].data
        work, seen = self._wg_seen
        if work is self._wg_fwd and (self.filters_tracked or (
                seen is not None and seen.shape == w.shape and np.array_equal(
                    seen.view(np.uint32), w.view(np.uint32)))):  # bits: -0.0 and NaN too
            return True
        self._wg_seen = (self._wg_fwd, None if self.filters_tracked else w.copy())
        return False

    def forget_filters(self):
        """The weights may have changed: transform them again at the next forward."""
        self._wg_seen = (None, None)

    def _winograd_weight_gradient(self, t, b, bias_diff, want_w):
        """F(m, r)'s weight (and bias) gradient, from the input transform the forward left
        in its workspace (redone when that was another bottom's)."""
        dy = self._image_4d(t, self.c_col, diff=True)
        if not want_w:
            bias_diff += dy.sum(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
            return
        if self._wg_fwd is None:
            self._wg_fwd = self._winograd_workspace(self.c_image, self.c_col, self.out_spatial)
        if self._wg_holds is not b:
            WGG.transform_bottom(self._image_4d(b, self.c_image), *self.pad, self._wg_fwd)
            self._wg_holds = b
        WGG.weight_gradient(dy, self._wg_fwd, self.blobs[0].diff, bias_diff)

    def _winograd_data_gradient(self, t, b):
        """dbottom = dtop convolved with the flipped, transposed filters (per group), pad
        r - 1 - pad."""
        dy = self._image_4d(t, self.c_col, diff=True)
        dx = self._image_4d(b, self.c_image, diff=True)
        if self._wg_bwd is None:
            self._wg_bwd = self._winograd_workspace(self.c_col, self.c_image, dx.shape[2:])
        back_pad = [self.kernel[0] - 1 - p for p in self.pad]
        w_back = WGG.flip_filters(self.blobs[0].data, self.group)
        self._winograd(dy, w_back, NO_BIAS, dx, *back_pad, self._wg_bwd, relu_slope=None)

    def _candidates(self):
        """The routes that serve this layer; [1] (else [0]) stands in for a forced route
        that does not apply."""
        return ["gemm"] + ["blocked"] * self.blocked_ok + ["winograd"] * (
            self.winograd_ok and self._winograd_floats() <= WINOGRAD_MAX_FLOATS)

    def _winograd_floats(self):
        """Floats of one Winograd product's transformed input and output (V and M): A*A
        per tile for each input and output channel; tiles from the top's size."""
        m = WINOGRAD_TILE[self.kernel[0]] if self._winograd_general() else WG.TILE
        side = m + self.kernel[0] - 1
        tiles_h, tiles_w = WGG.tiles(*self.out_spatial, m)
        return side * side * (self.c_image + self.c_col) * self.num * tiles_h * tiles_w

    def _timed_candidates(self):
        """The routes ``auto`` times: blocked only up to ``BLOCKED_MAX_OUTPUTS`` outputs
        per group (beyond, the whole-batch GEMM is compute-bound already, and the blocked
        route measured equal or slower: CaffeNet's 96-384)."""
        skip = "blocked" if self.col_group > BLOCKED_MAX_OUTPUTS else None
        return [a for a in self._candidates() if a != skip]

    def _shape_key(self, b, *what):
        return (self.num, self.c_image) + b.shape[self.channel_axis + 1:] + (
            self.c_col,) + self.kernel + self.stride + self.pad + self.dilation + (
            self.group,) + what

    def _choose_algorithm(self, b, t):
        """The route for this layer shape at its first forward: the one the environment
        forces where it applies ("blocked", else "gemm", where not); in a TEST net the
        fastest forward (timed once per shape and process); in a TRAIN net a default
        ("blocked" where it applies) until the first backward times whole steps."""
        algo = requested_algorithm()
        if algo != "auto":
            candidates = self._candidates()
            return algo if algo in candidates else candidates[min(1, len(candidates) - 1)]
        candidates = self._timed_candidates()
        if len(candidates) == 1:
            return candidates[0]
        if self.phase == TRAIN:
            timed = [_ALGO_CHOICE.get(self._shape_key(b, "train", x)) for x in (True, False)]
            return next((a for a in timed if a), candidates[1])
        key = self._shape_key(b, "test")
        if key not in _ALGO_CHOICE:
            def run(a):
                self.algo = a
                self.forward([b], [t])
            _ALGO_CHOICE[key] = _fastest(candidates, run, TEST_TIMING_ROUNDS)
            self._release_unused(_ALGO_CHOICE[key])
        return _ALGO_CHOICE[key]

    def _release_unused(self, algo):
        """Drop the buffers of the routes timed but not chosen (the whole-batch column
        matrix alone is 82 MB at CIFAR10-quick's conv2)."""
        self._col_holds = None
        if algo != "gemm":
            self._col = self._cs = np.zeros(0, np.float32)
        if algo != "winograd":
            self._wg_fwd = self._wg_bwd = self._wg_holds = None
            self._wg_seen = (None, None)
        if algo == "gemm":
            self._part_buffers = {}

    def _choose_for_training(self, top, propagate_down, bottom):
        """At the first backward (auto mode): the route whose forward + backward step is
        fastest for this shape, timed once per shape and process on the real blobs; the
        top data and parameter diffs are restored afterwards (the bottom diff is about
        to be overwritten anyway)."""
        self._train_choice_made = True
        candidates = self._timed_candidates()
        if requested_algorithm() != "auto" or len(candidates) == 1:
            return
        b, t = bottom[0], top[0]
        key = self._shape_key(b, "train", bool(propagate_down[0]))
        if key not in _ALGO_CHOICE:
            saved = [t.data.copy()] + [blob.diff.copy() for blob in self.blobs]

            def run(a):
                self.algo = a
                self.forward([b], [t])
                self.backward([t], propagate_down[:1], [b])
            _ALGO_CHOICE[key] = _fastest(candidates, run, 1)
            for blob, values in zip([t] + self.blobs, saved, strict=True):
                (blob.data if blob is t else blob.diff)[...] = values
            self._release_unused(_ALGO_CHOICE[key])
        self.algo = _ALGO_CHOICE[key]

    def backward(self, top, propagate_down, bottom):
        if not self._train_choice_made:
            self._choose_for_training(top, propagate_down, bottom)
        want_w, want_b = self._weight_grad_wanted(), self._bias_grad_wanted()
        bias_diff = self.blobs[1].diff if want_b else NO_BIAS
        if self.algo in ("blocked", "winograd"):
            winograd = self.algo == "winograd"
            for i, (t, b) in enumerate(zip(top, bottom, strict=True)):
                if winograd and self._winograd_general():
                    if want_w or want_b:
                        self._winograd_weight_gradient(t, b, bias_diff, want_w)
                    if propagate_down[i]:
                        self._winograd_data_gradient(t, b)
                    continue
                if propagate_down[i] and winograd:
                    self._winograd_data_gradient(t, b)
                want_x = propagate_down[i] and not winograd
                if want_w or want_b or want_x:   # F(2x2, 3x3): the blocked weight gradient
                    self._blocked_backward(t, b, bias_diff, want_w, want_x)
            return
        single = self.chunk >= self.num
        for i, (t, b) in enumerate(zip(top, bottom, strict=True)):
            if not (want_w or want_b or propagate_down[i]):
                continue
            for n0, n1 in self._chunks():
                col, cs = self._buffers(n1 - n0)
                dtop = self._views(t, n0, n1, self.c_col, self.p_col, diff=True)
                K.nc_to_cn(dtop, cs, bias_diff)
                if want_w:
                    if self._col_holds != i:
                        image = self._views(b, n0, n1, self.c_image, self.p_image)
                        self._image_to_col(image, col)
                        self._col_holds = i if single else None
                    self._accumulate_weight_diff(col, cs)
                if propagate_down[i]:
                    self._col_holds = None      # the data gradient reuses the column buffer
                    dbottom = self._views(b, n0, n1, self.c_image, self.p_image, diff=True)
                    self._transpose_product(cs, dbottom, NO_BIAS, source=dtop)


@register("Deconvolution")
class Deconvolution(_ConvolutionBase):
    """The transpose of Convolution: top = W^T * bottom + b (a "fractionally strided" conv).

    Output size per spatial axis: stride (in - 1) + dilation (kernel - 1) + 1 - 2 pad.
    Weights (C, num_output / group, *kernel), bias (num_output,).
    """

    transposed = True

    def forward(self, bottom, top):
        for b, t in zip(bottom, top, strict=True):
            for n0, n1 in self._chunks():
                _, cs = self._buffers(n1 - n0)
                src = self._views(b, n0, n1, self.c_col, self.p_col)
                if not self.is_1x1:
                    K.nc_to_cn(src, cs, NO_BIAS)
                self._transpose_product(cs, self._views(t, n0, n1, self.c_image, self.p_image),
                                        self._bias(), source=src)

    def backward(self, top, propagate_down, bottom):
        want_w, want_b = self._weight_grad_wanted(), self._bias_grad_wanted()
        for i, (t, b) in enumerate(zip(top, bottom, strict=True)):
            for n0, n1 in self._chunks():
                n = n1 - n0
                dtop = self._views(t, n0, n1, self.c_image, self.p_image, diff=True)
                if want_b:
                    K.channel_sum(dtop, self.blobs[1].diff)
                if want_w:
                    col, cs = self._buffers(n)
                    self._image_to_col(dtop, col)
                    K.nc_to_cn(self._views(b, n0, n1, self.c_col, self.p_col), cs, NO_BIAS)
                    self._accumulate_weight_diff(col, cs)
                if propagate_down[i]:
                    dbottom = self._views(b, n0, n1, self.c_col, self.p_col, diff=True)
                    self._forward_product(dtop, dbottom, NO_BIAS, have_col=want_w)


# -- Im2col ----------------------------------------------------------------------
@register("Im2col")
class Im2col(Layer):
    """The column matrix of each image as a blob: (N, C * prod(kernel), *out_spatial).

    Takes convolution_param (kernel/stride/pad/dilation, axis) as Convolution does;
    channel c, kernel offset k lands in channel c * prod(kernel) + k of the top.
    Backward is col2im.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def setup(self, bottom, top):
        p = self.layer_param.convolution_param
        b = bottom[0]
        self.channel_axis = canonical_axis(self, b, p.axis)
        self.num_spatial = b.num_axes - self.channel_axis - 1
        if self.num_spatial < 1:
            raise LayerError(f"{self.describe()}: bottom '{b.name}' {b.shape} has no spatial "
                             f"axes after the channel axis {self.channel_axis}")
        self.kernel, self.stride, self.pad, self.dilation = read_geometry(self, p,
                                                                          self.num_spatial)
        self.channels = b.shape[self.channel_axis]

    def reshape(self, bottom, top):
        b = bottom[0]
        first_spatial = self.channel_axis + 1
        if b.num_axes != first_spatial + self.num_spatial:
            raise ShapeError(f"{self.describe()}: bottom '{b.name}' {b.shape} changed its "
                             f"number of axes (expected {first_spatial + self.num_spatial})")
        _no_in_place(self, bottom, top)
        self.channels = b.shape[self.channel_axis]
        self.num = b.count_range(0, self.channel_axis)
        in_spatial = b.shape[first_spatial:]
        out_spatial = conv_out_shape(self, b, in_spatial, self.kernel, self.stride, self.pad,
                                     self.dilation)
        self.rows = self.channels * _prod(self.kernel)
        top[0].reshape(b.shape[:self.channel_axis] + (self.rows,) + out_spatial)
        self.p_in, self.p_out = _prod(in_spatial), _prod(out_spatial)
        self.ops = _ColumnOps(self.kernel, self.stride, self.pad, self.dilation, in_spatial,
                              out_spatial)

    def forward(self, bottom, top):
        image = bottom[0].data.reshape(self.num, self.channels, self.p_in)
        self.ops.im2col(image, top[0].data.reshape(-1), self.p_out, self.rows * self.p_out)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        image = bottom[0].diff.reshape(self.num, self.channels, self.p_in)
        self.ops.col2im(top[0].diff.reshape(-1), image, self.p_out, self.rows * self.p_out,
                        NO_BIAS)
