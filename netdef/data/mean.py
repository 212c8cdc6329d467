"""Mean images: ``.binaryproto`` files holding one BlobProto, and computing them.

Caffe's compute_image_mean sums every record of a database in float and divides by the
count; the file keeps the legacy 4-D dims (1, C, H, W).  Sums are kept exact here (int64
for bytes, float64 for floats) and divided in float32 as Caffe does, so the file matches
Caffe's bit for bit whenever Caffe's float sums are exact (below 2**24 per pixel).
"""

import numpy as np
from google.protobuf.message import DecodeError

from ..errors import DataError
from ..proto import caffe_pb2
from ..prototxt import sniff_magic
from .datum import datum_to_chw, parse_datum


def blobproto_to_array(blob, return_diff=False):
    """The BlobProto's data (or diff) as an array in its shape (legacy 4-D dims honoured)."""
    if return_diff:
        values = blob.double_diff if len(blob.double_diff) else blob.diff
    else:
        values = blob.double_data if len(blob.double_data) else blob.data
    arr = np.asarray(values, np.float32 if not (len(blob.double_data) or len(blob.double_diff))
                     else np.float64)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = tuple(blob.shape.dim)
    if int(np.prod(shape)) != arr.size:
        raise DataError(f"BlobProto holds {arr.size} values but its shape is {shape}")
    return arr.reshape(shape)


def array_to_blobproto(arr, diff=None, legacy=False):
    """A BlobProto holding ``arr`` (float32); ``legacy`` writes num/channels/height/width."""
    arr = np.asarray(arr, np.float32)
    blob = caffe_pb2.BlobProto()
    if legacy:
        dims = (1,) * (4 - arr.ndim) + tuple(arr.shape) if arr.ndim <= 4 else None
        if dims is None:
            raise DataError(f"legacy BlobProto dims hold 4 axes at most, got {arr.shape}")
        blob.num, blob.channels, blob.height, blob.width = (int(d) for d in dims)
    else:
        blob.shape.dim.extend(int(d) for d in arr.shape)
    blob.data.extend(arr.ravel().tolist())
    if diff is not None:
        blob.diff.extend(np.asarray(diff, np.float32).ravel().tolist())
    return blob


def read_blobproto(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if not raw:
        raise DataError(f"{path!r} is not a binary BlobProto: the file is empty")
    magic = sniff_magic(raw[:16])
    if magic:
        hint = (" (load it with numpy and give its per-channel means as mean_value, or save "
                "it as a BlobProto)" if "NumPy" in magic else "")
        raise DataError(f"{path!r} is not a binary BlobProto: the file is {magic}{hint}")
    blob = caffe_pb2.BlobProto()
    try:
        blob.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise DataError(f"{path!r} is not a binary BlobProto: {exc}") from None
    return blob


def read_mean_file(path):
    """The mean image as a float32 (C, H, W) array (the leading num axis of 1 dropped)."""
    arr = blobproto_to_array(read_blobproto(path)).astype(np.float32)
    if arr.size == 0:
        raise DataError(f"mean file {path!r} holds no values")
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise DataError(f"mean file {path!r} holds {arr.shape[0]} images; expected one "
                            f"(shape {arr.shape})")
        arr = arr[0]
    elif arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DataError(f"mean file {path!r} has shape {arr.shape}; expected (1, C, H, W)")
    return np.ascontiguousarray(arr)


def write_mean_file(path, mean):
    """Write a (C, H, W) mean as Caffe does: legacy dims 1 x C x H x W."""
    mean = np.asarray(mean, np.float32)
    if mean.ndim != 3:
        raise DataError(f"a mean image is (C, H, W), got shape {mean.shape}")
    blob = array_to_blobproto(mean, legacy=True)
    with open(path, "wb") as f:
        f.write(blob.SerializeToString())


def compute_mean(records, source=""):
    """Mean of (key, value) Datum records: float32 (C, H, W) and the record count.

    Encoded records are decoded with their stored channels (Caffe's DecodeDatumNative).
    Every record must have the first record's size.
    """
    total = None
    count = 0
    for key, value in records:
        arr = datum_to_chw(parse_datum(value, key, source), None, key, source)
        if total is None:
            shape = arr.shape
            total = np.zeros(shape, np.int64 if arr.dtype == np.uint8 else np.float64)
        elif arr.shape != shape:
            k = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
            raise DataError(f"record {k!r} of {source!r} has shape {arr.shape}, the first "
                            f"record {shape}: every record must have the same size")
        total += arr
        count += 1
    if count == 0:
        raise DataError(f"{source!r} holds no records")
    mean = total.astype(np.float32) / np.float32(count)
    return mean.astype(np.float32), count


def channel_means(mean):
    """Per-channel averages of a (C, H, W) mean, as compute_image_mean prints them."""
    mean = np.asarray(mean, np.float32)
    return [float(mean[c].astype(np.float64).sum() / (mean.shape[1] * mean.shape[2]))
            for c in range(mean.shape[0])]
