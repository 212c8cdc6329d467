"""Decode, encode and resize images the way Caffe's OpenCV calls do, with Pillow and numba.

Caffe reads images through OpenCV: BGR channel order, ``imread``/``imdecode`` in colour,
grayscale or unchanged mode, and ``cv::resize`` with INTER_LINEAR.  Pillow decodes the same
pixels (both sit on libjpeg and libpng); the places where OpenCV has its own arithmetic are
reproduced here so that our LMDBs hold the same bytes as Caffe's:

- grayscale: JPEGs decode straight to luma (libjpeg's Y channel, what OpenCV asks libjpeg
  for); colour PNGs use libpng's truncating rgb-to-gray with OpenCV's (0.299, 0.587)
  weights; other formats OpenCV's fixed-point BGR2GRAY weights.
- resize: bilinear with OpenCV's 11-bit fixed-point coefficients and its rounding; this is
  bit-exact against ``cv2.resize(..., INTER_LINEAR)`` on uint8 images.  Pillow's own
  bilinear filter widens its support when shrinking (antialiasing) and would differ by
  tens of grey levels.

EXIF orientation tags are ignored: pixels are used in stored order.
Arrays are HxWxC uint8 in BGR order (HxWx1 for gray), as ``cv::Mat``.
"""

import io
import os

import numpy as np
from numba import njit
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

# imread/imdecode modes: True = colour (3 channels), False = gray (1), None = as stored
COLOR, GRAY, UNCHANGED = True, False, None

_RESIZE_COEF_BITS = 11
_RESIZE_COEF_SCALE = 1 << _RESIZE_COEF_BITS


# -- decoding ----------------------------------------------------------------------------
def decode_image(data, color=COLOR, name="image"):
    """Decode encoded bytes (JPEG, PNG, ...) into an HxWxC uint8 BGR array.

    ``color`` True gives 3 channels, False 1 channel, None the stored channels (gray 1,
    colour 3, with alpha 4 in BGRA order) like ``cv::imdecode(..., IMREAD_UNCHANGED)``.
    """
    try:
        im = Image.open(io.BytesIO(data))
        return _pil_to_bgr(im, color)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode {name}: {exc}") from None


def read_image(path, color=COLOR):
    """Read an image file into BGR HxWxC uint8 (as ``cv::imread``)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise DataError(f"cannot read image {path!r}: {getattr(exc, 'strerror', None) or exc}"
                        ) from None
    return decode_image(data, color, name=f"image {path!r}")


def read_image_resized(path, height=0, width=0, color=COLOR):
    """Caffe's ReadImageToCVMat: read, then resize only when both sizes are positive."""
    img = read_image(path, color)
    if height > 0 and width > 0:
        img = resize_bilinear(img, height, width)
    return img


def _pil_to_bgr(im, color):
    fmt = im.format
    if color is GRAY:
        return _to_gray(im, fmt)[:, :, None]
    if color is UNCHANGED:
        mode = im.mode
        if mode in ("L", "1", "I;16", "I;16B", "I;16L", "I", "F"):
            return _to_gray(im, fmt)[:, :, None]
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
            rgba = np.asarray(im.convert("RGBA"))
            return rgba[:, :, [2, 1, 0, 3]]
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        gray = _to_gray(im, fmt)
        return np.repeat(gray[:, :, None], 3, axis=2)
    rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    return rgb[:, :, ::-1]


def _to_gray(im, fmt):
    """One uint8 channel computed the way OpenCV's decoders compute it."""
    mode = im.mode
    if mode == "L":
        return np.asarray(im)
    if mode.startswith("I;16") or mode == "I":
        # libpng's strip_16 keeps the high byte
        return (np.asarray(im).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
    if mode == "F":
        return np.asarray(im).clip(0, 255).astype(np.uint8)
    if mode in ("1", "LA"):
        return np.asarray(im.convert("L"))
    if fmt == "JPEG" and mode in ("RGB", "YCbCr"):
        # ask libjpeg for its luma channel, as OpenCV does for IMREAD_GRAYSCALE
        im.draft("L", im.size)
        if im.mode == "L":
            return np.asarray(im)
    rgb = np.asarray(im.convert("RGB")).astype(np.int32)
    r, g, b = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
    if fmt == "PNG":
        # libpng rgb_to_gray(0.299, 0.587): 15-bit weights, truncated, gray pixels kept
        y = (9797 * r + 19234 * g + 3737 * b) >> 15
        y = np.where((r == g) & (r == b), r, y)
    else:
        # OpenCV's BGR2GRAY: 14-bit weights, rounded
        y = (4899 * r + 9617 * g + 1868 * b + 8192) >> 14
    return y.astype(np.uint8)


# -- encoding ----------------------------------------------------------------------------
_PIL_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "jpe": "JPEG", "png": "PNG", "bmp": "BMP",
                "tif": "TIFF", "tiff": "TIFF", "ppm": "PPM", "pgm": "PPM", "pbm": "PPM",
                "webp": "WEBP"}


