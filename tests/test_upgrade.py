"""Upgrading V0/V1 nets, input fields, BatchNorm params and solver types as Caffe does."""

import logging
import os

import pytest
from google.protobuf import text_format

from netdef import upgrade
from netdef.errors import PrototxtError
from netdef.proto import caffe_pb2
from netdef.prototxt import parse_solver_text, read_net_param, read_net_param_binary
from tests.shared import DATA, need

PROTOTXT = os.path.join(DATA, "prototxt")
V0 = os.path.join(PROTOTXT, "BVLC_caffe@2e33058_V0")
V1 = os.path.join(PROTOTXT, "BVLC_caffe@11a4c16_V1")
V2 = os.path.join(PROTOTXT, "BVLC_caffe")


def net(text):
    return text_format.Parse(text, caffe_pb2.NetParameter())


def upgraded(text):
    param = net(text)
    upgrade.upgrade_net_param(param)
    return param


def by_name(param):
    return {layer.name: layer for layer in param.layer}


def v1_file(rel):
    return read_net_param(need(os.path.join(V1, rel)))


def v0_file(rel):
    return read_net_param(need(os.path.join(V0, rel)))


# ------------------------------------------------------------------ tables

def test_every_v1_type_has_a_v2_name():
    for value in caffe_pb2.V1LayerParameter.LayerType.DESCRIPTOR.values:
        assert value.name in upgrade.V1_TO_V2_TYPE


def test_v0_types_map_to_real_v1_types():
    for v1_name in upgrade.V0_TO_V1_TYPE.values():
        caffe_pb2.V1LayerParameter.LayerType.Value(v1_name)


def test_v0_field_targets_exist():
    v1_fields = caffe_pb2.V1LayerParameter.DESCRIPTOR.fields_by_name
    v0_fields = caffe_pb2.V0LayerParameter.DESCRIPTOR.fields_by_name
    for v0_name, targets in upgrade._V0_FIELD_TARGETS.items():
        assert v0_name in v0_fields
        for kind, path in targets.items():
            assert kind in upgrade.V0_TO_V1_TYPE
            parent, _, field = path.rpartition(".")
            descriptor = v1_fields[parent].message_type if parent else None
            assert field in (descriptor.fields_by_name if descriptor else v1_fields), path


def test_every_v1_param_message_exists_in_layer_parameter():
    layer_fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    for field in caffe_pb2.V1LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param"):
            assert layer_fields[field.name].message_type is field.message_type


# --------------------------------------------------------------- V1 -> V2

V1_V2_PAIRS = [
    ("examples/mnist/lenet.prototxt", "examples/mnist/lenet.prototxt"),
    ("examples/mnist/lenet_train_test.prototxt", "examples/mnist/lenet_train_test.prototxt"),
    ("examples/mnist/mnist_autoencoder.prototxt", "examples/mnist/mnist_autoencoder.prototxt"),
    ("examples/cifar10/cifar10_quick.prototxt", "examples/cifar10/cifar10_quick.prototxt"),
    ("examples/cifar10/cifar10_quick_train_test.prototxt",
     "examples/cifar10/cifar10_quick_train_test.prototxt"),
    ("examples/cifar10/cifar10_full.prototxt", "examples/cifar10/cifar10_full.prototxt"),
    ("examples/siamese/mnist_siamese.prototxt", "examples/siamese/mnist_siamese.prototxt"),
    ("examples/imagenet/bvlc_caffenet_full_conv.prototxt",
     "examples/net_surgery/bvlc_caffenet_full_conv.prototxt"),
    ("models/bvlc_alexnet/deploy.prototxt", "models/bvlc_alexnet/deploy.prototxt"),
    ("models/bvlc_alexnet/train_val.prototxt", "models/bvlc_alexnet/train_val.prototxt"),
    ("models/bvlc_googlenet/deploy.prototxt", "models/bvlc_googlenet/deploy.prototxt"),
    ("models/bvlc_reference_caffenet/deploy.prototxt",
     "models/bvlc_reference_caffenet/deploy.prototxt"),
    ("models/bvlc_reference_caffenet/train_val.prototxt",
     "models/bvlc_reference_caffenet/train_val.prototxt"),
    ("models/finetune_flickr_style/deploy.prototxt",
     "models/finetune_flickr_style/deploy.prototxt"),
]


