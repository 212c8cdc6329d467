"""Tiny nets, datasets and solvers for the solver tests (milliseconds per iteration)."""

import logging
import os
import subprocess
import sys

import h5py
import numpy as np
from google.protobuf import text_format
from PIL import Image

from netdef.data.datum import array_to_datum
from netdef.data.lmdb_io import LMDBWriter
from netdef.proto import caffe_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Input x (4, 3) and targets t (4, 2) -> InnerProduct 2 -> EuclideanLoss; ip's bias has
# lr_mult 2 and decay_mult 0, as Caffe's example nets set them.
EUCLID_NET = """
name: "euclid"
layer { name: "in" type: "Input" top: "x" top: "t"
  input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 }
    bias_filler { type: "constant" value: 0.25 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }
"""

# DummyData (gaussian) -> InnerProduct -> ReLU -> InnerProduct -> SoftmaxWithLoss: a net
# the command line can train without any files.
DUMMY_NET = """
name: "dummy"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 5 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 6 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""


def solver_param(text="", net=EUCLID_NET, **fields):
    """A SolverParameter with ``net`` inline; ``fields`` set scalar fields."""
    p = caffe_pb2.SolverParameter()
    text_format.Parse(text, p)
    if net is not None:
        text_format.Parse(net, p.net_param)
    if not p.HasField("lr_policy"):
        p.lr_policy = "fixed"
    for key, value in fields.items():
        setattr(p, key, value)
    return p


def prevent_snapshots(param):
    param.snapshot_after_train = False
    return param


class LogLines(logging.Handler):
    """Collects the messages the ``netdef`` logger emits (whatever its propagation)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def text(self):
        return "\n".join(self.lines)


def capture_log():
    handler = LogLines()
    logger = logging.getLogger("netdef")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    return handler, lambda: (logger.removeHandler(handler), logger.setLevel(old))


# -- tiny datasets ---------------------------------------------------------------------------
def write_lmdb(path, n=7, shape=(1, 6, 6), seed=0, classes=3):
    rng = np.random.default_rng(seed)
    with LMDBWriter(str(path)) as w:
        for i in range(n):
            img = rng.integers(0, 256, shape, dtype=np.uint8)
            w.put(f"{i:08d}_r{i}", array_to_datum(img, int(i % classes)).SerializeToString())
    return str(path)


def write_image_list(folder, n=5, size=(8, 8), seed=1, classes=3):
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    lines = []
    for i in range(n):
        img = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"im{i}.png")
        lines.append(f"im{i}.png {i % classes}")
    listing = folder / "list.txt"
    listing.write_text("\n".join(lines) + "\n")
    return str(listing), str(folder) + "/"


def write_hdf5_list(folder, rows=(4, 3), width=2, seed=2, names=("aux",)):
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    files = []
    for k, n in enumerate(rows):
        path = folder / f"part{k}.h5"
        with h5py.File(path, "w") as f:
            for name in names:
                f[name] = rng.normal(size=(n, width)).astype(np.float32)
        files.append(str(path))
    listing = folder / "h5list.txt"
    listing.write_text("\n".join(files) + "\n")
    return str(listing)


def netdef_cli(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "netdef.tools.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def popen_cli(*args, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "netdef.tools.main", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
