"""Loading and saving trained weights: real caffemodels, Caffe's HDF5 layout, bad files."""

import os

import h5py
import numpy as np
import pytest

from netdef import weights
from netdef.errors import WeightsError
from netdef.proto import caffe_pb2
from tests.shared import CONFORMANCE, DATA, need

MODELS = os.path.join(DATA, "models")
IO = os.path.join(CONFORMANCE, "io")


def shapes(loaded):
    return [(name, [None if a is None else a.shape for a in arrays]) for name, arrays in loaded]


# ------------------------------------------------------------------ blobs

def test_blob_with_shape():
    blob = caffe_pb2.BlobProto(data=[1, 2, 3, 4, 5, 6])
    blob.shape.dim.extend([2, 3])
    array = weights.blob_to_array(blob)
    assert array.dtype == np.float32 and array.shape == (2, 3)
    assert array.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_blob_legacy_dims_stay_4d():
    blob = caffe_pb2.BlobProto(num=1, channels=1, height=2, width=3, data=range(6))
    assert weights.blob_to_array(blob).shape == (1, 1, 2, 3)
    # A legacy field set to its default still counts as legacy, as in Caffe.
    blob = caffe_pb2.BlobProto(num=0, data=[])
    assert weights.blob_to_array(blob).shape == (0, 0, 0, 0)


def test_blob_double_data():
    blob = caffe_pb2.BlobProto(double_data=[0.5, 1.5])
    blob.shape.dim.append(2)
    array = weights.blob_to_array(blob)
    assert array.dtype == np.float32 and array.tolist() == [0.5, 1.5]


def test_blob_count_mismatch_is_an_error():
    blob = caffe_pb2.BlobProto(data=[1, 2, 3])
    blob.shape.dim.extend([2, 2])
    with pytest.raises(WeightsError, match=r"holds 3 values but its shape \(2, 2\) needs 4"):
        weights.blob_to_array(blob, "0 of layer 'x'")


def test_array_to_blob_round_trip():
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    diff = -data
    blob = weights.array_to_blob(data, diff=diff)
    assert list(blob.shape.dim) == [2, 3, 4]
    assert not blob.HasField("num")
    parsed = caffe_pb2.BlobProto.FromString(blob.SerializeToString())
    np.testing.assert_array_equal(weights.blob_to_array(parsed), data)
    np.testing.assert_array_equal(np.array(parsed.diff, np.float32).reshape(2, 3, 4), diff)


@pytest.mark.parametrize("shape", [(), (0,), (3,), (70000,), (2, 3, 4)])
def test_array_to_blob_bytes_equal_value_by_value_encoding(shape):
    data = np.random.default_rng(0).standard_normal(shape)  # float64: cast to float32
    reference = caffe_pb2.BlobProto()
    reference.shape.dim.extend(shape)
    reference.data.extend(data.astype(np.float32).ravel().tolist())
    reference.diff.extend((-data).astype(np.float32).ravel().tolist())
    blob = weights.array_to_blob(data, diff=-data)
    assert blob.SerializeToString() == reference.SerializeToString()


def test_array_to_blob_fills_a_given_proto():
    target = caffe_pb2.BlobProto(num=3, data=[9])
    same = weights.array_to_blob(np.ones(2), target)
    assert same is target and list(target.data) == [1, 1] and not target.HasField("num")


def test_shapes_match_follows_caffes_legacy_rule():
    assert weights.shapes_match((64, 1024), (64, 1024))
    assert weights.shapes_match((1, 1, 64, 1024), (64, 1024))
    assert weights.shapes_match((1, 1, 1, 32), (32,))
    assert not weights.shapes_match((1, 1, 32, 1), (32,))
    assert not weights.shapes_match((2, 32), (32,))


# ------------------------------------------------------------------ real models

def test_lenet_v2_binary():
    loaded = weights.load_weights(need(os.path.join(
        MODELS, "lenet_ethereon/lenet_iter_10000.caffemodel")))
    assert shapes(loaded) == [("conv1", [(20, 1, 5, 5), (20,)]),
                              ("conv2", [(50, 20, 5, 5), (50,)]),
                              ("ip1", [(500, 800), (500,)]), ("ip2", [(10, 500), (10,)])]
    assert all(a.dtype == np.float32 for _, arrays in loaded for a in arrays)
    assert np.isfinite(loaded[0][1][0]).all() and loaded[0][1][0].std() > 0