@pytest.mark.parametrize("v1_rel,v2_rel", V1_V2_PAIRS, ids=[p[0] for p in V1_V2_PAIRS])
def test_v1_files_upgrade_to_what_caffe_committed_as_v2(v1_rel, v2_rel):
    """Caffe's own V2 files were made by its upgrade tool; only the Input layer's name was
    edited by hand afterwards ("input" -> "data")."""
    mine = v1_file(v1_rel)
    theirs = read_net_param(need(os.path.join(V2, v2_rel)))
    if mine.layer and mine.layer[0].type == "Input":
        assert mine.layer[0].name == "input"
        mine.layer[0].name = theirs.layer[0].name
    assert text_format.MessageToString(mine) == text_format.MessageToString(theirs)


def test_v1_lenet_facts():
    param = v1_file("examples/mnist/lenet_train_test.prototxt")
    assert not param.layers
    types = [(layer.name, layer.type) for layer in param.layer]
    assert types == [("mnist", "Data"), ("mnist", "Data"), ("conv1", "Convolution"),
                     ("pool1", "Pooling"), ("conv2", "Convolution"), ("pool2", "Pooling"),
                     ("ip1", "InnerProduct"), ("relu1", "ReLU"), ("ip2", "InnerProduct"),
                     ("accuracy", "Accuracy"), ("loss", "SoftmaxWithLoss")]
    train, test = param.layer[0], param.layer[1]
    assert [r.phase for r in train.include] == [caffe_pb2.TRAIN]
    assert [r.phase for r in test.include] == [caffe_pb2.TEST]
    assert train.transform_param.scale == pytest.approx(0.00390625)
    assert not train.data_param.HasField("scale")
    assert train.data_param.backend == caffe_pb2.DataParameter.LMDB
    conv1 = by_name(param)["conv1"]
    assert [p.lr_mult for p in conv1.param] == [1, 2]
    assert conv1.convolution_param.num_output == 20
    assert list(conv1.convolution_param.kernel_size) == [5]
    assert by_name(param)["accuracy"].include[0].phase == caffe_pb2.TEST


def test_v1_weight_decay_becomes_decay_mult():
    param = v1_file("models/bvlc_alexnet/train_val.prototxt")
    conv1 = by_name(param)["conv1"]
    assert [(p.lr_mult, p.decay_mult) for p in conv1.param] == [(1, 1), (2, 0)]


def test_v1_sharing_loss_weight_exclude_and_params():
    param = upgraded("""
        layers { name: "a" type: INNER_PRODUCT bottom: "x" top: "y"
                 param: "w" param: "b" blob_share_mode: PERMISSIVE
                 blobs_lr: 3 weight_decay: 0.5 weight_decay: 0
                 inner_product_param { num_output: 4 }
                 exclude { phase: TEST stage: "deploy" } }
        layers { name: "l" type: EUCLIDEAN_LOSS bottom: "y" bottom: "x" top: "loss"
                 loss_weight: 2.5 }
        layers { name: "h" type: HDF5_DATA top: "x" hdf5_data_param { source: "s" } }
        layers { name: "u" type: SIGMOID_CROSS_ENTROPY_LOSS }
        layers { name: "none" }
    """)
    a, loss, h, u, none = param.layer
    assert [(p.name, p.lr_mult, p.decay_mult) for p in a.param] == [("w", 3, 0.5), ("b", 1, 0)]
    assert a.param[0].share_mode == caffe_pb2.ParamSpec.PERMISSIVE
    assert not a.param[1].HasField("share_mode")
    assert not a.param[1].HasField("lr_mult")
    assert a.inner_product_param.num_output == 4
    assert a.exclude[0].phase == caffe_pb2.TEST and list(a.exclude[0].stage) == ["deploy"]
    assert loss.type == "EuclideanLoss" and list(loss.loss_weight) == [2.5]
    assert h.type == "HDF5Data" and h.hdf5_data_param.source == "s"
    assert u.type == "SigmoidCrossEntropyLoss"
    assert not none.HasField("type")


def test_v1_blobs_are_kept():
    param = upgraded("""layers { name: "c" type: CONVOLUTION
        blobs { num: 1 channels: 1 height: 1 width: 2 data: 1 data: 2 } }""")
    assert list(param.layer[0].blobs[0].data) == [1, 2]


