"""caffe.io BlobProto conversions raise ValueError on a bad shape, as pycaffe's reshape does."""

import numpy as np
import pytest

import netdef
from netdef.errors import NetdefError
from netdef.proto import caffe_pb2


def test_values_that_do_not_fit_the_shape_raise_value_error():
    blob = caffe_pb2.BlobProto()
    blob.data.extend([0.0] * 6)
    with pytest.raises(ValueError, match="6 values") as info:
        netdef.io.blobproto_to_array(blob)  # no shape at all
    assert isinstance(info.value, NetdefError)
    blob.shape.dim.extend([4])
    with pytest.raises(ValueError):
        netdef.io.blobproto_to_array(blob)


def test_one_value_without_shape_is_a_scalar():
    blob = caffe_pb2.BlobProto()
    blob.data.append(5.0)
    arr = netdef.io.blobproto_to_array(blob)
    assert arr.shape == () and arr == 5


def test_legacy_and_new_shapes():
    blob = caffe_pb2.BlobProto(num=1, channels=2, height=1, width=3)
    blob.data.extend(range(6))
    assert netdef.io.blobproto_to_array(blob).shape == (1, 2, 1, 3)
    blob = netdef.io.array_to_blobproto(np.ones((2, 5), np.float32))
    assert netdef.io.blobproto_to_array(blob).shape == (2, 5)
