"""Net: state filtering, splits, in-place, sharing, backward planning, weights, errors."""

import numpy as np
import pytest

import netdef
from netdef.errors import LayerError, WeightsError
from netdef.net import Net, filter_net, insert_splits
from netdef.proto import caffe_pb2
from netdef.prototxt import parse_net_text

MLP = """
name: "mlp"
layer { name: "in" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 5 } shape { dim: 4 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param { num_output: 6 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip2" bottom: "label" top: "acc"
        include { phase: TEST } }
"""


def make(text=MLP, phase="TRAIN", **kw):
    net = Net(text, phase=phase, **kw)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
    if "label" in net.blobs:
        net.blobs["label"].data[...] = rng.integers(0, 3, net.blobs["label"].shape)
    return net


def test_state_filtering_phase_level_stage():
    text = """
    layer { name: "a" type: "Input" top: "x" input_param { shape { dim: 1 } } }
    layer { name: "t" type: "ReLU" bottom: "x" top: "t" include { phase: TRAIN } }
    layer { name: "lv" type: "ReLU" bottom: "x" top: "lv" include { min_level: 2 } }
    layer { name: "st" type: "ReLU" bottom: "x" top: "st" include { stage: "deploy" } }
    layer { name: "ns" type: "ReLU" bottom: "x" top: "ns" exclude { stage: "deploy" } }
    """
    p = parse_net_text(text)
    p.state.phase = caffe_pb2.TEST
    assert [lp.name for lp in filter_net(p).layer] == ["a", "ns"]
    p.state.level = 2
    p.state.stage.append("deploy")
    assert [lp.name for lp in filter_net(p).layer] == ["a", "lv", "st"]
    p.state.phase = caffe_pb2.TRAIN
    assert "t" in [lp.name for lp in filter_net(p).layer]


def test_include_and_exclude_together_is_an_error():
    p = parse_net_text('layer { name: "a" type: "Input" top: "x" include { phase: TRAIN } '
                       'exclude { phase: TEST } }')
    with pytest.raises(LayerError, match="'a'"):
        filter_net(p)


def test_split_inserted_with_caffe_names_and_gradients_summed():
    net = make(MLP, phase="TEST")
    names = [lp.name for lp in net.param.layer]
    assert "ip2_ip2_0_split" in names
    assert "ip2_ip2_0_split_0" in net.blobs and "ip2_ip2_0_split_1" in net.blobs
    p = insert_splits(parse_net_text(MLP))
    assert [lp.name for lp in p.layer].count("label_in_1_split") == 1


def test_in_place_layers_share_the_blob():
    net = make()
    relu = net.layer_dict["relu1"]
    i = net._layer_names.index("relu1")
    assert net.bottom_vecs[i][0] is net.top_vecs[i][0]
    assert relu.type == "ReLU"
    net.forward()
    assert (net.blobs["ip1"].data >= 0).all()


def test_forward_returns_outputs_and_loss_weight_scales_loss():
    net = make()
    out = net.forward()
    assert set(out) == {"loss"}
    base = float(out["loss"])
    text = MLP.replace('top: "loss" }', 'top: "loss" loss_weight: 2 }')
    net2 = make(text)
    net2.share_with(net)
    assert net2.forward_from_to() == pytest.approx(2 * base, rel=1e-6)


def test_backward_planning_and_propagate_down():
    net = make()
    assert net.layer_need_backward[net._layer_names.index("ip1")]
    assert not net.layer_need_backward[net._layer_names.index("in")]
    # label never gets a gradient; data only with force_backward
    loss_i = net._layer_names.index("loss")
    assert net.bottom_need_backward[loss_i] == [True, False]
    ip1_i = net._layer_names.index("ip1")
    assert net.bottom_need_backward[ip1_i] == [False]
    forced = make("force_backward: true\n" + MLP)
    forced.forward()
    forced.backward()
    assert np.abs(forced.blobs["data"].diff).sum() > 0
    assert forced.bottom_need_backward[forced._layer_names.index("loss")] == [True, False]


def test_lr_mult_zero_freezes_and_skips_backward():
    text = MLP.replace('top: "ip1"\n        inner_product_param',
                       'top: "ip1" param { lr_mult: 0 } param { lr_mult: 0 }\n'
                       '        inner_product_param')
    net = make(text)
    ip1 = net.layer_dict["ip1"]
    assert ip1.param_propagate_down == [False, False]
    assert not net.layer_need_backward[net._layer_names.index("ip1")]
    assert net.params_lr[:2] == [0.0, 0.0]