def test_data_transformation_fields_move_to_transform_param():
    param = upgraded("""
        layers { name: "d" type: DATA top: "data"
                 data_param { source: "db" batch_size: 4 scale: 0.00390625 mirror: true
                              crop_size: 3 mean_file: "m.binaryproto" } }
        layers { name: "i" type: IMAGE_DATA top: "img" image_data_param { source: "l" } }
        layers { name: "w" type: WINDOW_DATA top: "win"
                 window_data_param { source: "w" crop_size: 7 } }
    """)
    d, i, w = param.layer
    assert d.transform_param.scale == pytest.approx(0.00390625)
    assert d.transform_param.mirror and d.transform_param.crop_size == 3
    assert d.transform_param.mean_file == "m.binaryproto"
    for field in ("scale", "mirror", "crop_size", "mean_file"):
        assert not d.data_param.HasField(field)
    assert d.data_param.source == "db" and d.data_param.batch_size == 4
    assert w.transform_param.crop_size == 7 and not w.window_data_param.HasField("crop_size")
    # Caffe touches transform_param of every data layer while upgrading.
    assert i.HasField("transform_param") and i.transform_param.ListFields() == []


def test_mixing_layer_and_layers_is_an_error():
    with pytest.raises(PrototxtError, match="mixes"):
        upgraded('layer { name: "a" type: "ReLU" } layers { name: "b" type: RELU }')
    with pytest.raises(PrototxtError, match="mixes"):
        upgraded('layer { name: "a" type: "ReLU" } layers { layer { name: "b" type: "relu" } }')


# --------------------------------------------------------------- V0 -> V2

def test_v0_lenet_train():
    param = v0_file("examples/lenet/lenet_train.prototxt")
    assert param.name == "LeNet"
    types = [(layer.name, layer.type) for layer in param.layer]
    assert types == [("mnist", "Data"), ("conv1", "Convolution"), ("pool1", "Pooling"),
                     ("conv2", "Convolution"), ("pool2", "Pooling"), ("ip1", "InnerProduct"),
                     ("relu1", "ReLU"), ("ip2", "InnerProduct"), ("loss", "SoftmaxWithLoss")]
    layers = by_name(param)
    data = layers["mnist"]
    assert data.transform_param.scale == pytest.approx(0.00390625)
    assert data.data_param.source == "mnist-train-leveldb"
    assert data.data_param.batch_size == 64
    conv1 = layers["conv1"].convolution_param
    assert conv1.num_output == 20 and list(conv1.kernel_size) == [5]
    assert list(conv1.stride) == [1] and conv1.weight_filler.type == "xavier"
    assert [p.lr_mult for p in layers["conv1"].param] == [1, 2]
    pool = layers["pool1"].pooling_param
    assert pool.pool == caffe_pb2.PoolingParameter.MAX
    assert pool.kernel_size == 2 and pool.stride == 2
    assert layers["ip1"].inner_product_param.num_output == 500
    assert list(layers["loss"].bottom) == ["ip2", "label"]


def test_v0_imagenet_deploy():
    param = v0_file("examples/imagenet/imagenet_deploy.prototxt")
    first = param.layer[0]
    assert (first.name, first.type, list(first.top)) == ("input", "Input", ["data"])
    assert list(first.input_param.shape[0].dim) == [10, 3, 227, 227]
    assert not param.input and not param.input_dim
    layers = by_name(param)
    conv2 = layers["conv2"].convolution_param
    assert list(conv2.pad) == [2] and conv2.group == 2 and list(conv2.kernel_size) == [5]
    assert [(p.lr_mult, p.decay_mult) for p in layers["conv2"].param] == [(1, 1), (2, 0)]
    norm1 = layers["norm1"]
    assert norm1.type == "LRN" and norm1.lrn_param.local_size == 5
    assert norm1.lrn_param.alpha == pytest.approx(0.0001)
    assert layers["drop6"].type == "Dropout"
    assert layers["drop6"].dropout_param.dropout_ratio == pytest.approx(0.5)
    assert layers["prob"].type == "Softmax"