def encode_image(img, ext):
    """Encode an HxWxC BGR uint8 array as ``ext`` ('png', 'jpg', ...) like ``cv::imencode``.

    JPEG uses OpenCV's default quality 95.  The bytes differ from OpenCV's (other zlib /
    libjpeg settings); decoding gives the same pixels for lossless formats.
    """
    fmt = _PIL_FORMATS.get(ext.lower().lstrip("."))
    if fmt is None:
        raise DataError(f"unknown image encoding {ext!r} (known: "
                        f"{', '.join(sorted(_PIL_FORMATS))})")
    img = np.asarray(img, np.uint8)
    if img.ndim == 2 or img.shape[2] == 1:
        im = Image.fromarray(img.reshape(img.shape[0], img.shape[1]), "L")
    elif img.shape[2] == 3:
        im = Image.fromarray(np.ascontiguousarray(img[:, :, ::-1]), "RGB")
    elif img.shape[2] == 4:
        im = Image.fromarray(np.ascontiguousarray(img[:, :, [2, 1, 0, 3]]), "RGBA")
    else:
        raise DataError(f"cannot encode an image with {img.shape[2]} channels")
    buf = io.BytesIO()
    options = {"quality": 95} if fmt == "JPEG" else {}
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


def file_extension(path):
    """Lower-case extension without the dot ('' when there is none)."""
    return os.path.splitext(path)[1][1:].lower()


# -- resizing ----------------------------------------------------------------------------
def _linear_coefficients(src_size, dst_size):
    """Source index and 11-bit weights per output index, with OpenCV's float maths."""
    scale = 1.0 / (dst_size / src_size)
    f = ((np.arange(dst_size) + 0.5) * scale - 0.5).astype(np.float32)
    idx = np.floor(f).astype(np.int64)
    f = (f - idx.astype(np.float32)).astype(np.float32)
    w0 = np.rint((np.float32(1) - f) * np.float32(_RESIZE_COEF_SCALE)).astype(np.int32)
    w1 = np.rint(f * np.float32(_RESIZE_COEF_SCALE)).astype(np.int32)
    return idx, f, w0, w1


@njit(cache=True, nogil=True)
def _resize_linear_u8(src, out, xofs, ax0, ax1, yofs, by0, by1):
    """Fixed-point bilinear resize of src (H, W, C) uint8 into out (h, w, C) uint8.

    Horizontal pass: exact integer sums with weights that add up to 2048.  Vertical pass:
    OpenCV's vectorised rounding ((b0*(s0>>4))>>16 + (b1*(s1>>4))>>16 + 2) >> 2.
    """
    H, W, C = src.shape
    h, w, _ = out.shape
    row0 = np.empty((w, C), np.int32)
    row1 = np.empty((w, C), np.int32)
    for y in range(h):
        sy0 = min(max(yofs[y], 0), H - 1)
        sy1 = min(max(yofs[y] + 1, 0), H - 1)
        for x in range(w):
            sx0 = xofs[x]
            sx1 = min(sx0 + 1, W - 1)
            a0 = ax0[x]
            a1 = ax1[x]
            for c in range(C):
                row0[x, c] = np.int32(src[sy0, sx0, c]) * a0 + np.int32(src[sy0, sx1, c]) * a1
                row1[x, c] = np.int32(src[sy1, sx0, c]) * a0 + np.int32(src[sy1, sx1, c]) * a1
        b0 = by0[y]
        b1 = by1[y]
        for x in range(w):
            for c in range(C):
                v = (((b0 * (row0[x, c] >> 4)) >> 16) + ((b1 * (row1[x, c] >> 4)) >> 16) + 2) >> 2
                out[y, x, c] = min(max(v, 0), 255)


def resize_bilinear(img, height, width):
    """Resize an HxWxC uint8 image to (height, width) exactly as cv::resize INTER_LINEAR."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise DataError(f"resize_bilinear needs a uint8 image, got {img.dtype}")
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    H, W, C = img.shape
    if height <= 0 or width <= 0:
        raise DataError(f"cannot resize to {height}x{width}: sizes must be positive")
    if (H, W) == (height, width):
        out = img.copy()
    else:
        xofs, fx, ax0, ax1 = _linear_coefficients(W, width)
        low = xofs < 0
        high = xofs >= W - 1
        xofs[low | high] = np.where(low, 0, W - 1)[low | high]
        ax0[low | high] = _RESIZE_COEF_SCALE
        ax1[low | high] = 0
        yofs, _, by0, by1 = _linear_coefficients(H, height)
        out = np.empty((height, width, C), np.uint8)
        _resize_linear_u8(img, out, xofs, ax0, ax1, yofs, by0, by1)
    return out[:, :, 0] if squeeze else out
