"""The opt-in inference plan (netdef/inference.py): fused Conv+BN+Scale+ReLU, the tight
loop, the liveness memory plan -- and that nothing a pycaffe user sees changes."""

import json
import os
import types

import numpy as np
import pytest

from netdef.errors import LayerError, NetdefError
from netdef.inference import affine_of, find_fusions, find_siblings
from netdef.net import Net
from tests.shared import DATA, need

# conv1 -> BN -> Scale -> ReLU (all in place): folded + fused.  conv2 (no bias) -> BN ->
# Scale (no bias): folded.  conv3 -> ReLU (in place): ReLU fused.  conv4 -> ReLU with
# its own top: not fused (conv4's top stays visible pre-ReLU).  'c3' feeds two layers
# (a Split), a Concat joins, a Dropout in place idles in TEST.
NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "c1" top: "c1" }
layer { name: "sc1" type: "Scale" bottom: "c1" top: "c1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "c1" top: "c1" relu_param { negative_slope: 0.1 } }
layer { name: "conv2" type: "Convolution" bottom: "c1" top: "c2"
  convolution_param { num_output: 5 kernel_size: 1 bias_term: false } }
layer { name: "bn2" type: "BatchNorm" bottom: "c2" top: "c2" }
layer { name: "sc2" type: "Scale" bottom: "c2" top: "c2" }
layer { name: "conv3" type: "Convolution" bottom: "c2" top: "c3"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu3" type: "ReLU" bottom: "c3" top: "c3" }
layer { name: "conv4" type: "Convolution" bottom: "c3" top: "c4"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "relu4" type: "ReLU" bottom: "c4" top: "r4" }
layer { name: "pool" type: "Pooling" bottom: "c3" top: "p"
  pooling_param { pool: MAX kernel_size: 1 } }
layer { name: "cat" type: "Concat" bottom: "r4" bottom: "p" top: "cat" }
layer { name: "drop" type: "Dropout" bottom: "cat" top: "cat" }
layer { name: "fc" type: "InnerProduct" bottom: "cat" top: "fc"
  inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def make_net(seed=0, **optimize):
    net = Net(NET, phase="TEST")
    rng = np.random.default_rng(seed)
    for name, blobs in net.params.items():
        for k, blob in enumerate(blobs):
            blob.data[...] = rng.uniform(-1, 1, blob.shape)
            if name.startswith("bn") and k == 1:
                blob.data[...] = rng.uniform(0.5, 2.0, blob.shape)      # variances
            if name.startswith("bn") and k == 2:
                blob.data[...] = 2.0                                    # scale factor
    if optimize:
        net.optimize_for_inference(**optimize)
    return net


def data(batch=2, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, 3, 6, 6)).astype(np.float32)


def assert_blobs_equal(got, want, names=None):
    for name in names or want.blobs:
        a, b = got.blobs[name].data, want.blobs[name].data
        assert a.shape == b.shape, name
        scale = max(1.0, float(np.abs(b).max()))    # float32 round-off of the fold
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale, err_msg=name)


def test_finds_the_chains_caffe_deploy_nets_have():
    net = make_net()
    found = {f.conv.name: ([net.layers[j].name for j in f.members], f.folds, f.relu_slope)
             for f in find_fusions(net)}
    assert found == {"conv1": (["bn1", "sc1", "relu1"], True, pytest.approx(0.1)),
                     "conv2": (["bn2", "sc2"], True, None),
                     "conv3": (["relu3"], False, 0.0)}


def test_affine_of_batch_norm_and_scale_matches_the_layers():
    net = make_net()
    x = data()
    net.forward(end="conv1", data=x)
    before = net.blobs["c1"].data.copy()
    net.forward(start="bn1", end="sc1")
    a, c = affine_of(net.layer_dict["bn1"], net.layer_dict["sc1"], 4)
    want = before * a.reshape(1, 4, 1, 1) + c.reshape(1, 4, 1, 1)
    np.testing.assert_allclose(net.blobs["c1"].data, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reuse", [False, True])
def test_full_forward_equals_the_plain_net(reuse):
    plain, fast = make_net(), make_net(fuse=True, reuse_memory=reuse)
    x = data()
    want = plain.forward(data=x)
    got = fast.forward(data=x)
    np.testing.assert_allclose(got["prob"], want["prob"], rtol=1e-4, atol=5e-5)
    if not reuse:
        assert_blobs_equal(fast, plain)        # every named blob, intermediate ones too
    got = fast.forward(data=x)                 # second call: reshape and plan skipped
    np.testing.assert_allclose(got["prob"], want["prob"], rtol=1e-4, atol=5e-5)


def test_the_nets_own_layers_and_params_are_untouched():
    plain, fast = make_net(), make_net(fuse=True)
    fast.forward(data=data())
    for name, blobs in plain.params.items():
        mine = fast.params[name]
        assert len(mine) == len(blobs), name
        for a, b in zip(mine, blobs, strict=True):
            np.testing.assert_array_equal(a.data, b.data)
    assert fast.layer_dict["conv2"].bias_term is False
    assert fast.layer_dict["conv3"].fused_relu is None


def test_partial_forwards_run_the_unfused_layers():
    plain, fast = make_net(), make_net(fuse=True)
    x = data()
    for net in (plain, fast):
        net.forward(data=x)                    # the fast one: fused
        net.forward(end="conv1", data=x)       # conv1's top holds the pre-BN values
    assert_blobs_equal(fast, plain, ["c1"])
    for net in (plain, fast):
        net.forward(start="bn1", end="conv3")
        net.forward(start="relu3")
    assert_blobs_equal(fast, plain)


@pytest.mark.parametrize("layer,index", [("conv1", 0), ("bn1", 0), ("bn2", 1), ("sc1", 1),
                                         ("conv3", 1), ("conv2", 0)])
def test_net_surgery_reaches_the_next_forward(layer, index):
    plain, fast = make_net(), make_net(fuse=True)
    x = data()
    fast.forward(data=x)
    for net in (plain, fast):
        net.params[layer][index].data[...] *= 1.5
    fast.forward(data=x)
    plain.forward(data=x)
    assert_blobs_equal(fast, plain)


def test_surgery_through_a_kept_reference_needs_refresh():
    plain, fast = make_net(), make_net(fuse=True)
    x = data()
    w_fast, w_plain = fast.params["bn1"][1], plain.params["bn1"][1]
    fast.forward(data=x)
    w_fast.data[...] *= 2.0
    w_plain.data[...] *= 2.0
    fast.inference_plan.refresh()
    fast.forward(data=x)
    plain.forward(data=x)
    assert_blobs_equal(fast, plain)


def test_copy_from_and_save_use_the_original_parameters(tmp_path):
    source = make_net(seed=5)
    path = str(tmp_path / "w.caffemodel")
    source.save(path)
    plain, fast = make_net(), make_net(fuse=True)
    x = data()
    fast.forward(data=x)
    fast.copy_from(path)
    plain.copy_from(path)
    fast.forward(data=x)
    plain.forward(data=x)
    assert_blobs_equal(fast, plain)
    fast.save(str(tmp_path / "fast.caffemodel"))
    plain.save(str(tmp_path / "plain.caffemodel"))
    assert (tmp_path / "fast.caffemodel").read_bytes() == \
        (tmp_path / "plain.caffemodel").read_bytes()


def test_new_input_shape_replans():
    plain, fast = make_net(), make_net(fuse=True, reuse_memory=True)
    for batch in (2, 5, 1):
        x = data(batch, seed=batch)
        for net in (plain, fast):
            net.blobs["data"].reshape(x.shape)
        want = plain.forward(data=x)["prob"]
        got = fast.forward(data=x)["prob"]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=5e-5)


def test_reuse_memory_shares_buffers_and_guards_lost_blobs():
    fast = make_net(fuse=True, reuse_memory=True, keep=["c3"])
    plain = make_net()
    x = data()
    plain.forward(data=x)
    out = fast.forward(blobs=["c3"], data=x)
    assert fast.inference_plan.saved_bytes > 0
    np.testing.assert_allclose(out["c3"], plain.blobs["c3"].data, rtol=1e-5, atol=1e-5)
    with pytest.raises(LayerError, match="keep"):
        fast.forward(blobs=["c2"], data=x)
    with pytest.raises(LayerError, match="no blob"):
        make_net(fuse=True, reuse_memory=True, keep=["nope"])


def test_partial_forwards_with_reused_memory_still_compute_the_net():
    plain, fast = make_net(), make_net(fuse=True, reuse_memory=True)
    x = data()
    fast.forward(data=x)                       # lays out the shared buffers
    fast.forward(end="conv2", data=x)
    fast.forward(start="bn2")
    plain.forward(data=x)
    assert_blobs_equal(fast, plain, ["prob"])


def test_train_nets_are_refused():
    with pytest.raises(LayerError, match="TRAIN"):
        Net(NET, phase="TRAIN").optimize_for_inference()


def test_backward_after_an_optimized_forward_matches_the_plain_net():
    text = "force_backward: true\n" + NET
    plain, fast = Net(text, phase="TEST"), Net(text, phase="TEST")
    fast.copy_trained_layers([(n, [b.data for b in bl]) for n, bl in plain.params.items()])
    fast.optimize_for_inference()
    x = data()
    for net in (plain, fast):
        net.forward(data=x)
        net.blobs["prob"].diff[...] = np.arange(10, dtype=np.float32).reshape(2, 5)
        net.backward()
    np.testing.assert_allclose(fast.blobs["data"].diff, plain.blobs["data"].diff,
                               rtol=1e-4, atol=1e-6)
    fast.optimize_for_inference(reuse_memory=True)
    fast.forward(data=x)
    with pytest.raises(NetdefError, match="reuse_memory"):
        fast.backward()
    fast.forward(start="conv1", data=x)        # the plain layers, but shared buffers
    with pytest.raises(NetdefError, match="reuse_memory"):
        fast.backward()
    fast.optimize_for_inference()              # a new plan gives the buffers back
    for net in (plain, fast):
        net.forward(data=x)
        net.backward()
    np.testing.assert_allclose(fast.blobs["data"].diff, plain.blobs["data"].diff,
                               rtol=1e-4, atol=1e-6)


def test_nets_with_data_layers_keep_per_forward_reshapes():
    text = NET.replace(
        'layer { name: "data" type: "Input" top: "data"\n'
        '  input_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } } }',
        'layer { name: "data" type: "DummyData" top: "data" dummy_data_param { shape { dim: 2 '
        'dim: 3 dim: 6 dim: 6 } data_filler { type: "uniform" min: -1 max: 1 } } }')
    plain = Net(text, phase="TEST", seed_seq=np.random.SeedSequence(3))
    fast = Net(text, phase="TEST", seed_seq=np.random.SeedSequence(3))
    fast.copy_trained_layers([(n, [b.data for b in bl]) for n, bl in plain.params.items()])
    fast.optimize_for_inference(reuse_memory=True)
    assert not fast.inference_plan.static and not fast.inference_plan.reuse_memory
    plain.forward()
    fast.forward()
    assert_blobs_equal(fast, plain)


def test_constructor_opt_in():
    net = Net(NET, phase="TEST", optimize=True)
    assert net.inference_plan is not None
    assert Net(NET, phase="TEST").inference_plan is None


MODELS = {
    "lenet_ethereon": "lenet_iter_10000.caffemodel",
    "cifar10_quick_everpeace": "cifar10_quick_iter_5000.caffemodel",
    "mtcnn_det1": "det1.caffemodel",
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_real_models_optimized_match_opencv(name):
    folder = need(os.path.join(DATA, "models", name))
    ref = np.load(os.path.join(folder, "reference_opencv.npz"))
    meta = json.loads(str(ref["meta_json"][()]))
    net = Net(os.path.join(folder, "deploy.prototxt"), phase="TEST",
              weights=os.path.join(folder, MODELS[name]))
    net.optimize_for_inference(reuse_memory=True)
    for run in meta["runs"]:
        shape = run["input_shape"]
        suffix = "" if shape == meta["runs"][0]["input_shape"] else "@" + "x".join(map(str, shape))
        x = ref["input" + suffix]
        net.blobs[net.inputs[0]].reshape(x.shape)
        out = net.forward(**{net.inputs[0]: x})
        for key in run["outputs"]:
            want = ref[f"out{suffix}/{key}"]
            err = float(np.abs(out[key] - want.reshape(out[key].shape)).max())
            assert err <= 1e-4 * max(1.0, float(np.abs(want).max())), f"{name} {key}: {err:.3g}"
    assert net.inference_plan.shares_memory


def test_surgery_through_layers_and_layer_dict_refolds():
    plain, fast = make_net(), make_net(fuse=True)
    x = data()
    fast.forward(data=x)
    for net in (plain, fast):
        net.layers[2].blobs[0].data[...] += 0.25            # bn1's mean
        net.layer_dict["sc2"].blobs[0].data[...] *= -1.0
    for net in (plain, fast):
        net.forward(data=x)
    assert_blobs_equal(fast, plain)


def test_batch_norm_with_batch_statistics_is_not_folded():
    text = NET.replace('layer { name: "bn1" type: "BatchNorm" bottom: "c1" top: "c1" }',
                       'layer { name: "bn1" type: "BatchNorm" bottom: "c1" top: "c1" '
                       'batch_norm_param { use_global_stats: false } }')
    net = Net(text, phase="TEST")
    chains = {f.conv.name: [net.layers[j].name for j in f.members] for f in find_fusions(net)}
    assert "conv1" not in chains and chains["conv2"] == ["bn2", "sc2"]


BRANCHES = """
name: "branches"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 2 dim: 5 dim: 5 } } }
layer { name: "a" type: "Convolution" bottom: "data" top: "a"
  convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "b" type: "Convolution" bottom: "data" top: "b"
  convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
  convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" bottom: "c" top: "cat" }
layer { name: "d" type: "Convolution" bottom: "cat" top: "d"
  convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "e" type: "Convolution" bottom: "d" top: "e"
  convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "f" type: "Convolution" bottom: "e" top: "f"
  convolution_param { num_output: 3 kernel_size: 1 } }
"""


def test_memory_plan_reuses_equal_sized_buffers_only_after_their_last_reader():
    plain = Net(BRANCHES, phase="TEST")
    fast = Net(BRANCHES, phase="TEST")
    fast.copy_trained_layers([(n, [b.data for b in bl]) for n, bl in plain.params.items()])
    fast.optimize_for_inference(reuse_memory=True)
    x = data(1)[:, :2, :5, :5]
    plain.forward(data=x)
    fast.forward(data=x)
    np.testing.assert_allclose(fast.blobs["f"].data, plain.blobs["f"].data, rtol=1e-5)
    blobs = fast.blobs
    # a, b, c are read together by the concat: distinct; d and e may take their buffers.
    assert not np.shares_memory(blobs["a"].data, blobs["b"].data)
    assert not np.shares_memory(blobs["b"].data, blobs["c"].data)
    assert any(np.shares_memory(blobs["e"].data, blobs[n].data) for n in "abc")
    assert not np.shares_memory(blobs["f"].data, blobs["e"].data)     # f is the output
    assert fast.inference_plan.saved_bytes > 0


# An Inception-style block: 'a', 'b' and 'c' are 1x1 convolutions of 'data' (a Split),
# 'c' after 'b2' in the layer order; 'd' is a 1x1 of the pooled data.
SIBLINGS = """
name: "siblings"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 8 dim: 5 dim: 5 } } }
layer { name: "a" type: "Convolution" bottom: "data" top: "a"
  convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "relu_a" type: "ReLU" bottom: "a" top: "a" }
layer { name: "b" type: "Convolution" bottom: "data" top: "b"
  convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "relu_b" type: "ReLU" bottom: "b" top: "b" relu_param { negative_slope: 0.2 } }
layer { name: "b2" type: "Convolution" bottom: "b" top: "b2"
  convolution_param { num_output: 5 kernel_size: 3 pad: 1 } }
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
  convolution_param { num_output: 2 kernel_size: 1 bias_term: false } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool"
  pooling_param { pool: MAX kernel_size: 3 pad: 1 stride: 1 } }
layer { name: "d" type: "Convolution" bottom: "pool" top: "d"
  convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b2" bottom: "c" bottom: "d"
  top: "out" }
"""


def sibling_net(text=SIBLINGS, seed=3, **optimize):
    net = Net(text, phase="TEST")
    rng = np.random.default_rng(seed)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.uniform(-1, 1, blob.shape)
    if optimize:
        net.optimize_for_inference(**optimize)
    return net


def sibling_groups(net):
    return [[layer.name for layer in sib.layers] for sib in net.inference_plan.siblings]


@pytest.mark.parametrize("reuse", [False, True])
def test_sibling_1x1_convolutions_run_as_one_gemm(reuse):
    plain, fast = sibling_net(), sibling_net(reuse_memory=reuse)
    assert sibling_groups(fast) == [["a", "b", "c"]]
    x = np.random.default_rng(4).uniform(-1, 1, (2, 8, 5, 5)).astype(np.float32)
    want = plain.forward(data=x)["out"].copy()
    for _ in range(2):
        np.testing.assert_allclose(fast.forward(data=x)["out"], want, rtol=1e-5, atol=1e-5)
    if not reuse:
        assert_blobs_equal(fast, plain)
    x3 = np.random.default_rng(5).uniform(-1, 1, (3, 8, 5, 5)).astype(np.float32)
    for net in (plain, fast):
        net.blobs["data"].reshape(3, 8, 5, 5)
    np.testing.assert_allclose(fast.forward(data=x3)["out"], plain.forward(data=x3)["out"],
                               rtol=1e-5, atol=1e-5)


def test_surgery_on_a_sibling_reaches_the_next_forward():
    plain, fast = sibling_net(), sibling_net(fuse=True)
    x = np.random.default_rng(6).uniform(-1, 1, (2, 8, 5, 5)).astype(np.float32)
    fast.forward(data=x)
    for net in (plain, fast):
        net.params["c"][0].data[...] *= -2.0
        net.params["b"][1].data[...] += 0.5
    np.testing.assert_allclose(fast.forward(data=x)["out"], plain.forward(data=x)["out"],
                               rtol=1e-5, atol=1e-5)


def test_a_sibling_is_not_moved_past_a_layer_that_writes_their_input():
    # Caffe's own nets cannot do this (an in-place layer on a blob other layers read is
    # refused), but a Python layer may write its bottom: 'b' must then stay after it.
    net = sibling_net()
    steps = {layer.name: (layer, net.bottom_vecs[i], net.top_vecs[i])
             for i, layer in enumerate(net.layers)}
    writer = (types.SimpleNamespace(type="Python"), [], [net.blobs["data"]])
    order = [steps["a"], writer, steps["b"], steps["c"]]
    assert find_siblings(order, [0, 1, 2, 3]) == []
    order = [steps["a"], steps["b"], writer, steps["c"]]
    assert find_siblings(order, [0, 1, 2, 3]) == [[0, 1]]
    assert find_siblings(order, [0, 1, 3]) == [[0, 1, 3]]      # the writer does not run


def test_googlenet_inception_modules_each_have_one_sibling_group():
    net = Net(os.path.join(os.path.dirname(__file__), "..", "models", "googlenet",
                           "deploy.prototxt"), phase="TEST")
    net.optimize_for_inference()
    groups = sibling_groups(net)
    assert len(groups) == 9
    assert all([n.split("/")[1] for n in g] == ["1x1", "3x3_reduce", "5x5_reduce"]
               for g in groups)


def concat_steps(net):
    return [f.__self__.name for f, _, _ in net.inference_plan._steps
            if getattr(f.__self__, "type", None) == "Concat"]


@pytest.mark.parametrize("output", ["f", "cat"])
def test_concat_of_whole_blocks_is_written_in_place(output):
    """At batch 1 the concat's bottoms are views of its top (the Concat copies nothing),
    also when the top is the net's output; at batch 2 (two blocks) the Concat runs."""
    text = BRANCHES if output == "f" else BRANCHES.split('layer { name: "d"')[0]
    plain, fast = Net(text, phase="TEST"), Net(text, phase="TEST")
    fast.copy_trained_layers([(n, [b.data for b in bl]) for n, bl in plain.params.items()])
    fast.optimize_for_inference(reuse_memory=True)
    for batch in (1, 2, 1):
        x = np.random.default_rng(batch).uniform(-1, 1, (batch, 2, 5, 5)).astype(np.float32)
        for net in (plain, fast):
            net.blobs["data"].reshape(x.shape)
        want = plain.forward(data=x)[output].copy()
        np.testing.assert_allclose(fast.forward(data=x)[output], want, rtol=1e-5, atol=1e-6)
        assert concat_steps(fast) == ([] if batch == 1 else ["cat"])
        if batch == 1:
            cat = fast.blobs["cat"].data
            for name, c0 in zip("abc", (0, 3, 6), strict=True):
                assert np.shares_memory(fast.blobs[name].data, cat[:, c0:c0 + 3])
                assert not np.shares_memory(fast.blobs[name].data, np.delete(cat, range(
                    c0, c0 + 3), axis=1))
    fast.inference_plan.release()
    assert not any(np.shares_memory(fast.blobs[n].data, fast.blobs["cat"].data) for n in "abc")


def test_concat_bottoms_read_later_keep_their_own_buffers():
    """A bottom that a layer after the Concat still reads is not placed inside the top."""
    text = BRANCHES.replace('bottom: "e" top: "f"', 'bottom: "a" top: "f"')
    fast = Net(text, phase="TEST").optimize_for_inference(reuse_memory=True)
    fast.forward(data=np.ones((1, 2, 5, 5), np.float32))
    assert concat_steps(fast) == ["cat"]


def test_plan_transforms_winograd_filters_again_after_surgery(monkeypatch):
    """A convolution the plan runs skips the per-forward weight comparison; reading the
    weights through ``net.params`` (or loading new ones) makes it transform them again."""
    from netdef.kernels import winograd, winograd_general
    from netdef.layers import conv as conv_module
    monkeypatch.setenv(conv_module.ALGO_ENV, "winograd")
    plain, fast = make_net(), make_net(fuse=True)
    calls = []
    for module in (winograd, winograd_general):
        real = module.transform_filters
        monkeypatch.setattr(module, "transform_filters",
                            lambda *a, real=real: (calls.append(1), real(*a)))
    x = data()
    for _ in range(3):
        fast.forward(data=x)
    assert len(calls) == 3          # conv1, conv3, conv4: once each
    for net in (plain, fast):
        net.params["conv4"][0].data[...] *= -1.0
        net.params["conv1"][0].data[...] *= 0.5
    fast.forward(data=x)
    assert len(calls) == 6
    plain.forward(data=x)
    assert_blobs_equal(fast, plain)
    doubled = [("conv3", [b.data * 2 for b in plain.params["conv3"]])]
    for net in (plain, fast):
        net.copy_trained_layers(doubled)
    before = len(calls)
    fast.forward(data=x)
    assert len(calls) == before + 3
    plain.forward(data=x)
    assert_blobs_equal(fast, plain)


def test_partial_forwards_still_notice_weights_edited_in_place(monkeypatch):
    """Outside the plan's own forwards a convolution compares its weights as before: an
    edit through a kept array reference (no ``net.params`` read) reaches a partial
    forward."""
    from netdef.layers import conv as conv_module
    monkeypatch.setenv(conv_module.ALGO_ENV, "winograd")
    plain, fast = make_net(), make_net(fuse=True)
    x = data()
    fast.forward(data=x)
    w_plain, w_fast = (net.params["conv4"][0].data for net in (plain, fast))
    for net, w in ((plain, w_plain), (fast, w_fast)):
        net.forward(data=x)
        w[...] *= -1.0
        net.forward(start="conv4")
    assert_blobs_equal(fast, plain, ["c4", "prob"])
