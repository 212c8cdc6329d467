"""random_seed makes runs bit-identical, and a run stopped at iteration k and resumed from
its snapshot ends exactly where an uninterrupted run ends -- data cursors (read ahead by
prefetch threads), shuffles, crops, mirrors and Dropout masks included."""

import json
import os

import numpy as np
import pytest

from netdef.proto import caffe_pb2
from netdef.solvers import Solver
from netdef.solvers.resume import sidecar_path
from tests.solvers.tiny import solver_param, write_hdf5_list, write_image_list, write_lmdb


def data_layers(phase, lmdb, image_list, root, h5list):
    """Data (crop, mirror, rand_skip), ImageData (shuffle, crop, mirror), HDF5Data (shuffle)."""
    train = phase == "TRAIN"
    return f"""
layer {{ name: "db" type: "Data" top: "d1" top: "label" include {{ phase: {phase} }}
  data_param {{ source: "{lmdb}" backend: LMDB batch_size: 3 {"rand_skip: 5" if train else ""} }}
  transform_param {{ crop_size: 4 mirror: {str(train).lower()} scale: 0.01 }} }}
layer {{ name: "img" type: "ImageData" top: "d2" top: "label2" include {{ phase: {phase} }}
  image_data_param {{ source: "{image_list}" root_folder: "{root}" batch_size: 3
    shuffle: {str(train).lower()} new_height: 6 new_width: 6 }}
  transform_param {{ crop_size: 4 mirror: {str(train).lower()} scale: 0.01 }} }}
layer {{ name: "h5" type: "HDF5Data" top: "aux" include {{ phase: {phase} }}
  hdf5_data_param {{ source: "{h5list}" batch_size: 3 shuffle: {str(train).lower()} }} }}
"""


def net_text(tmp_path):
    lmdb = write_lmdb(tmp_path / "db")
    image_list, root = write_image_list(tmp_path / "images")
    h5list = write_hdf5_list(tmp_path / "h5")
    ip = ('inner_product_param {{ num_output: {n} weight_filler {{ type: "gaussian" std: 0.1 }} '
          'bias_filler {{ type: "constant" value: 0.1 }} }}')
    layers = data_layers("TRAIN", lmdb, image_list, root, h5list)
    layers += data_layers("TEST", lmdb, image_list, root, h5list)
    layers += f"""
layer {{ name: "quiet" type: "Silence" bottom: "label2" }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "d1" top: "ip1" {ip.format(n=5)} }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "d2" top: "ip2" {ip.format(n=5)} }}
layer {{ name: "ip3" type: "InnerProduct" bottom: "aux" top: "ip3" {ip.format(n=5)} }}
layer {{ name: "sum" type: "Eltwise" bottom: "ip1" bottom: "ip2" bottom: "ip3" top: "sum" }}
layer {{ name: "drop" type: "Dropout" bottom: "sum" top: "sum"
  dropout_param {{ dropout_ratio: 0.4 }} }}
layer {{ name: "ip4" type: "InnerProduct" bottom: "sum" top: "ip4" {ip.format(n=3)} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip4" bottom: "label" top: "loss" }}
layer {{ name: "acc" type: "Accuracy" bottom: "ip4" bottom: "label" top: "acc"
  include {{ phase: TEST }} }}
"""
    return 'name: "repro"\n' + layers


SOLVERS = {
    "sgd_binaryproto": 'type: "SGD" momentum: 0.9 weight_decay: 0.001 lr_policy: "step" '
                       "gamma: 0.5 stepsize: 3",
    "adam_hdf5_iter_size": 'type: "Adam" iter_size: 2 lr_policy: "multistep" stepvalue: 2 '
                           "stepvalue: 6 gamma: 0.5 snapshot_format: HDF5",
}


def make_solver(net, tmp_path, settings, max_iter, prefix="snap"):
    param = solver_param(f"{settings} base_lr: 0.05 random_seed: 17 test_iter: 2 "
                         "test_interval: 4 display: 0", net=net)
    param.max_iter = max_iter
    param.snapshot_prefix = str(tmp_path / prefix)
    return Solver(param)


def weights(solver):
    return solver.net.flat_data.copy()


