"""The blocked convolution route: a minibatch in cache-sized chunks of images, one worker
per core (see the Convolution docstring in conv.py for what it computes and when it is
chosen).

Each pass runs one worker per core (kernels/conv_threads.py); the workers take the
minibatch's chunks from one shared queue, so a core slowed by other processes simply
takes fewer.  Every worker has its own buffers (the hot path allocates nothing) and its
own weight-gradient accumulator.
"""

import numpy as np

from ..kernels import conv as K
from ..kernels import conv_blocked as KB
from ..kernels import conv_threads as TH

# The blocked route works on chunks of images whose column matrix has about this many
# floats (1 MiB: one core's L2), so im2col writes it into cache and the GEMM reads it
# from there, instead of streaming a whole-batch column matrix through memory.
BLOCK_FLOATS = 1 << 18
# Pixel-major columns copy runs of kernel_w * C floats; below this the channel-major
# layout's runs of out_w floats were faster (CIFAR10-quick's conv1: 15 vs 32).
PIXEL_MIN_RUN = 32
# The data gradient as a convolution is a GEMM with one column per bottom channel: with
# fewer than this (an RGB input), W^T dtop + col2im was faster.
DGRAD_MIN_CHANNELS = 8
# ... and it multiplies every kernel tap over the whole bottom, padding included: for an
# unpadded ("valid") convolution, whose bottom is larger than its top, that is this many
# times (bottom / top pixels) the work of W^T dtop; allowed up to this ratio.
DGRAD_MAX_GROWTH = 1.3
NO_BIAS = np.zeros(0, np.float32)