def test_v0_padding_layers_fold_into_convolution():
    path = need(os.path.join(V0, "examples/pascal-finetuning/pascal_finetune_val.prototxt"))
    raw = text_format.Parse(open(path).read(), caffe_pb2.NetParameter())
    padding = [c for c in raw.layers if c.layer.type == "padding"]
    assert len(padding) == 4
    param = read_net_param(path)
    assert len(param.layer) == len(raw.layers) - len(padding)
    layers = by_name(param)
    for pad_layer in padding:
        consumer = [c for c in raw.layers if pad_layer.top[0] in c.bottom][0]
        upgraded_layer = layers[consumer.layer.name]
        assert upgraded_layer.type == "Convolution"
        assert list(upgraded_layer.bottom) == [pad_layer.bottom[0]]
        assert list(upgraded_layer.convolution_param.pad) == [pad_layer.layer.pad]
    assert list(layers["conv2"].bottom) == ["norm1"]
    assert list(layers["conv2"].convolution_param.pad) == [2]
    win = layers["data"]
    assert win.type == "WindowData" and win.window_data_param.context_pad == 16
    assert win.transform_param.crop_size == 227 and win.transform_param.mirror


def test_v0_and_v1_cifar10_quick_agree():
    assert (text_format.MessageToString(v0_file("examples/cifar10/cifar10_quick.prototxt"))
            == text_format.MessageToString(v1_file("examples/cifar10/cifar10_quick.prototxt")))


def test_v0_keeps_only_what_caffe_keeps():
    param = upgraded("""name: "n" force_backward: true debug_info: true
        input: "x" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4
        layers { layer { name: "r" type: "relu" } bottom: "x" top: "x" }""")
    assert param.name == "n" and param.force_backward and not param.debug_info
    assert [layer.type for layer in param.layer] == ["Input", "ReLU"]


def test_v0_field_for_the_wrong_type_is_dropped_and_reported(caplog):
    param = net('layers { layer { name: "r" type: "relu" num_output: 3 } }')
    with caplog.at_level(logging.ERROR, logger="netdef"):
        report = upgrade.upgrade_net(param, "x.prototxt")
    assert report.changed and not report.compatible
    assert "num_output" in caplog.text
    assert param.layer[0].type == "ReLU" and not param.layer[0].HasField("inner_product_param")


def test_v0_unknown_type_is_an_error():
    with pytest.raises(PrototxtError, match="unknown V0 layer type 'convolution'"):
        upgraded('layers { layer { name: "c" type: "convolution" } }')


def test_v0_padding_into_a_non_conv_layer_is_an_error():
    with pytest.raises(PrototxtError, match="padding"):
        upgraded("""input: "x"
            layers { layer { name: "p" type: "padding" pad: 1 } bottom: "x" top: "px" }
            layers { layer { name: "r" type: "relu" } bottom: "px" top: "y" }""")


def test_v0_unknown_bottom_is_an_error():
    with pytest.raises(PrototxtError, match="'nowhere'"):
        upgraded('layers { layer { name: "r" type: "relu" } bottom: "nowhere" top: "y" }')


def test_v0_mixed_with_v1_is_an_error():
    with pytest.raises(PrototxtError, match="V1 layer inside a V0 net"):
        upgraded("""layers { layer { name: "r" type: "relu" } }
                    layers { name: "c" type: CONVOLUTION }""")


# ------------------------------------------------------------- net inputs

def test_input_shape_becomes_first_input_layer():
    param = upgraded("""input: "a" input_shape { dim: 2 dim: 3 }
        input: "b" input_shape { dim: 2 }
        layer { name: "r" type: "ReLU" bottom: "a" top: "r" }""")
    first = param.layer[0]
    assert (first.name, first.type, list(first.top)) == ("input", "Input", ["a", "b"])
    assert [list(s.dim) for s in first.input_param.shape] == [[2, 3], [2]]
    assert [layer.name for layer in param.layer] == ["input", "r"]
    assert not param.input and not param.input_shape


def test_input_dim_groups_of_four():
    param = upgraded('input: "a" input: "b" ' + " ".join(
        f"input_dim: {d}" for d in (1, 2, 3, 4, 5, 6, 7, 8)))
    assert [list(s.dim) for s in param.layer[0].input_param.shape] == [[1, 2, 3, 4],
                                                                      [5, 6, 7, 8]]


def test_input_without_shape_is_dropped():
    param = upgraded('input: "data" layer { name: "r" type: "ReLU" }')
    assert [layer.name for layer in param.layer] == ["r"] and not param.input


