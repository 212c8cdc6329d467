"""Layer objects made with ``create_layer`` and driven by the C++-style names
(SetUp / Reshape / Forward / Backward) some pycaffe builds expose."""

import numpy as np

import netdef
from netdef.blob import Blob
from netdef.proto import caffe_pb2


def test_create_layer_and_drive_it():
    layer = netdef.create_layer(caffe_pb2.LayerParameter(name="flat", type="Flatten"))
    assert layer.type == "Flatten"
    bottom, top = Blob((2, 3, 2)), Blob()
    bottom.data[...] = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    layer.SetUp([bottom], [top])
    assert top.shape == (2, 6)
    bottom.reshape(1, 3, 2)
    layer.Reshape([bottom], [top])
    assert top.shape == (1, 6)
    bottom.reshape(2, 3, 2)
    bottom.data[...] = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    assert layer.Forward([bottom], [top]) == 0  # not a loss layer
    np.testing.assert_array_equal(top.data, np.arange(12).reshape(2, 6))
    top.diff[...] = 1
    layer.Backward([top], [True], [bottom])
    np.testing.assert_array_equal(bottom.diff, np.ones((2, 3, 2)))


def test_forward_returns_the_weighted_loss():
    layer = netdef.create_layer(caffe_pb2.LayerParameter(name="flat", type="Flatten",
                                                         loss_weight=[0.5]))
    bottom, top = Blob((1, 2)), Blob()
    bottom.data[...] = [[2, 4]]
    layer.SetUp([bottom], [top])
    assert layer.Forward([bottom], [top]) == 3.0
