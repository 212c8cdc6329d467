"""DataTransformer: crop, mirror, subtract the mean, scale -- Caffe's order, one pass.

For every output pixel (Caffe's data_transformer):
    out[c, y, x'] = (in[c, y + h_off, x + w_off] - mean) * scale,  x' = w-1-x when mirrored
where ``mean`` is the mean file's pixel at the *uncropped* position (the crop offset
applies to the mean too) or the channel's ``mean_value``.  The crop is random in TRAIN
and centred in TEST; each item is mirrored with probability 1/2 when ``mirror`` is set
(Caffe draws this in both phases; nets set ``mirror: false`` for TEST).  All random
numbers are drawn up front per batch from the layer's generator, so a batch comes out
the same whether its items are transformed one by one or by parallel workers.
"""

import numpy as np
from numba import njit

from ..errors import DataError
from .images import COLOR, GRAY, UNCHANGED
from .mean import read_mean_file

TRAIN, TEST = 0, 1
_MEAN_NONE, _MEAN_FILE, _MEAN_VALUES = 0, 1, 2


@njit(cache=True, nogil=True)
def _transform_chw(src, out, h_off, w_off, mirror, mean_mode, mean, mean_values, scale):
    """src (C, H, W) uint8/float32 -> out (C, h, w) float32.

    ``mean_values`` is all zeros when there is no mean: (v - 0) * scale == v * scale.
    """
    C, h, w = out.shape
    for c in range(C):
        mv = mean_values[c]
        for y in range(h):
            srow = src[c, y + h_off, w_off:w_off + w]
            orow = out[c, y]
            if mean_mode == 1:
                mrow = mean[c, y + h_off, w_off:w_off + w]
                if mirror:
                    for x in range(w):
                        orow[w - 1 - x] = (np.float32(srow[x]) - mrow[x]) * scale
                else:
                    for x in range(w):
                        orow[x] = (np.float32(srow[x]) - mrow[x]) * scale
            elif mirror:
                for x in range(w):
                    orow[w - 1 - x] = (np.float32(srow[x]) - mv) * scale
            else:
                for x in range(w):
                    orow[x] = (np.float32(srow[x]) - mv) * scale


@njit(cache=True, nogil=True)
def _transform_hwc(src, out, h_off, w_off, mirror, mean_mode, mean, mean_values, scale):
    """src (H, W, C) uint8 (a decoded BGR image, any strides) -> out (C, h, w) float32.

    Channel-outer loops: contiguous writes, strided reads (faster than pixel-outer).
    """
    C, h, w = out.shape
    for c in range(C):
        mv = mean_values[c]
        for y in range(h):
            sy = y + h_off
            if mean_mode == 1:
                if mirror:
                    for x in range(w):
                        out[c, y, w - 1 - x] = \
                            (np.float32(src[sy, x + w_off, c]) - mean[c, sy, x + w_off]) * scale
                else:
                    for x in range(w):
                        out[c, y, x] = \
                            (np.float32(src[sy, x + w_off, c]) - mean[c, sy, x + w_off]) * scale
            elif mirror:
                for x in range(w):
                    out[c, y, w - 1 - x] = (np.float32(src[sy, x + w_off, c]) - mv) * scale
            else:
                for x in range(w):
                    out[c, y, x] = (np.float32(src[sy, x + w_off, c]) - mv) * scale


@njit(cache=True, nogil=True)
def _transform_batch_chw(src, out, h_offs, w_offs, mirrors, mean_mode, mean, mean_values,
                         scale):
    """src (N, C, H, W) -> out (N, C, h, w): the whole batch in one call."""
    for n in range(src.shape[0]):
        _transform_chw(src[n], out[n], h_offs[n], w_offs[n], mirrors[n], mean_mode, mean,
                       mean_values, scale)


@njit(cache=True, nogil=True)
def _transform_batch_flat(buf, data_offsets, C, H, W, out, h_offs, w_offs, mirrors,
                          mean_mode, mean, mean_values, scale):
    """Item n is the (C, H, W) uint8 image at buf[data_offsets[n]:] -> out[n]."""
    size = C * H * W
    for n in range(out.shape[0]):
        start = data_offsets[n]
        src = buf[start:start + size].reshape((C, H, W))
        _transform_chw(src, out[n], h_offs[n], w_offs[n], mirrors[n], mean_mode, mean,
                       mean_values, scale)


