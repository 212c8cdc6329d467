"""The GIL-free Datum scanner agrees with protobuf, and flags what it does not handle."""

import numpy as np

from netdef.data import wire
from netdef.data.datum import array_to_datum
from netdef.proto import caffe_pb2


def raw(c=2, h=3, w=4, label=5, seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, (c, h, w), dtype=np.uint8)
    d = array_to_datum(arr, label)
    d.encoded = False
    return d.SerializeToString(), arr


def test_plain_records_match_protobuf():
    values, arrays = zip(*(raw(label=lb, seed=i) for i, lb in enumerate([0, 7, -3, 2**20])))
    buf, info = wire.scan(list(values))
    assert info[:, wire.OK].all()
    assert info[:, wire.LABEL].tolist() == [0, 7, -3, 2**20]
    assert (info[:, wire.CHANNELS:wire.WIDTH + 1] == (2, 3, 4)).all()
    for row, arr in zip(info, arrays):
        start, length = row[wire.DATA_OFFSET], row[wire.DATA_LENGTH]
        np.testing.assert_array_equal(buf[start:start + length].reshape(2, 3, 4), arr)


def test_unknown_fields_are_skipped():
    value, _ = raw()
    extra = value + b"\x48\x01" + b"\x52\x02ab"  # field 9 varint, field 10 bytes
    assert wire.scan([extra])[1][0, wire.OK] == 1


def test_unusual_records_are_flagged_for_the_protobuf_path():
    value, _ = raw()
    floats = caffe_pb2.Datum(channels=1, height=1, width=2)
    floats.float_data.extend([1.0, 2.0])
    encoded = caffe_pb2.Datum(data=b"\x89PNG", encoded=True)
    short = caffe_pb2.Datum(channels=1, height=2, width=2, data=b"abc")
    flagged = [
        value[:-3],                            # truncated
        floats.SerializeToString(),            # float data
        encoded.SerializeToString(),           # encoded image
        short.SerializeToString(),             # wrong data length
        value + b"\x08\x02",                   # channels given twice
        b"\xff\xff\xff",                       # garbage
        b"",                                   # empty
    ]
    info = wire.scan(flagged)[1]
    assert not info[:, wire.OK].any()