def test_parameter_sharing_by_name_accumulates_gradients():
    text = """
    layer { name: "in" type: "Input" top: "a" top: "b"
            input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "fa" type: "InnerProduct" bottom: "a" top: "fa" param { name: "w" }
            inner_product_param { num_output: 2 bias_term: false
                                  weight_filler { type: "gaussian" } } }
    layer { name: "fb" type: "InnerProduct" bottom: "b" top: "fb" param { name: "w" }
            inner_product_param { num_output: 2 bias_term: false } }
    layer { name: "sum" type: "Eltwise" bottom: "fa" bottom: "fb" top: "s" }
    layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "s" top: "l" }
    """
    net = Net(text, phase="TRAIN")
    wa, wb = net.params["fa"][0], net.params["fb"][0]
    assert np.shares_memory(wa.data, wb.data) and np.shares_memory(wa.diff, wb.diff)
    assert len(net.learnable_params) == 1
    rng = np.random.default_rng(1)
    net.blobs["a"].data[...] = rng.standard_normal((2, 3))
    net.blobs["b"].data[...] = rng.standard_normal((2, 3))
    net.blobs["s"].diff[...] = 0
    net.clear_param_diffs()
    for blob in ("fa", "fb"):
        net.blobs[blob].diff[...] = 1.0
    net.layers[1].backward(net.top_vecs[1], [False], net.bottom_vecs[1])
    net.layers[2].backward(net.top_vecs[2], [False], net.bottom_vecs[2])
    expected = np.ones((2, 2)).T @ (net.blobs["a"].data + net.blobs["b"].data)
    np.testing.assert_allclose(wa.diff, expected, rtol=1e-5)


def test_sharing_shape_mismatch_names_layers():
    text = """
    layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "fa" type: "InnerProduct" bottom: "a" top: "fa" param { name: "w" }
            inner_product_param { num_output: 2 } }
    layer { name: "fb" type: "InnerProduct" bottom: "a" top: "fb" param { name: "w" }
            inner_product_param { num_output: 4 } }
    """
    with pytest.raises(netdef.NetdefError, match="fb.*'w'.*fa"):
        Net(text, phase="TRAIN")


def test_errors_name_layer_and_blob():
    with pytest.raises(LayerError, match="Convolutoin.*Did you mean 'Convolution'"):
        Net('layer { name: "c" type: "Convolutoin" }', phase="TEST")
    with pytest.raises(LayerError, match="'r'.*unknown bottom blob 'nope'"):
        Net('layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }', phase="TEST")
    with pytest.raises(LayerError, match="produced by multiple layers"):
        Net('layer { name: "a" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
            'layer { name: "b" type: "Input" top: "x" input_param { shape { dim: 1 } } }',
            phase="TEST")


def test_duplicate_layer_names_are_accepted_as_caffe_does(caplog):
    net = Net('layer { name: "a" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
              'layer { name: "a" type: "ReLU" bottom: "x" top: "y" }', phase="TEST")
    assert net.layer_dict["a"].type == "ReLU"
    assert "used more than once" in caplog.text


def test_save_and_copy_from_round_trip(tmp_path):
    net = make()
    path = tmp_path / "m.caffemodel"
    net.save(str(path))
    other = Net(MLP, netdef.TEST, weights=str(path))
    for name in ("ip1", "ip2"):
        for a, b in zip(net.params[name], other.params[name]):
            np.testing.assert_array_equal(a.data, b.data)
    old_style = Net(MLP, str(path), netdef.TEST)
    np.testing.assert_array_equal(old_style.params["ip1"][0].data, net.params["ip1"][0].data)
    h5 = tmp_path / "m.caffemodel.h5"
    net.save_hdf5(str(h5))
    third = Net(MLP, phase="TEST", weights=str(h5))
    np.testing.assert_array_equal(third.params["ip2"][1].data, net.params["ip2"][1].data)


def test_copy_from_shape_mismatch_is_clear(tmp_path):
    net = make()
    path = tmp_path / "m.caffemodel"
    net.save(str(path))
    wider = MLP.replace("num_output: 6", "num_output: 7")
    with pytest.raises(WeightsError, match="layer 'ip1'; shape mismatch"):
        Net(wider, phase="TEST", weights=str(path))


def test_weights_matching_no_layer_is_an_error(tmp_path):
    net = make()
    path = tmp_path / "m.caffemodel"
    net.save(str(path))
    renamed = MLP.replace('"ip1"', '"fc1"').replace('"ip2"', '"fc2"')
    with pytest.raises(WeightsError, match="none of its"):
        Net(renamed, phase="TEST", weights=str(path))


def test_flat_parameter_buffers_are_views():
    net = make()
    total = sum(b.count for b in net.learnable_params)
    assert net.flat_data.size == total
    for b in net.learnable_params:
        assert np.shares_memory(b.data, net.flat_data)
        assert np.shares_memory(b.diff, net.flat_diff)
