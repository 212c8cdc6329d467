"""Batches of Datum records from a database cursor (the Data layer's load_batch).

Each batch takes the next ``batch_size`` records (wrapping around), checks every one,
and shapes the batch from its first record (so batches of one may vary in size, as in
Caffe).  Raw uint8 records of one size (MNIST, CIFAR) are scanned and transformed by
two numba calls with the GIL released (``wire``); anything else goes through protobuf,
and encoded records are decoded and transformed by a small thread pool.
"""

import logging

import numpy as np

from ..errors import DataError
from . import wire
from .datum import datum_image, parse_datum, read_datum
from .prefetch import decode_pool

logger = logging.getLogger("netdef")


def _key(key):
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)


class DatumBatchLoader:
    """Callable filling a ``Batch`` from ``reader`` through ``transformer``."""

    def __init__(self, reader, transformer, batch_size, output_labels, source=""):
        if batch_size <= 0:
            raise DataError(f"{transformer.where}: batch_size must be positive")
        self.reader = reader
        self.transformer = transformer
        self.batch_size = int(batch_size)
        self.output_labels = output_labels
        self.source = source

    def item_shape(self, key, value):
        """(C, h, w) a record gives after the transform (Caffe's InferBlobShape)."""
        datum = parse_datum(value, key, self.source)
        tf = self.transformer
        if (tf.force_color or tf.force_gray) and not datum.encoded:
            logger.warning("%s: force_color and force_gray apply only to encoded records; "
                           "%r holds raw records", tf.where, self.source)
        img, layout = datum_image(datum, self.transformer.decode_color, key, self.source)
        c, h, w = _dims(img, layout)
        return self.transformer.output_shape(c, h, w, what=f"record {_key(key)!r}")

    def first_item_shape(self):
        return self.item_shape(*self.reader.first())

    def __call__(self, batch):
        n = self.batch_size
        records = [self.reader.next() for _ in range(n)]
        if self._load_raw(records, batch):
            return
        parsed = [read_datum(v, k, self.source) for k, v in records]
        datums = [d for d, _ in parsed]
        if self.output_labels:
            labels = np.fromiter((d.label for d in datums), np.float32, n)
        first = datums[0]
        dims = (first.channels, first.height, first.width)
        size = dims[0] * dims[1] * dims[2]
        stackable = all(not d.encoded and len(data) == size and
                        (d.channels, d.height, d.width) == dims for d, data in parsed)
        tf = self.transformer
        if stackable:
            shape = tf.output_shape(*dims, what=f"record {_key(records[0][0])!r}")
            batch.reshape((n,) + shape, (n,) if self.output_labels else None)
            raw = np.frombuffer(b"".join(data for _, data in parsed), np.uint8)
            tf.transform_batch(raw.reshape((n,) + dims), batch.data)
        else:
            self._load_general(records, datums, batch)
        if self.output_labels:
            batch.label[...] = labels

    def _load_raw(self, records, batch):
        """Fast path for raw uint8 records of one size, scanned without the GIL.

        Returns False (nothing done) when any record is not plain raw data of the first
        record's size; the protobuf path then handles it, with its error messages.
        """
        buf, info = wire.scan([v for _, v in records])
        dims = tuple(int(d) for d in info[0, wire.CHANNELS:wire.WIDTH + 1])
        if not info[:, wire.OK].all() or \
                (info[:, wire.CHANNELS:wire.WIDTH + 1] != dims).any():
            return False
        n = len(records)
        shape = self.transformer.output_shape(*dims, what=f"record {_key(records[0][0])!r}")
        batch.reshape((n,) + shape, (n,) if self.output_labels else None)
        self.transformer.transform_flat(buf, info[:, wire.DATA_OFFSET].copy(), dims,
                                        batch.data)
        if self.output_labels:
            batch.label[...] = info[:, wire.LABEL]
        return True

    def _load_general(self, records, datums, batch):
        tf = self.transformer
        n = len(datums)
        color = tf.decode_color
        key0 = records[0][0]
        img0, layout0 = datum_image(datums[0], color, key0, self.source)
        dims0 = _dims(img0, layout0)
        shape = tf.output_shape(*dims0, what=f"record {_key(key0)!r}")
        batch.reshape((n,) + shape, (n,) if self.output_labels else None)
        draws = tf.draw(n)
        out = batch.data

        def work(i):
            key = records[i][0]
            if i == 0:
                img, layout = img0, layout0
            else:
                img, layout = datum_image(datums[i], color, key, self.source)
            dims = _dims(img, layout)
            if dims != dims0 and (dims[0] != dims0[0] or not tf.crop_size):
                raise DataError(
                    f"{tf.where}: record {_key(key)!r} of {self.source!r} has shape {dims} "
                    f"(C, H, W) but the batch's first record {_key(key0)!r} has {dims0}; "
                    "records in one batch need the same channels, and the same size "
                    "unless crop_size is set")
            tf.output_shape(*dims, what=f"record {_key(key)!r}")
            tf.transform(img, layout, out[i], draws, i)

        if n > 1 and any(d.encoded for d in datums):
            list(decode_pool().map(work, range(n)))
        else:
            for i in range(n):
                work(i)


def _dims(img, layout):
    if layout == "HWC":
        return (img.shape[2], img.shape[0], img.shape[1])
    return tuple(img.shape)
