"""Caffe's ``Datum`` record: one image (or feature vector) and its label.

Three payloads, as Caffe writes them:
- raw: ``data`` holds channels*height*width uint8 bytes, CHW, BGR for colour images;
- float: ``float_data`` holds channels*height*width floats, CHW;
- encoded: ``encoded`` is true and ``data`` holds an image file (JPEG, PNG, ...); the
  dimensions are usually absent and come from decoding.
Every record read from a database goes through ``parse_datum`` so that a corrupt record is
reported with its key instead of surfacing as a reshape error later.
"""

import numpy as np
from google.protobuf.message import DecodeError

from ..errors import DataError
from ..proto import caffe_pb2
from .images import UNCHANGED, decode_image


def _where(key, source):
    k = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    return f"record {k!r}" + (f" of {source!r}" if source else "")


def parse_datum(value, key="", source=""):
    """Parse and check serialized Datum bytes; DataError naming ``key`` when malformed."""
    return read_datum(value, key, source)[0]


def read_datum(value, key="", source=""):
    """(datum, its ``data`` bytes): parsed and checked, the payload read only once."""
    try:
        datum = caffe_pb2.Datum.FromString(value)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise DataError(f"{_where(key, source)} is not a Datum: {exc}") from None
    return datum, check_datum(datum, key, source)


def check_datum(datum, key="", source=""):
    """Payload size must match the declared dimensions (encoded data is checked on decode).

    Returns the ``data`` bytes (empty for float records).
    """
    data = datum.data
    if datum.encoded:
        if not data:
            raise DataError(f"{_where(key, source)} is marked encoded but holds no image bytes")
        return data
    c, h, w = datum.channels, datum.height, datum.width
    if c <= 0 or h <= 0 or w <= 0:
        raise DataError(f"{_where(key, source)} has impossible dimensions "
                        f"channels={c} height={h} width={w}")
    n = c * h * w
    if data:
        if len(data) != n:
            raise DataError(f"{_where(key, source)} holds {len(data)} bytes of data but "
                            f"channels*height*width = {c}*{h}*{w} = {n}")
        return data
    floats = len(datum.float_data)
    if not floats:
        raise DataError(f"{_where(key, source)} holds neither data nor float_data")
    if floats != n:
        raise DataError(f"{_where(key, source)} holds {floats} float_data "
                        f"values but channels*height*width = {c}*{h}*{w} = {n}")
    return data


def datum_image(datum, color=UNCHANGED, key="", source=""):
    """The datum's pixels: (array, layout) with layout 'CHW' (raw/float) or 'HWC' (decoded).

    Raw data gives uint8 CHW, float data float32 CHW, encoded data a BGR HWC uint8 array
    decoded in ``color`` mode (True colour, False gray, None as stored).
    """
    if datum.encoded:
        img = decode_image(datum.data, color, name=_where(key, source))
        return img, "HWC"
    shape = (datum.channels, datum.height, datum.width)
    if datum.data:
        return np.frombuffer(datum.data, np.uint8).reshape(shape), "CHW"
    return np.asarray(datum.float_data, np.float32).reshape(shape), "CHW"


def datum_to_chw(datum, color=UNCHANGED, key="", source=""):
    """The datum as a CHW array (decoding and transposing encoded images)."""
    img, layout = datum_image(datum, color, key, source)
    return img.transpose(2, 0, 1) if layout == "HWC" else img


def array_to_datum(arr, label=None):
    """A raw (uint8) or float Datum from a CHW array (pycaffe's ``array_to_datum``)."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise DataError(f"a Datum holds a CHW array with 3 axes, got shape {arr.shape}")
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = (int(d) for d in arr.shape)
    if arr.dtype == np.uint8:
        datum.data = np.ascontiguousarray(arr).tobytes()
    else:
        datum.float_data.extend(arr.astype(np.float64).ravel().tolist())
    if label is not None:
        datum.label = int(label)
    return datum


def image_to_datum(img, label):
    """Caffe's CVMatToDatum: an HxWxC BGR uint8 image as a raw CHW Datum with its label."""
    img = np.asarray(img, np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = img.shape[2], img.shape[0], img.shape[1]
    datum.data = np.ascontiguousarray(img.transpose(2, 0, 1)).tobytes()
    datum.label = int(label)
    datum.encoded = False
    return datum


def encoded_datum(data, label):
    """An encoded Datum (image file bytes), as Caffe's ReadFileToDatum writes it."""
    datum = caffe_pb2.Datum()
    datum.data = bytes(data)
    datum.label = int(label)
    datum.encoded = True
    return datum