def close(solver):
    for net in [solver.net] + solver.test_nets:
        for layer in net.layers:
            if hasattr(layer, "close"):
                layer.close()


@pytest.mark.parametrize("name", list(SOLVERS))
def test_same_seed_same_weights_and_resume_is_exact(name, tmp_path):
    net = net_text(tmp_path)
    settings = SOLVERS[name]
    total, stop_at = 9, 3

    first = make_solver(net, tmp_path, settings, total, prefix="a")
    first.solve()
    reference, scores = weights(first), first.last_test_scores
    close(first)

    again = make_solver(net, tmp_path, settings, total, prefix="b")
    again.solve()
    np.testing.assert_array_equal(weights(again), reference)
    close(again)

    stopped = make_solver(net, tmp_path, settings, stop_at, prefix="c")
    stopped.solve()  # snapshot_after_train writes c_iter_3.*
    close(stopped)
    hdf5 = "HDF5" in settings
    state = str(tmp_path / f"c_iter_{stop_at}.solverstate{'.h5' if hdf5 else ''}")
    side = sidecar_path(state)
    assert side == str(tmp_path / f"c_iter_{stop_at}.solverstate.netdef")
    doc = json.loads(open(side).read())
    k = stop_at * (2 if "iter_size: 2" in settings else 1)
    assert doc["iter"] == stop_at
    assert doc["nets"]["train"]["db"]["state"]["batch"] == k
    assert doc["nets"]["train"]["h5"]["state"]["batch"] == k
    assert doc["nets"]["test/0"]["img"]["state"]["batch"] == 2  # one test at iteration 0
    assert "rng" in doc["nets"]["train"]["drop"]["state"]

    resumed = make_solver(net, tmp_path, settings, total, prefix="d")
    resumed.solve(state)
    assert resumed.iter == total
    np.testing.assert_array_equal(weights(resumed), reference)
    assert resumed.last_test_scores == scores
    close(resumed)

    # Without the sidecar (a Caffe-made snapshot) the run resumes from the first batch.
    os.remove(side)
    plain = make_solver(net, tmp_path, settings, total, prefix="e")
    plain.solve(state)
    assert plain.iter == total
    assert not np.array_equal(weights(plain), reference)
    close(plain)


def test_data_layers_seek_to_the_batch_a_sequential_read_reaches(tmp_path):
    """Batch k after set_resume_state({"batch": k}) equals the k-th batch read in order."""
    net = net_text(tmp_path)
    param = solver_param("base_lr: 0.1 random_seed: 3", net=net)
    param.snapshot_after_train = False
    seq = Solver(param)
    layers = ["db", "img", "h5"]
    batches = []
    for _ in range(8):
        seq.net.forward_from_to(0, 2)
        batches.append([seq.net.blobs[b].data.copy() for b in ("d1", "d2", "aux")])
    states = {n: seq.net.layer_dict[n].get_resume_state() for n in layers}
    assert all(s["batch"] == 8 for s in states.values())
    close(seq)
    for k in (5, 1, 7, 0):
        other = Solver(param)
        for n in layers:
            other.net.layer_dict[n].set_resume_state({"batch": k})
        other.net.forward_from_to(0, 2)
        for blob, want in zip(("d1", "d2", "aux"), batches[k]):
            np.testing.assert_array_equal(other.net.blobs[blob].data, want, err_msg=f"{blob} {k}")
        close(other)


def test_memory_data_cursor_is_resumed():
    from google.protobuf import text_format

    from netdef.layer import create_layer

    lp = text_format.Parse('name: "m" type: "MemoryData" top: "data" top: "label" '
                           "memory_data_param { batch_size: 2 channels: 1 height: 1 width: 1 }",
                           caffe_pb2.LayerParameter())
    from netdef.blob import Blob

    layer = create_layer(lp)
    top = [Blob(), Blob()]
    layer.layer_setup([], top)
    layer.set_resume_state({"pos": 4})  # before the arrays arrive
    data = np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1)
    layer.reset(data, np.zeros(6, np.float32))
    layer.forward([], top)
    assert top[0].data.ravel().tolist() == [4, 5]
    assert layer.get_resume_state() == {"pos": 0}
