"""pycaffe's Net helpers: forward_all / forward_backward_all over whole arrays, load_hdf5,
set_input_arrays with a named MemoryData layer."""

import numpy as np
import pytest

import netdef
from tests.pycaffe.pylayers import net_text, random_input


def test_forward_all_splits_batches_and_drops_the_padding():
    net = netdef.Net(net_text(("Times", "3")), netdef.TEST)  # batch of 4
    x = random_input((10, 3))
    out = net.forward_all(data=x)
    assert set(out) == {"l0"}
    np.testing.assert_allclose(out["l0"], 3 * x, rtol=1e-6)
    # extra blobs come back too, also for all 10 items
    out = net.forward_all(blobs=["data"], data=x)
    np.testing.assert_array_equal(out["data"], x)


def test_forward_all_results_are_copies():
    net = netdef.Net(net_text(("Times", "2")), netdef.TEST)
    x = random_input((4, 3))
    first = net.forward_all(data=x)["l0"]
    net.forward_all(data=x + 1)
    np.testing.assert_allclose(first, 2 * x, rtol=1e-6)


def test_forward_all_without_inputs_runs_once():
    net = netdef.Net(net_text(("Times", "2")), netdef.TEST)
    net.blobs["data"].data[...] = 1
    assert net.forward_all()["l0"].shape == (4, 3)


def test_forward_backward_all_gives_outputs_and_input_diffs():
    net = netdef.Net(net_text(("Times", "2"), ("Times", "5")), netdef.TEST)
    x = random_input((6, 3))
    top_diff = random_input((6, 3), seed=1)
    outs, diffs = net.forward_backward_all(data=x, l1=top_diff)
    np.testing.assert_allclose(outs["l1"], 10 * x, rtol=1e-6)
    np.testing.assert_allclose(diffs["data"], 10 * top_diff, rtol=1e-6)
    assert outs["l1"].shape == diffs["data"].shape == (6, 3)


def test_load_hdf5_reads_what_save_hdf5_wrote(tmp_path):
    text = ('name: "ip" layer { name: "data" type: "Input" top: "data" '
            'input_param { shape { dim: 2 dim: 3 } } } '
            'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
            'inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }')
    net = netdef.Net(text, netdef.TEST)
    net.params["ip"][0].data[...] = random_input((2, 3))
    path = str(tmp_path / "w.h5")
    net.save_hdf5(path)
    other = netdef.Net(text, netdef.TEST)
    other.load_hdf5(path)
    np.testing.assert_array_equal(other.params["ip"][0].data, net.params["ip"][0].data)


MEMORY_NET = """
name: "mem"
layer { name: "a" type: "MemoryData" top: "a" top: "a_label"
        memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 } }
layer { name: "b" type: "MemoryData" top: "b" top: "b_label"
        memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 } }
layer { name: "double" type: "Python" bottom: "b" top: "double"
        python_param { module: "tests.pycaffe.pylayers" layer: "Times" } }
"""


def test_set_input_arrays_feeds_the_named_memory_layer():
    net = netdef.Net(MEMORY_NET, netdef.TEST)
    data_a = random_input((2, 1, 2, 2))
    data_b = random_input((2, 1, 2, 2), seed=3)
    labels = np.array([1, 0], np.float32)
    net.set_input_arrays(data_a, labels)  # the first layer
    net.set_input_arrays(data_b, labels[::-1].copy(), "b")
    net.forward()
    np.testing.assert_array_equal(net.blobs["a"].data, data_a)
    np.testing.assert_array_equal(net.blobs["b"].data, data_b)
    np.testing.assert_array_equal(net.blobs["b_label"].data.ravel(), [0, 1])


def test_set_input_arrays_errors_are_runtime_errors_as_in_pycaffe():
    net = netdef.Net(MEMORY_NET, netdef.TEST)
    with pytest.raises(RuntimeError, match="layer 'double'"):
        net.set_input_arrays(random_input((2, 1, 2, 2)), np.zeros(2, np.float32), "double")
    with pytest.raises(RuntimeError):  # 3 items for a batch of 2
        net.set_input_arrays(random_input((3, 1, 2, 2)), np.zeros(3, np.float32))
    with pytest.raises(netdef.NetdefError):
        net.set_input_arrays(random_input((2, 1, 2, 2)), np.zeros(2, np.float32), "nope")
