"""Datum records: parsing with checks, and the layouts Caffe writes."""

import numpy as np
import pytest

from netdef.data.datum import (
    array_to_datum,
    check_datum,
    datum_image,
    datum_to_chw,
    encoded_datum,
    image_to_datum,
    parse_datum,
)
from netdef.data.images import encode_image
from netdef.errors import DataError
from netdef.proto import caffe_pb2


def test_raw_datum_round_trip():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    d = parse_datum(array_to_datum(arr, label=7).SerializeToString(), b"k")
    assert d.label == 7
    img, layout = datum_image(d)
    assert layout == "CHW"
    np.testing.assert_array_equal(img, arr)


def test_float_datum_round_trip():
    arr = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 2, 2)
    d = parse_datum(array_to_datum(arr).SerializeToString())
    np.testing.assert_array_equal(datum_to_chw(d), arr)


def test_image_to_datum_is_chw_of_bgr_and_serializes_like_caffe():
    bgr = np.random.default_rng(0).integers(0, 256, (2, 3, 3), dtype=np.uint8)
    d = image_to_datum(bgr, 5)
    np.testing.assert_array_equal(datum_to_chw(d), bgr.transpose(2, 0, 1))
    raw = d.SerializeToString()
    # Caffe's CVMatToDatum sets encoded=false explicitly: the record ends label, encoded
    assert raw.endswith(b"\x28\x05\x38\x00")


def test_encoded_datum_decodes_in_each_mode():
    bgr = np.random.default_rng(1).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    d = encoded_datum(encode_image(bgr, "png"), 1)
    img, layout = datum_image(d, None)
    assert layout == "HWC"
    np.testing.assert_array_equal(img, bgr)
    assert datum_image(d, False)[0].shape == (5, 4, 1)
    assert datum_to_chw(d, True).shape == (3, 5, 4)


def test_corrupt_bytes_name_the_key():
    with pytest.raises(DataError, match="'00000003_x.jpg'.*not a Datum"):
        parse_datum(b"\xff\xff\xff\xff\xff", b"00000003_x.jpg", "db")


def test_wrong_length_names_the_key():
    d = caffe_pb2.Datum(channels=3, height=2, width=2, data=b"\x00" * 11)
    with pytest.raises(DataError, match=r"'k7'.*11 bytes.*3\*2\*2 = 12"):
        parse_datum(d.SerializeToString(), "k7")
    d = caffe_pb2.Datum(channels=1, height=2, width=2)
    d.float_data.extend([1.0, 2.0])
    with pytest.raises(DataError, match="2 float_data"):
        check_datum(d, "k")
    with pytest.raises(DataError, match="neither data nor float_data"):
        check_datum(caffe_pb2.Datum(channels=1, height=1, width=1), "k")
    with pytest.raises(DataError, match="impossible dimensions"):
        check_datum(caffe_pb2.Datum(channels=0, height=1, width=1, data=b""), "k")


def test_undecodable_encoded_data_names_the_key():
    d = encoded_datum(b"\x89PNG\r\n\x1a\n garbage", 0)
    check_datum(d)  # bytes are present; decoding is what fails
    with pytest.raises(DataError, match="'bad'"):
        datum_image(d, None, key=b"bad")
    with pytest.raises(DataError, match="marked encoded but holds no image"):
        check_datum(caffe_pb2.Datum(encoded=True), "e")