def test_cifar10_v1_binary_with_legacy_dims():
    loaded = weights.load_weights(need(os.path.join(
        MODELS, "cifar10_quick_everpeace/cifar10_quick_iter_5000.caffemodel")))
    assert shapes(loaded) == [
        ("conv1", [(32, 3, 5, 5), (1, 1, 1, 32)]), ("conv2", [(32, 32, 5, 5), (1, 1, 1, 32)]),
        ("conv3", [(64, 32, 5, 5), (1, 1, 1, 64)]), ("ip1", [(1, 1, 64, 1024), (1, 1, 1, 64)]),
        ("ip2", [(1, 1, 10, 64), (1, 1, 1, 10)])]
    assert sum(a.size for _, arrays in loaded for a in arrays) == 145578


def test_cifar10_hdf5():
    loaded = weights.load_weights(need(os.path.join(
        MODELS, "cifar10_quick_h5_bxuan694/cifar10_quick_iter_5000.caffemodel.h5")))
    assert shapes(loaded) == [
        ("conv1", [(32, 3, 5, 5), (32,)]), ("conv2", [(32, 32, 5, 5), (32,)]),
        ("conv3", [(64, 32, 5, 5), (64,)]), ("ip1", [(64, 1024), (64,)]),
        ("ip2", [(10, 64), (10,)])]


def test_mtcnn_embeds_training_layers_but_only_params_come_back():
    loaded = weights.load_weights(need(os.path.join(MODELS, "mtcnn_det1/det1.caffemodel")))
    assert shapes(loaded) == [
        ("conv1", [(10, 3, 3, 3), (10,)]), ("PReLU1", [(10,)]),
        ("conv2", [(16, 10, 3, 3), (16,)]), ("PReLU2", [(16,)]),
        ("conv3", [(32, 16, 3, 3), (32,)]), ("PReLU3", [(32,)]),
        ("conv4-1", [(2, 32, 1, 1), (2,)]), ("conv4-2", [(4, 32, 1, 1), (4,)])]
    assert sum(a.size for _, arrays in loaded for a in arrays) == 6632


@pytest.mark.parametrize("name", ["snap_iter_3.caffemodel", "snaph5_iter_3.caffemodel.h5"])
def test_reference_caffe_snapshots(name):
    expected = np.load(need(os.path.join(IO, "tiny_params.npz")))
    loaded = dict(weights.load_weights(need(os.path.join(IO, name))))
    assert sorted(loaded) == ["bn1", "conv1", "ip1"]
    keys = set()
    for layer, arrays in loaded.items():
        for i, array in enumerate(arrays):
            np.testing.assert_array_equal(array, expected[f"{layer}/{i}"])
            keys.add(f"{layer}/{i}")
    assert keys == set(expected.files)


# ------------------------------------------------------------------ round trips

def test_caffemodel_round_trip(tmp_path):
    source = need(os.path.join(MODELS, "lenet_ethereon/lenet_iter_10000.caffemodel"))
    net = weights.load_net_weights_binary(source)
    out = tmp_path / "copy.caffemodel"
    weights.save_caffemodel(out, net)
    for (n1, a1), (n2, a2) in zip(weights.load_weights(source), weights.load_weights(out),
                                  strict=True):
        assert n1 == n2
        for x, y in zip(a1, a2, strict=True):
            np.testing.assert_array_equal(x, y)


def test_v1_caffemodel_upgrade_keeps_weights(tmp_path):
    source = need(os.path.join(MODELS,
                               "cifar10_quick_everpeace/cifar10_quick_iter_5000.caffemodel"))
    net = weights.load_net_weights_binary(source)
    out = tmp_path / "v2.caffemodel"
    weights.save_caffemodel(out, net)
    raw = caffe_pb2.NetParameter.FromString(out.read_bytes())
    assert not raw.layers and raw.layer
    assert shapes(weights.load_weights(out)) == shapes(weights.load_weights(source))


