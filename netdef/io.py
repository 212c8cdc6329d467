"""pycaffe's ``caffe.io``: images in, arrays and protos out (``import netdef as caffe``).

Same functions and conventions as pycaffe: ``load_image`` gives RGB float32 in [0, 1] as
H x W x C; ``Transformer`` turns such images into the net's C x H x W input (transpose,
channel swap to BGR, raw scale, mean, input scale) and back; Datum and BlobProto
converters for databases and mean files.

Differences from pycaffe, which leans on scikit-image: images are read with Pillow, and
``resize_image`` is bilinear (order 1) or nearest (order 0) on pixel centres with edge
pixels repeated, without scikit-image's optional antialiasing blur.
"""

import numpy as np

from .data.datum import array_to_datum as _array_to_datum
from .data.mean import array_to_blobproto as _array_to_blobproto
from .data.mean import blobproto_to_array as _blobproto_to_array
from .errors import DataError
from .proto import caffe_pb2

__all__ = ["blobproto_to_array", "array_to_blobproto", "arraylist_to_blobprotovector_str",
           "blobprotovector_str_to_arraylist", "array_to_datum", "datum_to_array",
           "Transformer", "load_image", "resize_image", "oversample"]


# -- protos ----------------------------------------------------------------------------------
class BlobShapeError(DataError, ValueError):
    """A BlobProto whose values do not fit its shape (a ValueError, as numpy's reshape
    raises in pycaffe)."""


def blobproto_to_array(blob, return_diff=False):
    """The blob's data (or diff) as an array shaped like the blob (legacy 4-D dims too)."""
    try:
        return _blobproto_to_array(blob, return_diff)
    except DataError as exc:
        raise BlobShapeError(str(exc)) from None


def array_to_blobproto(arr, diff=None):
    """A BlobProto with ``shape`` and data (and diff) from the array."""
    return _array_to_blobproto(arr, diff)


def arraylist_to_blobprotovector_str(arraylist):
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend(array_to_blobproto(arr) for arr in arraylist)
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(data):
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(data)
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr, label=None):
    """A Datum from a C x H x W array: raw bytes when uint8, else float_data."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError("Incorrect array shape.")
    return _array_to_datum(arr, label)


def datum_to_array(datum):
    """The Datum's pixels as C x H x W: uint8 from raw data, float from float_data."""
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        return np.frombuffer(datum.data, np.uint8).reshape(shape)
    return np.asarray(datum.float_data, np.float64).reshape(shape)


# -- images ----------------------------------------------------------------------------------
_GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])  # scikit-image's rgb2gray


