"""Read raw Datum records straight from their protobuf wire bytes, without the GIL.

The Data layer's common case -- raw uint8 records of one size (MNIST, CIFAR) -- spends
most of its Python time creating a protobuf message per record.  A prefetch thread that
holds the GIL for that slows the training thread, which needs the GIL between its
kernels.  This scanner walks a whole batch of serialized records in one numba call with
the GIL released and reports, per record, the fields the transform needs.  Anything
unusual (encoded or float data, malformed bytes, repeated fields) is flagged, and the
caller falls back to the protobuf parser, which also produces the error messages.

Datum fields: 1 channels, 2 height, 3 width (varint), 4 data (bytes), 5 label (varint),
6 float_data (fixed32, or packed), 7 encoded (varint).
"""

import numpy as np
from numba import njit

# columns of the scan result
OK, CHANNELS, HEIGHT, WIDTH, LABEL, DATA_OFFSET, DATA_LENGTH = range(7)
NUM_COLUMNS = 7


@njit(cache=True, nogil=True)
def _varint(buf, pos, end):
    """(value, new position); position -1 when the varint runs past ``end``."""
    value = np.int64(0)
    shift = 0
    while pos < end and shift < 64:
        b = np.int64(buf[pos])
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    return value, -1


@njit(cache=True, nogil=True)
def scan_datums(buf, offsets, info):
    """Scan records buf[offsets[i]:offsets[i+1]] into info[i] (see the column names).

    info[i, OK] is 1 for a plain raw record (data bytes, no float data, not encoded, no
    repeated scalar fields) and 0 otherwise.
    """
    n = offsets.shape[0] - 1
    for i in range(n):
        pos = offsets[i]
        end = offsets[i + 1]
        ok = 1
        seen = 0
        c = h = w = label = 0
        data_off = 0
        data_len = -1
        while pos < end and ok:
            tag, pos = _varint(buf, pos, end)
            if pos < 0:
                ok = 0
                break
            field = tag >> 3
            wire = tag & 7
            if wire == 0:
                value, pos = _varint(buf, pos, end)
                if pos < 0:
                    ok = 0
                    break
                if field == 1:
                    c = value
                elif field == 2:
                    h = value
                elif field == 3:
                    w = value
                elif field == 5:
                    label = np.int64(np.int32(value & 0xFFFFFFFF))
                elif field == 7:
                    if value != 0:
                        ok = 0
                elif field == 6:
                    ok = 0
                if 1 <= field <= 7:
                    bit = np.int64(1) << field
                    if seen & bit:
                        ok = 0
                    seen |= bit
            elif wire == 2:
                length, pos = _varint(buf, pos, end)
                if pos < 0 or length < 0 or pos + length > end:
                    ok = 0
                    break
                if field == 4:
                    if data_len >= 0:
                        ok = 0
                    data_off = pos
                    data_len = length
                elif 1 <= field <= 7:
                    ok = 0  # float_data packed, or a field with the wrong wire type
                pos += length
            elif wire == 5:
                if 1 <= field <= 7 or pos + 4 > end:
                    ok = 0  # float_data element
                pos += 4
            elif wire == 1:
                if 1 <= field <= 7 or pos + 8 > end:
                    ok = 0
                pos += 8
            else:
                ok = 0
        if pos != end or data_len <= 0 or c <= 0 or h <= 0 or w <= 0 \
                or data_len != c * h * w:
            ok = 0
        info[i, OK] = ok
        info[i, CHANNELS] = c
        info[i, HEIGHT] = h
        info[i, WIDTH] = w
        info[i, LABEL] = label
        info[i, DATA_OFFSET] = data_off
        info[i, DATA_LENGTH] = data_len


def scan(values):
    """(buffer, info) for a list of serialized records."""
    buf = np.frombuffer(b"".join(values), np.uint8)
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, values), np.int64, len(values)), out=offsets[1:])
    info = np.empty((len(values), NUM_COLUMNS), np.int64)
    scan_datums(buf, offsets, info)
    return buf, info
