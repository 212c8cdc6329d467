"""`netdef extract_features`: blobs of a trained net saved per item, as Caffe's tool does."""

import subprocess
import sys

import h5py
import numpy as np

from netdef.data.lmdb_io import LMDBReader
from netdef.net import Net
from netdef.proto import caffe_pb2

NET = """
layer { name: "data" type: "DummyData" top: "data"
        dummy_data_param { shape { dim: 3 dim: 2 dim: 2 dim: 2 }
                           data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 4 } }
"""


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "netdef.tools.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_lmdb_and_hdf5_outputs(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    net = Net(str(tmp_path / "net.prototxt"), phase="TEST")
    net.params["ip"][0].data[...] = np.arange(32).reshape(4, 8) / 10.0
    net.save(str(tmp_path / "w.caffemodel"))
    expected = np.arange(32).reshape(4, 8).sum(axis=1) / 10.0
    out = cli("extract_features", "w.caffemodel", "net.prototxt", "ip,data", "ip_db,data_db",
              "2", "lmdb", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    with LMDBReader(str(tmp_path / "ip_db")) as r:
        records = list(r)
    assert [k for k, _ in records] == [b"%010d" % i for i in range(6)]
    d = caffe_pb2.Datum.FromString(records[0][1])
    assert (d.channels, d.height, d.width) == (4, 1, 1)
    np.testing.assert_allclose(d.float_data, expected, rtol=1e-6)
    out = cli("extract_features", "w.caffemodel", "net.prototxt", "ip", "ip.h5", "1", "hdf5",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    with h5py.File(tmp_path / "ip.h5") as h:
        np.testing.assert_allclose(h["ip"][()], np.tile(expected, (3, 1)), rtol=1e-6)
    bad = cli("extract_features", "w.caffemodel", "net.prototxt", "nope", "x_db", "1",
              cwd=tmp_path)
    assert bad.returncode == 2 and "no blob named 'nope'" in bad.stderr
