"""A folder of real JPEG/PNG images: converted to LMDB, it trains through Data exactly as the
list file trains through ImageData (identical batches, identical weights)."""

import os
import subprocess
import sys

import numpy as np
from google.protobuf import text_format

from netdef.proto import caffe_pb2
from netdef.solvers import Solver
from tests.shared import CONFORMANCE, need

TRANSFORM = "transform_param { scale: 0.00390625 mean_value: 100 mean_value: 110 mean_value: 120 }"
BODY = """
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def solver_for(data_layer, tmp_path):
    param = caffe_pb2.SolverParameter()
    text_format.Parse(
        'base_lr: 0.1 momentum: 0.9 lr_policy: "fixed" max_iter: 6 random_seed: 3 '
        'snapshot_after_train: false', param)
    text_format.Parse(data_layer + BODY, param.net_param)
    param.snapshot_prefix = str(tmp_path / "snap")
    return Solver(param)


def test_data_and_image_data_train_identically(tmp_path):
    images = need(os.path.join(CONFORMANCE, "io", "images"))
    listing = os.path.join(CONFORMANCE, "io", "list.txt")
    db = tmp_path / "images_lmdb"
    out = subprocess.run([sys.executable, "-m", "netdef.tools.main", "convert_imageset",
                          "--resize_height=8", "--resize_width=10", images + "/", listing,
                          str(db)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lmdb_net = (f'layer {{ name: "d" type: "Data" top: "data" top: "label" {TRANSFORM} '
                f'data_param {{ source: "{db}" batch_size: 4 backend: LMDB }} }}')
    list_net = (f'layer {{ name: "d" type: "ImageData" top: "data" top: "label" {TRANSFORM} '
                f'image_data_param {{ source: "{listing}" root_folder: "{images}/" '
                f'new_height: 8 new_width: 10 batch_size: 4 }} }}')
    a, b = solver_for(lmdb_net, tmp_path), solver_for(list_net, tmp_path)
    for _ in range(3):  # wraps around the 6 images
        for s in (a, b):
            s.net.forward_from_to()
        np.testing.assert_array_equal(a.net.blobs["data"].data, b.net.blobs["data"].data)
        np.testing.assert_array_equal(a.net.blobs["label"].data, b.net.blobs["label"].data)
    a2, b2 = solver_for(lmdb_net, tmp_path), solver_for(list_net, tmp_path)
    a2.step(6)
    b2.step(6)
    np.testing.assert_array_equal(a2.net.params["ip"][0].data, b2.net.params["ip"][0].data)
    assert np.abs(a2.net.params["ip"][0].data).sum() > 0
