"""MNIST idx files and Caffe's convert_mnist_data.

The idx format: a big-endian magic (2051 images, 2049 labels), the item count, for images
rows and cols, then one byte per pixel / label.  Files may be gzipped.  The database holds
one raw Datum per image (1 x rows x cols uint8, label) under the key ``%08d`` -- the same
bytes Caffe's converter writes.
"""

import gzip

import numpy as np

from ..errors import DataError
from ..proto import caffe_pb2
from .lmdb_io import open_writer

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            raw = f.read()
    except OSError as exc:
        raise DataError(f"unable to open file {path!r}: {exc.strerror or exc}") from None
    if head == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path!r} is a damaged gzip file: {exc}") from None
    return raw


def _check_magic(path, raw, want, kind, other):
    magic = int(np.frombuffer(raw[:4], ">u4")[0]) if len(raw) >= 4 else None
    if magic != want:
        raise DataError(f"{path!r}: incorrect {kind} file magic {magic} (expected {want}); "
                        f"is it the {other} file?")


def read_idx_images(path):
    """uint8 array (N, rows, cols) from an idx3 image file."""
    raw = _read_bytes(path)
    _check_magic(path, raw, IMAGES_MAGIC, "image", "labels")
    if len(raw) < 16:
        raise DataError(f"{path!r} is too short to be an MNIST image file")
    _, n, rows, cols = np.frombuffer(raw[:16], ">u4")
    need = int(n) * int(rows) * int(cols)
    if len(raw) - 16 < need:
        raise DataError(f"{path!r} is truncated: {n} images of {rows}x{cols} need {need} "
                        f"bytes, it holds {len(raw) - 16}")
    return np.frombuffer(raw, np.uint8, need, 16).reshape(int(n), int(rows), int(cols))


def read_idx_labels(path):
    """uint8 array (N,) from an idx1 label file."""
    raw = _read_bytes(path)
    _check_magic(path, raw, LABELS_MAGIC, "label", "images")
    if len(raw) < 8:
        raise DataError(f"{path!r} is too short to be an MNIST label file")
    n = int(np.frombuffer(raw[4:8], ">u4")[0])
    if len(raw) - 8 < n:
        raise DataError(f"{path!r} is truncated: {n} labels, {len(raw) - 8} bytes")
    return np.frombuffer(raw, np.uint8, int(n), 8)


def mnist_records(images, labels):
    """(key, serialized Datum) pairs in Caffe's layout and key format."""
    n, rows, cols = images.shape
    datum = caffe_pb2.Datum()
    datum.channels = 1
    datum.height = rows
    datum.width = cols
    signed = labels.astype(np.int8)  # Caffe reads each label into a (signed) char
    for i in range(n):
        datum.data = images[i].tobytes()
        datum.label = int(signed[i])
        yield f"{i:08d}", datum.SerializeToString()


def convert_mnist(image_path, label_path, db_path, backend="lmdb", overwrite=False):
    """Write an MNIST idx pair into a new database; returns the number of records."""
    images = read_idx_images(image_path)
    labels = read_idx_labels(label_path)
    if len(images) != len(labels):
        raise DataError(f"{image_path!r} holds {len(images)} images but {label_path!r} "
                        f"holds {len(labels)} labels")
    with open_writer(db_path, backend, overwrite=overwrite) as db:
        for key, value in mnist_records(images, labels):
            db.put(key, value)
        return db.count