class DataTransformer:
    """Caffe's TransformationParameter applied to images (CHW or decoded HWC).

    ``param`` is a TransformationParameter (or anything with its attributes); ``phase``
    0 TRAIN / 1 TEST; ``rng`` a numpy Generator (the layer's).  ``where`` prefixes error
    messages (the layer's description).
    """

    def __init__(self, param, phase, rng, where=""):
        self.where = where
        self.phase = int(phase)
        self.rng = rng
        self.scale = np.float32(param.scale)
        self.mirror = bool(param.mirror)
        self.crop_size = int(param.crop_size)
        self.force_color = bool(param.force_color)
        self.force_gray = bool(param.force_gray)
        if self.force_color and self.force_gray:
            raise DataError(self._msg("force_color and force_gray cannot both be set"))
        mean_file = getattr(param, "mean_file", "")
        self.mean_values = np.asarray(list(param.mean_value), np.float32)
        if mean_file and self.mean_values.size:
            raise DataError(self._msg("cannot specify mean_file and mean_value at the same "
                                      "time"))
        self.mean = read_mean_file(mean_file) if mean_file else None
        if self.mean is not None:
            self.mean_mode = _MEAN_FILE
        elif self.mean_values.size:
            self.mean_mode = _MEAN_VALUES
        else:
            self.mean_mode = _MEAN_NONE
        self._empty_mean = np.zeros((1, 1, 1), np.float32)
        self._values_cache = {}

    def _msg(self, text):
        return f"{self.where}: {text}" if self.where else text

    @property
    def decode_color(self):
        """How encoded images decode: True colour, False gray, None as stored."""
        if self.force_color:
            return COLOR
        if self.force_gray:
            return GRAY
        return UNCHANGED

    @property
    def needs_random(self):
        return self.mirror or (self.phase == TRAIN and self.crop_size > 0)

    # -- shapes ----------------------------------------------------------------
    def output_shape(self, channels, height, width, what="the image"):
        """(C, h, w) of the transformed image; checks the crop and the mean against it."""
        crop = self.crop_size
        if crop and (height < crop or width < crop):
            raise DataError(self._msg(f"{what} is {height}x{width}, smaller than crop_size "
                                      f"{crop}"))
        self.check_mean(channels, height, width, what)
        return (channels, crop or height, crop or width)

    def check_mean(self, channels, height, width, what="the image"):
        if self.mean_mode == _MEAN_FILE:
            if self.mean.shape != (channels, height, width):
                raise DataError(self._msg(
                    f"the mean file has shape {self.mean.shape} (C, H, W) but {what} is "
                    f"{(channels, height, width)}: the mean must match the uncropped data"))
        elif self.mean_mode == _MEAN_VALUES:
            if self.mean_values.size not in (1, channels):
                raise DataError(self._msg(
                    f"specify either 1 mean_value or as many as channels: {what} has "
                    f"{channels} channels, {self.mean_values.size} mean_value given"))

    def _values(self, channels):
        vals = self._values_cache.get(channels)
        if vals is None:
            if self.mean_mode == _MEAN_VALUES:
                vals = np.broadcast_to(self.mean_values, (channels,)).astype(np.float32) \
                    if self.mean_values.size == 1 else self.mean_values
            else:
                vals = np.zeros(channels, np.float32)
            self._values_cache[channels] = np.ascontiguousarray(vals, np.float32)
            vals = self._values_cache[channels]
        return vals

    # -- randomness ------------------------------------------------------------
    def draw(self, n):
        """Uniform numbers for ``n`` items: column 0 mirror, 1 and 2 the crop offsets."""
        if not self.needs_random:
            return None
        return self.rng.random((n, 3))

    def placement(self, draws, i, height, width):
        """(h_off, w_off, mirror) for item ``i`` of an image of height x width."""
        crop = self.crop_size
        h_off = w_off = 0
        if crop:
            if self.phase == TRAIN:
                h_off = int(draws[i, 1] * (height - crop + 1))
                w_off = int(draws[i, 2] * (width - crop + 1))
            else:
                h_off = (height - crop) // 2
                w_off = (width - crop) // 2
        mirror = self.mirror and draws[i, 0] < 0.5
        return h_off, w_off, mirror

    # -- transforms ------------------------------------------------------------
    def transform(self, img, layout, out, draws=None, i=0):
        """Transform one image (CHW array, or HWC decoded image) into ``out`` (C, h, w)."""
        if layout == "HWC":
            height, width, channels = img.shape
        else:
            channels, height, width = img.shape
        if out.shape != self.output_shape(channels, height, width):
            raise DataError(self._msg(f"an image of shape {(channels, height, width)} does "
                                      f"not fit the batch's item shape {out.shape}"))
        if draws is None and self.needs_random:
            draws = self.draw(1)
            i = 0
        h_off, w_off, mirror = self.placement(draws, i, height, width) if draws is not None \
            else (*self._centre(height, width), False)
        mean = self.mean if self.mean_mode == _MEAN_FILE else self._empty_mean
        kernel = _transform_hwc if layout == "HWC" else _transform_chw
        if img.dtype != np.uint8 and img.dtype != np.float32:
            img = img.astype(np.float32)
        kernel(img, out, h_off, w_off, mirror, self.mean_mode, mean, self._values(channels),
               self.scale)
        return out

    def _centre(self, height, width):
        crop = self.crop_size
        if not crop:
            return 0, 0
        return (height - crop) // 2, (width - crop) // 2

    def placements(self, n, height, width, draws=None):
        """Arrays (h_offs, w_offs, mirrors) for ``n`` images of one size."""
        if draws is None:
            draws = self.draw(n)
        crop = self.crop_size
        if draws is None:
            h0, w0 = self._centre(height, width)
            return (np.full(n, h0, np.int64), np.full(n, w0, np.int64),
                    np.zeros(n, np.bool_))
        if crop and self.phase == TRAIN:
            h_offs = (draws[:, 1] * (height - crop + 1)).astype(np.int64)
            w_offs = (draws[:, 2] * (width - crop + 1)).astype(np.int64)
        else:
            h0, w0 = self._centre(height, width)
            h_offs, w_offs = np.full(n, h0, np.int64), np.full(n, w0, np.int64)
        mirrors = (draws[:, 0] < 0.5) if self.mirror else np.zeros(n, np.bool_)
        return h_offs, w_offs, mirrors

    def transform_batch(self, src, out, draws=None):
        """Transform a stacked (N, C, H, W) uint8/float32 batch into ``out`` (N, C, h, w)."""
        n, channels, height, width = src.shape
        shape = self.output_shape(channels, height, width)
        if out.shape != (n,) + shape:
            raise DataError(self._msg(f"batch of shape {src.shape} does not fit output "
                                      f"{out.shape}"))
        h_offs, w_offs, mirrors = self.placements(n, height, width, draws)
        mean = self.mean if self.mean_mode == _MEAN_FILE else self._empty_mean
        _transform_batch_chw(src, out, h_offs, w_offs, mirrors, self.mean_mode, mean,
                             self._values(channels), self.scale)
        return out

    def transform_flat(self, buf, data_offsets, dims, out, draws=None):
        """Like ``transform_batch`` for raw uint8 images lying at ``data_offsets`` in
        ``buf`` (serialized records), all of shape ``dims`` (C, H, W)."""
        n = data_offsets.shape[0]
        channels, height, width = dims
        shape = self.output_shape(channels, height, width)
        if out.shape != (n,) + shape:
            raise DataError(self._msg(f"{n} images of shape {dims} do not fit output "
                                      f"{out.shape}"))
        h_offs, w_offs, mirrors = self.placements(n, height, width, draws)
        mean = self.mean if self.mean_mode == _MEAN_FILE else self._empty_mean
        _transform_batch_flat(buf, data_offsets, channels, height, width, out, h_offs,
                              w_offs, mirrors, self.mean_mode, mean, self._values(channels),
                              self.scale)
        return out
