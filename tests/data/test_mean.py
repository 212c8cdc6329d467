"""Mean files: Caffe's .binaryproto read and written byte for byte."""

import os

import numpy as np
import pytest

from netdef.data.datum import datum_to_chw, parse_datum
from netdef.data.lmdb_io import LMDBReader
from netdef.data.mean import (
    array_to_blobproto,
    blobproto_to_array,
    channel_means,
    compute_mean,
    read_mean_file,
    write_mean_file,
)
from netdef.errors import DataError
from tests.shared import CONFORMANCE, DATA, need

IO = os.path.join(CONFORMANCE, "io")


def test_compute_mean_matches_caffe_file_bytes(tmp_path):
    ref = need(os.path.join(IO, "mean_raw_resized.binaryproto"))
    with LMDBReader(os.path.join(IO, "lmdb_raw_resized")) as r:
        mean, count = compute_mean(iter(r), "lmdb_raw_resized")
    assert count == 6 and mean.shape == (3, 8, 10)
    out = tmp_path / "mean.binaryproto"
    write_mean_file(str(out), mean)
    assert out.read_bytes() == open(ref, "rb").read()
    np.testing.assert_array_equal(read_mean_file(ref), mean)


def test_compute_mean_by_hand_and_encoded_records():
    with LMDBReader(need(os.path.join(IO, "lmdb_gray_resized"))) as r:
        mean, _ = compute_mean(iter(r))
        stack = np.stack([datum_to_chw(parse_datum(v)) for _, v in r])
    np.testing.assert_allclose(mean, stack.mean(0), rtol=1e-6)
    with LMDBReader(os.path.join(IO, "lmdb_encoded")) as r:
        with pytest.raises(DataError, match="same size"):
            compute_mean(iter(r), "lmdb_encoded")  # its images have different sizes


def test_imagenet_mean_and_channel_means():
    mean = read_mean_file(need(os.path.join(DATA, "ilsvrc12", "imagenet_mean.binaryproto")))
    assert mean.shape == (3, 256, 256) and mean.dtype == np.float32
    npy = np.load(os.path.join(DATA, "ilsvrc12", "ilsvrc_2012_mean.npy"))
    np.testing.assert_allclose(mean, npy, atol=0.5)  # the .npy was computed separately
    per = channel_means(mean)
    assert 100 < per[0] < 110 and 110 < per[1] < 120 and 120 < per[2] < 130  # B, G, R


def test_blobproto_shapes():
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(blobproto_to_array(array_to_blobproto(arr)), arr)
    legacy = array_to_blobproto(arr[None], legacy=True)
    assert (legacy.num, legacy.channels, legacy.height, legacy.width) == (1, 1, 2, 3)
    assert blobproto_to_array(legacy).shape == (1, 1, 2, 3)


def test_bad_mean_files(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_mean_file(str(tmp_path / "none.binaryproto"))
    bad = tmp_path / "bad.binaryproto"
    bad.write_bytes(b"\xff\xff\xff")
    with pytest.raises(DataError, match="not a binary BlobProto"):
        read_mean_file(str(bad))
    two = tmp_path / "two.binaryproto"
    two.write_bytes(array_to_blobproto(np.zeros((2, 1, 2, 2))).SerializeToString())
    with pytest.raises(DataError, match="holds 2 images"):
        read_mean_file(str(two))