def test_hdf5_round_trip_with_caffes_layout(tmp_path):
    rng = np.random.default_rng(0)
    layers = [("data", []),
              ("conv1", [rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)]),
              ("inception_3a/1x1", [rng.standard_normal((4, 3, 1, 1))]),
              ("shared_weight", [None, rng.standard_normal(2)])]
    diffs = [(name, [np.zeros((1,)) if a is None else a * 2 for a in arrays])
             for name, arrays in layers]
    out = tmp_path / "w.caffemodel.h5"
    weights.save_weights_hdf5(out, layers, diffs=diffs)
    with h5py.File(out, "r") as h5:
        assert set(h5) == {"data", "diff"}
        assert "data" in h5["data"] and len(h5["data/data"]) == 0  # every layer gets a group
        assert h5["data/conv1/0"].dtype == np.float32 and h5["data/conv1/0"].shape == (3, 2, 3, 3)
        assert "0" not in h5["data/shared_weight"] and "0" in h5["diff/shared_weight"]
        np.testing.assert_allclose(h5["diff/conv1/1"][()], layers[1][1][1] * 2, rtol=1e-6)
    loaded = dict(weights.load_weights(out))
    assert sorted(loaded) == ["conv1", "inception_3a/1x1", "shared_weight"]
    np.testing.assert_allclose(loaded["conv1"][0], layers[1][1][0], rtol=1e-6)
    assert loaded["inception_3a/1x1"][0].shape == (4, 3, 1, 1)
    assert loaded["shared_weight"][0] is None and loaded["shared_weight"][1].shape == (2,)


def test_hdf5_duplicate_names_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="duplicate"):
        weights.save_weights_hdf5(tmp_path / "d.h5", [("a", []), ("a", [])])
    assert not (tmp_path / "d.h5").exists()


def test_failed_save_keeps_old_file(tmp_path):
    out = tmp_path / "w.caffemodel.h5"
    weights.save_weights_hdf5(out, [("a", [np.ones(2)])])
    before = out.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever h5py raises on bad data
        weights.save_weights_hdf5(out, [("a", [np.ones(2)]), ("b", ["not a number"])])
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.caffemodel.h5"]


# ------------------------------------------------------------------ bad files

def _fails(path, *needles):
    with pytest.raises(WeightsError) as info:
        weights.load_weights(path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message, message
    return message


def test_png_is_not_weights():
    _fails(need(os.path.join(IO, "images", "b.png")), "PNG image")


def test_jpeg_is_not_weights():
    _fails(need(os.path.join(DATA, "images", "cat.jpg")), "JPEG image")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.caffemodel"
    path.write_bytes(b"")
    _fails(path, "empty")


def test_missing_file(tmp_path):
    _fails(tmp_path / "nope.caffemodel", "no such weights file")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.97])
def test_truncated_caffemodel(tmp_path, fraction):
    data = open(need(os.path.join(MODELS, "lenet_ethereon/lenet_iter_10000.caffemodel")),
                "rb").read()
    path = tmp_path / "cut.caffemodel"
    path.write_bytes(data[:int(len(data) * fraction)])
    _fails(path, "truncated")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.caffemodel"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, np.uint8).tobytes())
    _fails(path, "not a caffemodel")


def test_prototxt_is_not_weights():
    _fails(need(os.path.join(IO, "tiny_net.prototxt")), "net definition (prototxt)")
    _fails(need(os.path.join(IO, "tiny_solver.prototxt")), "solver definition")


def test_solver_states_name_their_weights():
    _fails(need(os.path.join(IO, "snap_iter_3.solverstate")), "solver state",
           "snap_iter_3.caffemodel")
    _fails(need(os.path.join(IO, "snaph5_iter_3.solverstate.h5")), "HDF5 solver state",
           "snaph5_iter_3.caffemodel.h5")


def test_hdf5_without_caffes_layout():
    _fails(need(os.path.join(DATA, "test_data", "sample_data.h5")),
           "without Caffe's weights layout", "label")


def test_lmdb_directory():
    _fails(need(os.path.join(IO, "lmdb_mnist")), "LMDB")


def test_mean_binaryproto():
    _fails(need(os.path.join(IO, "mean_raw_resized.binaryproto")), "single blob", "1x3x8x10")


def test_pickle_is_never_loaded(tmp_path):
    import pickle

    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"conv1": [1, 2]}, protocol=4))
    _fails(path, "Python pickle")


def test_npz_is_not_weights():
    _fails(need(os.path.join(IO, "tiny_params.npz")), "zip archive")