class BlockedRoute:
    """The blocked route's methods, mixed into the convolution layers; they use the
    layer's geometry (``num``, ``c_image``, ``c_col``, ``p_image``, ``p_col``, ``ops``...)
    and its gemm-route pieces (``_views``, ``_bias``, ``_buffers``...)."""

    def _setup_blocked(self, image_spatial, col_spatial):
        """Geometry of the blocked route (2-D, not 1x1): its chunk size, its column layout
        (pixel-major for ungrouped undilated kernels whose rows of kernel_w * C floats
        are long enough, else channel-major) and, for stride-1 undilated kernels, the
        convolution that computes the data gradient: dtop padded by kernel - 1 - pad,
        correlated with the rotated, transposed filters."""
        self.blocked_ok = self.ops.two_d and not self.is_1x1 and not self.transposed
        self.dgrad_ops = None
        if not self.blocked_ok:
            return
        rows = self.c_image * self.kernel_count
        self.block = max(1, min(self.num, BLOCK_FLOATS // max(rows * self.p_col, 1)))
        undilated = self.group == 1 and self.dilation == (1, 1)
        self.pixel_layout = undilated and self.kernel[1] * self.c_image >= PIXEL_MIN_RUN
        self.dgrad_pixels = undilated and self.kernel[1] * self.c_col >= PIXEL_MIN_RUN
        back_pad = tuple(k - 1 - p for k, p in zip(self.kernel, self.pad, strict=True))
        if (self.stride == (1, 1) and self.dilation == (1, 1) and min(back_pad) >= 0
                and self.c_image // self.group >= DGRAD_MIN_CHANNELS
                and self.p_image <= DGRAD_MAX_GROWTH * self.p_col):
            # the layer's own column-ops class (conv.py's, which imports this module)
            self.dgrad_ops = type(self.ops)(self.kernel, (1, 1), back_pad, (1, 1),
                                            col_spatial, image_spatial)
            self.dgrad_block = max(1, min(self.num, BLOCK_FLOATS // max(
                self.c_col * self.kernel_count * self.p_image, 1)))

    def _chunk_queue(self, block):
        """(number of workers, an iterator over the chunks' (first, stop) image ranges
        that all workers draw from)."""
        starts = range(0, self.num, block)
        workers = max(1, min(TH.worker_count(), len(starts)))
        return workers, iter([(n0, min(n0 + block, self.num)) for n0 in starts])

    def _part_buffer(self, part, name, floats):
        """Worker ``part``'s private float32 buffer ``name`` of at least ``floats``."""
        key = (name, part)
        buf = self._part_buffers.get(key)
        if buf is None or buf.size < floats:
            buf = self._part_buffers[key] = np.empty(floats, np.float32)
        return buf[:floats]

    def _blocked_forward(self, b, t):
        """Per chunk of images: im2col into a cache-sized buffer, the GEMM, then the bias
        (and fused ReLU) while the chunk is still in cache.  Pixel-major columns give
        (pixels, channels), which the bias pass transposes into NCHW; channel-major ones
        are laid out per image (n, rows, P), so one GEMM per image and group writes NCHW
        directly."""
        rows, p_col = self.c_image * self.kernel_count, self.p_col
        bias = self._bias()
        relu, slope = self.fused_relu is not None, float(self.fused_relu or 0.0)
        w = self.blobs[0].data.reshape(self.c_col, self.k_group)
        cg, kg = self.col_group, self.k_group
        workers, chunks = self._chunk_queue(self.block)

        if self.pixel_layout:       # W as (i, j, c) x num_output, to multiply pixel rows
            wt = np.ascontiguousarray(self.blobs[0].data.transpose(2, 3, 1, 0)).reshape(
                rows, self.c_col)

        def part(p):
            for n0, n1 in chunks:       # next() on a list iterator is atomic
                n = n1 - n0
                col = self._part_buffer(p, "col", n * rows * p_col)
                x = self._views(b, n0, n1, self.c_image, self.p_image)
                y = self._views(t, n0, n1, self.c_col, p_col)
                if self.pixel_layout:
                    self.ops.im2col_pixels(x, col)
                    yt = self._part_buffer(p, "out", n * p_col * self.c_col)
                    yt = yt.reshape(n * p_col, self.c_col)
                    np.dot(col.reshape(n * p_col, rows), wt, out=yt)
                    KB.pixels_to_nchw(yt, y, bias, relu, slope)
                    continue
                self.ops.im2col_serial(x, col, p_col, rows * p_col)
                col3 = col.reshape(n, rows, p_col)
                for g in range(self.group):
                    np.matmul(w[g * cg:(g + 1) * cg], col3[:, g * kg:(g + 1) * kg],
                              out=y[:, g * cg:(g + 1) * cg])
                if bias.size or relu:
                    KB.bias_act(y, bias, relu, slope)

        TH.run_parts(part, workers)

    def _blocked_backward(self, t, b, bias_diff, want_w, want_x):
        """Per chunk: the weight gradient dW += dtop @ im2col(bottom)^T (dtop moved to
        (C, n*P) order, summing the bias gradient on the way), and the data gradient as
        a forward convolution of dtop (``_setup_blocked``); each worker accumulates its
        own dW and bias sums, added up at the end."""
        want_b = bias_diff.size > 0
        rows, p_col, p_img = self.c_image * self.kernel_count, self.p_col, self.p_image
        cg, kg, G, kk = self.col_group, self.k_group, self.group, self.kernel_count
        ig = self.c_image // G
        as_conv = want_x and self.dgrad_ops is not None
        block = self.block if not as_conv else min(self.block, self.dgrad_block)
        if as_conv:     # the rotated filters, as (input channel) x (output channel, i, j)
            w = self.blobs[0].data.reshape((G, cg, ig) + self.kernel)[..., ::-1, ::-1]
            if self.dgrad_pixels:       # or as (i, j, output channel) x input channel
                wf = np.ascontiguousarray(w[0].transpose(2, 3, 0, 1)).reshape(cg * kk, ig)
            else:
                wf = np.ascontiguousarray(w.transpose(0, 2, 1, 3, 4)).reshape(G, ig, cg * kk)
        workers, chunks = self._chunk_queue(block)
        dws = np.zeros((workers, self.c_col, kg), np.float32) if want_w else None
        sums = np.zeros((workers, self.c_col) if want_b else (workers, 0))

        def part(p):
            for n0, n1 in chunks:
                n = n1 - n0
                dtop = self._views(t, n0, n1, self.c_col, p_col, diff=True)
                if want_w or want_b:
                    cs = self._part_buffer(p, "cs", self.c_col * n * p_col)
                    cs = cs.reshape(self.c_col, n * p_col)
                    KB.to_channel_rows(dtop, cs, sums[p])
                if want_w:
                    col = self._part_buffer(p, "col", rows * n * p_col)
                    x = self._views(b, n0, n1, self.c_image, p_img)
                    tmp = self._part_buffer(p, "dw", cg * kg).reshape(cg, kg)
                    if self.pixel_layout:
                        self.ops.im2col_pixels(x, col)
                        np.dot(cs, col.reshape(n * p_col, rows), out=tmp)
                        dws[p] += tmp
                    else:
                        self.ops.im2col_serial(x, col, n * p_col, p_col)
                        col2 = col.reshape(rows, n * p_col)
                        for g in range(G):
                            np.dot(cs[g * cg:(g + 1) * cg], col2[g * kg:(g + 1) * kg].T,
                                   out=tmp)
                            dws[p, g * cg:(g + 1) * cg] += tmp
                if as_conv:
                    drows = self.c_col * kk
                    col = self._part_buffer(p, "col", n * drows * p_img)
                    dx = self._views(b, n0, n1, self.c_image, p_img, diff=True)
                    if self.dgrad_pixels:
                        self.dgrad_ops.im2col_pixels(dtop, col)
                        dxt = self._part_buffer(p, "out", n * p_img * self.c_image)
                        dxt = dxt.reshape(n * p_img, self.c_image)
                        np.dot(col.reshape(n * p_img, drows), wf, out=dxt)
                        KB.pixels_to_nchw(dxt, dx, NO_BIAS, False, 0.0)
                        continue
                    self.dgrad_ops.im2col_serial(dtop, col, p_img, drows * p_img)
                    col3 = col.reshape(n, drows, p_img)
                    for g in range(G):
                        np.matmul(wf[g], col3[:, g * cg * kk:(g + 1) * cg * kk],
                                  out=dx[:, g * ig:(g + 1) * ig])

        TH.run_parts(part, workers)
        if want_w:
            dw_sum = dws.sum(axis=0)
            if self.pixel_layout:       # columns were (i, j, c): back to (c, i, j)
                dw_sum = dw_sum.reshape((self.c_col,) + self.kernel + (self.c_image,))
                dw_sum = dw_sum.transpose(0, 3, 1, 2)
            diff = self.blobs[0].diff
            diff += dw_sum.reshape(diff.shape)
        if want_b:
            bias_diff += sums.sum(axis=0).astype(np.float32)
        if want_x and not as_conv:      # strided / dilated: W^T dtop, then col2im
            for n0, n1 in self._chunks():
                _, cs = self._buffers(n1 - n0)
                dtop = self._views(t, n0, n1, self.c_col, self.p_col, diff=True)
                K.nc_to_cn(dtop, cs, NO_BIAS)
                dbottom = self._views(b, n0, n1, self.c_image, self.p_image, diff=True)
                self._transpose_product(cs, dbottom, NO_BIAS)