def load_image(filename, color=True):
    """An image as float32 H x W x 3 RGB (or H x W x 1 when ``color`` is False) in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(filename) as im:
            im.load()
            arr, full = _pil_array(im)
    except FileNotFoundError:
        raise DataError(f"image {filename!r} not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {filename!r}: {exc}") from None
    img = arr.astype(np.float64) / full
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if not color and img.ndim == 3:
        img = img @ _GRAY_WEIGHTS
    img = img.astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    return img


def _pil_array(im):
    """(array, full-scale value) keeping gray images single-channel and 16 bits as such."""
    if im.mode.startswith("I;16") or im.mode == "I":
        return np.asarray(im).astype(np.float64), 65535.0
    if im.mode == "F":
        return np.asarray(im).astype(np.float64), 1.0
    if im.mode in ("L", "1"):
        return np.asarray(im.convert("L")), 255.0
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return np.asarray(im.convert("RGBA")), 255.0
    return np.asarray(im.convert("RGB")), 255.0


def _axis_map(n_in, n_out, order):
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    if order == 0:
        i = np.clip(np.floor(x + 0.5).astype(np.int64), 0, n_in - 1)
        return i, i, np.zeros(n_out)
    x = np.clip(x, 0, n_in - 1)
    i0 = np.floor(x).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, x - i0


def resize_image(im, new_dims, interp_order=1):
    """Resize an H x W x K image to ``new_dims`` (height, width); float32 out.

    ``interp_order`` 1 is bilinear, 0 nearest neighbour.  A constant image stays constant.
    """
    im = np.asarray(im)
    h, w = int(new_dims[0]), int(new_dims[1])
    if interp_order not in (0, 1):
        raise ValueError(f"interp_order {interp_order} not supported (0 nearest, 1 bilinear)")
    squeeze = im.ndim == 2
    src = (im[:, :, None] if squeeze else im).astype(np.float64)
    lo, hi = (float(src.min()), float(src.max())) if src.size else (0.0, 0.0)
    if hi == lo:
        out = np.full((h, w, src.shape[2]), lo, np.float32)
        return out[:, :, 0] if squeeze else out
    y0, y1, fy = _axis_map(src.shape[0], h, interp_order)
    x0, x1, fx = _axis_map(src.shape[1], w, interp_order)
    rows = src[y0] * (1 - fy)[:, None, None] + src[y1] * fy[:, None, None]
    out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    out = out.astype(np.float32)
    return out[:, :, 0] if squeeze else out


def oversample(images, crop_dims):
    """Ten crops per image: the four corners and the centre, and their mirrors.

    ``images`` is a list of H x W x K images (all one size); returns
    (10 * len(images), crop_h, crop_w, K) float32.
    """
    shape = np.asarray(images[0].shape)
    crop = np.asarray(crop_dims, np.int64)
    corners = [(0, 0), (0, shape[1] - crop[1]), (shape[0] - crop[0], 0),
               (shape[0] - crop[0], shape[1] - crop[1])]
    centre = (shape[:2] / 2.0 - crop / 2.0).astype(np.int64)
    starts = corners + [tuple(centre)]
    out = np.empty((10 * len(images), crop[0], crop[1], shape[-1]), np.float32)
    k = 0
    for im in images:
        for y, x in starts:
            out[k] = im[y:y + crop[0], x:x + crop[1], :]
            k += 1
        out[k:k + 5] = out[k - 5:k, :, ::-1, :]
        k += 5
    return out


class Transformer:
    """Prepare images for a net's inputs, per input blob (pycaffe's caffe.io.Transformer).

    ``inputs`` maps an input name to its blob shape (N, C, H, W).  ``preprocess``: resize
    to (H, W) when needed, transpose, swap channels, multiply by raw_scale, subtract the
    mean, multiply by input_scale.  ``deprocess`` undoes it in reverse.
    """

    def __init__(self, inputs):
        self.inputs = {k: tuple(v) for k, v in inputs.items()}
        self.transpose = {}
        self.channel_swap = {}
        self.raw_scale = {}
        self.mean = {}
        self.input_scale = {}

    def _check(self, name):
        if name not in self.inputs:
            raise KeyError(f"{name!r} is not one of the net inputs: {sorted(self.inputs)}")

    def preprocess(self, in_, data):
        self._check(in_)
        out = np.asarray(data).astype(np.float32, copy=False)
        dims = self.inputs[in_][2:]
        if out.shape[:2] != tuple(dims):
            out = resize_image(out, dims)
        if in_ in self.transpose:
            out = out.transpose(self.transpose[in_])
        if in_ in self.channel_swap:
            out = out[list(self.channel_swap[in_]), :, :]
        out = np.array(out, np.float32)
        if self.raw_scale.get(in_) is not None:
            out *= self.raw_scale[in_]
        if self.mean.get(in_) is not None:
            out -= self.mean[in_]
        if self.input_scale.get(in_) is not None:
            out *= self.input_scale[in_]
        return out

    def deprocess(self, in_, data):
        self._check(in_)
        out = np.array(data, copy=True).squeeze()
        if self.input_scale.get(in_) is not None:
            out /= self.input_scale[in_]
        if self.mean.get(in_) is not None:
            out += self.mean[in_]
        if self.raw_scale.get(in_) is not None:
            out /= self.raw_scale[in_]
        if in_ in self.channel_swap:
            out = out[np.argsort(self.channel_swap[in_]), :, :]
        if in_ in self.transpose:
            out = out.transpose(np.argsort(self.transpose[in_]))
        return out

    def set_transpose(self, in_, order):
        """Axis order taking the image (H x W x C) to the blob's (C x H x W): (2, 0, 1)."""
        self._check(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise ValueError("Transpose order needs to have the same number of dimensions "
                             "as the input.")
        self.transpose[in_] = tuple(order)

    def set_channel_swap(self, in_, order):
        """Channel order, e.g. (2, 1, 0) for RGB images into a BGR net."""
        self._check(in_)
        if len(order) != self.inputs[in_][1]:
            raise ValueError("Channel swap needs to have the same number of dimensions as "
                             "the input channels.")
        self.channel_swap[in_] = tuple(order)

    def set_raw_scale(self, in_, scale):
        """Multiply the [0, 1] image by this first (255 for nets trained on 0-255 pixels)."""
        self._check(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """Per-channel (C,) or per-pixel (C, H, W) mean, subtracted after raw_scale."""
        self._check(in_)
        mean = np.asarray(mean)
        if mean.ndim == 1:
            if mean.shape[0] != self.inputs[in_][1]:
                raise ValueError("Mean channels incompatible with input.")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            shape = mean.shape if mean.ndim != 2 else (1,) + mean.shape
            if len(shape) != 3:
                raise ValueError("Mean shape invalid")
            if shape != self.inputs[in_][1:]:
                raise ValueError("Mean shape incompatible with input shape.")
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Multiply by this last (after the mean), e.g. 0.017 for some nets."""
        self._check(in_)
        self.input_scale[in_] = scale


def image_transformer(input_name, shape, mean=None, input_scale=None, raw_scale=None,
                      channel_swap=None):
    """The Transformer pycaffe's Classifier and Detector configure for an image input:
    HxWxC images to CxHxW, then the optional mean, scales and channel order."""
    transformer = Transformer({input_name: shape})
    transformer.set_transpose(input_name, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(input_name, mean)
    if input_scale is not None:
        transformer.set_input_scale(input_name, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(input_name, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(input_name, channel_swap)
    return transformer