def test_input_dim_count_must_match():
    with pytest.raises(PrototxtError, match="input_dim"):
        upgraded('input: "a" input: "b" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4')


def test_input_shape_count_must_match():
    with pytest.raises(PrototxtError, match="input_shape"):
        upgraded('input: "a" input: "b" input_shape { dim: 1 }')


# ---------------------------------------------------------------- BatchNorm

def test_batchnorm_params_get_zero_rates_and_keep_names():
    param = upgraded("""
        layer { name: "bn" type: "BatchNorm"
                param { lr_mult: 1 decay_mult: 1 name: "m" } param { name: "v" }
                param { lr_mult: 0 } }
        layer { name: "bn2" type: "BatchNorm" param { lr_mult: 3 } }""")
    bn, bn2 = param.layer
    assert [(p.name, p.lr_mult, p.decay_mult) for p in bn.param] == [
        ("m", 0, 0), ("v", 0, 0), ("", 0, 0)]
    assert all(p.HasField("lr_mult") and p.HasField("decay_mult") for p in bn.param)
    assert bn2.param[0].lr_mult == 3  # not the old three-ParamSpec form: left alone


def test_batchnorm_already_pinned_is_no_change():
    param = net("""layer { name: "bn" type: "BatchNorm"
        param { lr_mult: 0 decay_mult: 0 } param { lr_mult: 0 decay_mult: 0 }
        param { lr_mult: 0 decay_mult: 0 } }""")
    assert upgrade.net_needs_upgrade(param)  # Caffe's test still says so
    assert upgrade.upgrade_net_param(param) is False


def test_bn_example_upgrades():
    param = read_net_param(need(os.path.join(
        V2, "examples/cifar10/cifar10_full_sigmoid_train_test_bn.prototxt")))
    for layer in param.layer:
        if layer.type == "BatchNorm":
            assert [(p.lr_mult, p.decay_mult) for p in layer.param] == [(0, 0)] * 3


# ------------------------------------------------------------------ driver

def test_current_nets_need_nothing():
    param = read_net_param(need(os.path.join(V2, "models/bvlc_googlenet/train_val.prototxt")))
    assert not upgrade.net_needs_upgrade(param)
    assert upgrade.upgrade_net_param(param) is False


def test_upgrade_is_idempotent():
    param = net(open(need(os.path.join(V1, "models/bvlc_googlenet/deploy.prototxt"))).read())
    assert upgrade.net_needs_upgrade(param)
    assert upgrade.upgrade_net_param(param) is True
    assert not upgrade.net_needs_upgrade(param)
    assert upgrade.upgrade_net_param(param) is False


def test_binary_v1_caffemodel_upgrades():
    path = need(os.path.join(DATA, "models/cifar10_quick_everpeace/"
                                   "cifar10_quick_iter_5000.caffemodel"))
    param = read_net_param_binary(path)
    assert not param.layers
    with_blobs = [(layer.name, layer.type, len(layer.blobs)) for layer in param.layer
                  if layer.blobs]
    assert with_blobs == [("conv1", "Convolution", 2), ("conv2", "Convolution", 2),
                          ("conv3", "Convolution", 2), ("ip1", "InnerProduct", 2),
                          ("ip2", "InnerProduct", 2)]


# ------------------------------------------------------------------- solver

@pytest.mark.parametrize("enum,name", sorted(upgrade.SOLVER_TYPE_NAMES.items()))
def test_solver_type_enum_becomes_string(enum, name):
    solver = parse_solver_text(f"base_lr: 0.1 solver_type: {enum}")
    assert solver.type == name and not solver.HasField("solver_type")


def test_solver_with_both_types_is_an_error():
    with pytest.raises(PrototxtError, match="both"):
        parse_solver_text('solver_type: ADAM type: "Adam"', "s.prototxt")


def test_solver_without_old_type_is_unchanged():
    solver = caffe_pb2.SolverParameter(type="Adam")
    assert upgrade.upgrade_solver_param(solver) is False


def test_inline_solver_net_is_upgraded():
    path = need(os.path.join(V2, "examples/mnist/lenet_consolidated_solver.prototxt"))
    from netdef.prototxt import read_solver_param

    solver = read_solver_param(path)
    assert not solver.net_param.layers
    assert "SoftmaxWithLoss" in [layer.type for layer in solver.net_param.layer]
