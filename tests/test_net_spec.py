"""NetSpec (pycaffe's caffe.NetSpec / caffe.layers / caffe.params) writes nets from Python."""

import os

import pytest
from google.protobuf import text_format

import netdef
from netdef import layers as L
from netdef.net_spec import NetSpec, assign_proto, param_name_dict, params, to_proto
from netdef.proto import caffe_pb2
from netdef.prototxt import parse_net_text, read_net_param
from tests.shared import ROOT

P = params


def lenet_train_test():
    """examples/mnist/lenet_train_test.prototxt, written with NetSpec."""
    n = NetSpec(name="LeNet")
    for phase, source, batch in ((netdef.TRAIN, "examples/mnist/mnist_train_lmdb", 64),
                                 (netdef.TEST, "examples/mnist/mnist_test_lmdb", 100)):
        n.data, n.label = L.Data(name="mnist", include=dict(phase=phase),
                                 transform_param=dict(scale=0.00390625), source=source,
                                 batch_size=batch, backend=P.Data.LMDB, ntop=2)
    lr = [dict(lr_mult=1), dict(lr_mult=2)]
    fillers = dict(weight_filler=dict(type="xavier"), bias_filler=dict(type="constant"))
    n.conv1 = L.Convolution(n.data, param=lr, num_output=20, kernel_size=5, stride=1, **fillers)
    n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2 = L.Convolution(n.pool1, param=lr, num_output=50, kernel_size=5, stride=1,
                            **fillers)
    n.pool2 = L.Pooling(n.conv2, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.ip1 = L.InnerProduct(n.pool2, param=lr, num_output=500, **fillers)
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, param=lr, num_output=10, **fillers)
    n.accuracy = L.Accuracy(n.ip2, n.label, include=dict(phase=netdef.TEST))
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    return n


def test_regenerates_the_lenet_train_test_prototxt():
    want = read_net_param(os.path.join(ROOT, "examples", "mnist", "lenet_train_test.prototxt"))
    got = lenet_train_test().to_proto()
    assert got == want, text_format.MessageToString(got)
    # and the text it writes parses back to the same message
    assert parse_net_text(str(got)) == want


def test_pycaffe_spelling_works_from_the_top_level_package():
    from netdef import layers

    assert callable(layers.Convolution)
    assert layers.conv.__name__ == "netdef.layers.conv"   # the catalogue is still there
    assert "Convolution" in netdef.layer_type_list()
    with pytest.raises(AttributeError):
        layers.not_a_module  # noqa: B018
    assert P.Pooling.AVE == caffe_pb2.PoolingParameter.AVE
    assert P.Data.LMDB == caffe_pb2.DataParameter.LMDB


def test_automatic_names_and_to_proto_of_a_top():
    data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    conv = L.Convolution(data, num_output=4, kernel_size=3)
    relu = L.ReLU(conv, in_place=True)
    net = relu.to_proto()
    assert [(lp.name, lp.type, list(lp.bottom), list(lp.top)) for lp in net.layer] == [
        ("Input1", "Input", [], ["Input1"]),
        ("Convolution1", "Convolution", ["Input1"], ["Convolution1"]),
        ("ReLU1", "ReLU", ["Convolution1"], ["Convolution1"])]
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 3, 8, 8]
    assert to_proto(relu) == net


def test_parameters_go_where_they_belong():
    n = NetSpec()
    n.data = L.Input(shape=[dict(dim=[2, 3, 8, 8])])
    n.up = L.Deconvolution(n.data, num_output=3, kernel_size=4, stride=2, group=3,
                           bias_term=False, weight_filler=dict(type="bilinear"),
                           param=dict(lr_mult=0))
    n.score = L.InnerProduct(n.up, num_output=5, loss_weight=0.5, propagate_down=True,
                             name="classifier")
    n.silent = L.Silence(n.score, ntop=0)
    net = n.to_proto()
    deconv, ip, silence = net.layer[1], net.layer[2], net.layer[3]
    assert list(deconv.convolution_param.kernel_size) == [4]
    assert deconv.convolution_param.weight_filler.type == "bilinear"
    assert deconv.param[0].lr_mult == 0
    assert ip.name == "classifier" and list(ip.top) == ["score"]
    assert list(ip.loss_weight) == [0.5] and list(ip.propagate_down) == [True]
    assert silence.name == "silent" and list(silence.bottom) == ["score"] and not silence.top
    net_obj = netdef.Net(net, netdef.TEST)
    assert net_obj.blobs["score"].data.shape == (2, 5)


def test_enums_by_name_and_messages_by_value():
    lp = caffe_pb2.LayerParameter()
    assign_proto(lp, "pooling_param", {"pool": "AVE", "kernel_size": 3})
    assert lp.pooling_param.pool == caffe_pb2.PoolingParameter.AVE
    filler = caffe_pb2.FillerParameter(type="gaussian", std=0.1)
    assign_proto(lp.convolution_param, "weight_filler", filler)
    assert lp.convolution_param.weight_filler.std == pytest.approx(0.1)
    with pytest.raises(ValueError, match="AVG.*MAX"):
        assign_proto(lp, "pooling_param", {"pool": "AVG"})


def test_mistakes_are_named():
    with pytest.raises(AttributeError, match="num_outputs"):
        L.Convolution(L.Input(), num_outputs=3).to_proto()
    with pytest.raises(TypeError, match=r"ReLU input 0 is not a Top \(type is <class .str.>\)"):
        L.ReLU("data")
    with pytest.raises(TypeError, match="layer's output"):
        NetSpec().x = 3


def test_param_name_dict_covers_caffes_types():
    names = param_name_dict()
    assert names["Convolution"] == "convolution"
    assert names["InnerProduct"] == "inner_product"
    assert names["HDF5Data"] == "hdf5_data"
    assert names["Deconvolution"] == "convolution"
