"""Every solver prototxt of BVLC Caffe (MANIFEST.tsv, purpose solver) parses and trains a
few iterations with its own settings -- solver type, lr policy, momentum, test nets and
states, snapshot format -- on tiny generated data of the shapes its nets expect.

Each net's data layers keep their type and transform (crop, mirror, scale, mean file or
values) but read tiny generated files: LMDBs of the right channel count and size, image
lists, window files.  Batch sizes shrink to 2 (1 for ImageNet-sized nets, which also run
two iterations instead of three) and test_iter to 1; nothing else changes.  A data source
this table does not know fails the test (nothing is skipped silently).
"""

import csv
import os

import numpy as np
import pytest
from PIL import Image

from netdef.data.mean import write_mean_file
from netdef.prototxt import read_net_param, read_solver_param
from netdef.solvers import Solver
from tests.shared import DATA
from tests.solvers.tiny import write_lmdb

PROTOTXT = os.path.join(DATA, "prototxt")
MANIFEST = os.path.join(PROTOTXT, "MANIFEST.tsv")
IMAGENET_MEAN = os.path.join(DATA, "ilsvrc12", "imagenet_mean.binaryproto")


def solver_files():
    if not os.path.exists(MANIFEST):
        return []
    with open(MANIFEST, newline="") as f:
        return [row["file"] for row in csv.DictReader(f, delimiter="\t")
                if row["purpose"] == "solver"]


SOLVERS = solver_files()
# Nets of ImageNet size: seconds per iteration on two cores.
BIG = ("bvlc_alexnet", "bvlc_googlenet", "bvlc_reference_caffenet", "finetune_flickr_style",
       "finetune_pascal_detection")
# Nets the Net builder refuses although Caffe accepts them (reason given in the report).

# Database sources -> (channels, height, width) of their records.
LMDB_SHAPES = [("mnist_siamese", (2, 28, 28)), ("mnist", (1, 28, 28)),
               ("cifar", (3, 32, 32)), ("ilsvrc12", (3, 256, 256)), ("ilvsrc12", (3, 256, 256))]


class TinyData:
    """Generated stand-ins for the datasets the real nets name, made once per test."""

    def __init__(self, folder, batch):
        self.folder = folder
        self.batch = batch
        self.made = {}

    def _once(self, key, make):
        if key not in self.made:
            self.made[key] = make()
        return self.made[key]

    def lmdb(self, source):
        for token, shape in LMDB_SHAPES:
            if token in source:
                path = self.folder / f"db_{shape[0]}x{shape[1]}x{shape[2]}"
                return self._once(path, lambda p=path, s=shape: write_lmdb(
                    p, n=4, shape=s, classes=2)), shape
        raise AssertionError(f"no tiny stand-in for the database {source!r}: add its record "
                             "shape to LMDB_SHAPES")

    def mean_file(self, shape):
        if shape == (3, 256, 256) and os.path.exists(IMAGENET_MEAN):
            return IMAGENET_MEAN

        def make():
            path = str(self.folder / f"mean_{shape[0]}x{shape[1]}x{shape[2]}.binaryproto")
            write_mean_file(path, np.full(shape, 100, np.float32))
            return path

        return self._once(("mean",) + shape, make)

    def images(self):
        def make():
            folder = self.folder / "images"
            folder.mkdir()
            rng = np.random.default_rng(0)
            for i in range(3):
                img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(img).save(folder / f"{i}.png")
            return str(folder) + "/"
        return self._once("images", make)

    def image_list(self):
        def make():
            path = self.folder / "images.txt"
            path.write_text("".join(f"{i}.png {i % 2}\n" for i in range(3)))
            return str(path)
        root = self.images()
        return self._once("list", make), root

    def window_file(self):
        def make():
            root = self.images()
            path = self.folder / "windows.txt"
            lines = []
            for i in range(3):
                lines += [f"# {i}", f"{root}{i}.png", "3", "40", "48", "3",
                          "1 0.8 2 3 30 35", "2 0.6 10 5 44 38", "0 0.1 0 0 20 20"]
            path.write_text("\n".join(lines) + "\n")
            return str(path)
        return self._once("windows", make)


def shrink_data_layers(net, data):
    """Point every data layer of ``net`` (a NetParameter) at tiny data, batch size 2."""
    for lp in net.layer:
        tp = lp.transform_param
        if lp.type == "Data":
            source, shape = data.lmdb(lp.data_param.source)
            lp.data_param.source = source
            lp.data_param.backend = lp.data_param.LMDB
            lp.data_param.batch_size = data.batch
            if tp.mean_file:
                tp.mean_file = data.mean_file(shape)
        elif lp.type == "ImageData":
            lp.image_data_param.source, lp.image_data_param.root_folder = data.image_list()
            lp.image_data_param.batch_size = data.batch
            if tp.mean_file:
                tp.mean_file = data.mean_file((3, 256, 256))
        elif lp.type == "WindowData":
            lp.window_data_param.source = data.window_file()
            lp.window_data_param.root_folder = ""
            lp.window_data_param.batch_size = data.batch
            if tp.mean_file:
                tp.mean_file = data.mean_file((3, 256, 256))
        elif lp.type in ("HDF5Data", "MemoryData", "Python"):
            raise AssertionError(f"no tiny stand-in for {lp.type} layer '{lp.name}'")
    return net


def lenet_auto(source, batch_size):
    """The nets Caffe's LeNet notebook writes (mnist/lenet_auto_*.prototxt) with NetSpec."""
    from netdef.net_spec import NetSpec
    from netdef.net_spec import layers as L
    from netdef.net_spec import params as P

    n = NetSpec()
    n.data, n.label = L.Data(batch_size=batch_size, backend=P.Data.LMDB, source=source,
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50,
                            weight_filler=dict(type="xavier"))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    return n.to_proto()


def read_net(name, solver_path):
    """A net file named by a solver: Caffe resolves it against Caffe's root (the folder
    above examples/ and models/); old solvers name it beside themselves."""
    solver_dir = os.path.dirname(solver_path)
    root = solver_path.split(os.sep + "examples" + os.sep)[0].split(os.sep + "models" + os.sep)[0]
    for base in (root, solver_dir):
        path = os.path.join(base, name)
        if os.path.exists(path):
            return read_net_param(path)
    if name.startswith("mnist/lenet_auto_"):  # written by the notebook, not in the repo
        phase = "train" if "train" in name else "test"
        return lenet_auto(f"examples/mnist/mnist_{phase}_lmdb", 64 if phase == "train" else 100)
    raise AssertionError(f"{solver_path}: net {name!r} not found")


def prepare(solver_path, tmp_path, batch=2):
    """The solver's SolverParameter with every net inline and pointed at tiny data."""
    param = read_solver_param(solver_path)
    data = TinyData(tmp_path, batch)
    if param.HasField("net"):
        param.net_param.CopyFrom(read_net(param.net, solver_path))
        param.ClearField("net")
    if param.HasField("train_net"):
        param.train_net_param.CopyFrom(read_net(param.train_net, solver_path))
        param.ClearField("train_net")
    for name in param.test_net:  # after any test_net_param, as Caffe orders them
        param.test_net_param.add().CopyFrom(read_net(name, solver_path))
    param.ClearField("test_net")
    for net in [param.net_param, param.train_net_param] + list(param.test_net_param):
        shrink_data_layers(net, data)
    for i in range(len(param.test_iter)):
        param.test_iter[i] = 1
    param.snapshot_prefix = str(tmp_path / "snap")
    return param


def short_id(path):
    parts = path.replace(".prototxt", "").split("/")
    return "/".join(parts[-2:]) if "V0" not in parts[0] else "V0/" + parts[-1]


def marks(name):
    return [pytest.mark.slow] if any(b in name for b in BIG) else []


@pytest.mark.skipif(not SOLVERS, reason="shared prototxt collection not present")
@pytest.mark.parametrize("name", [pytest.param(s, marks=marks(s)) for s in SOLVERS],
                         ids=[short_id(s) for s in SOLVERS])
def test_real_solver_trains_a_few_iterations(name, tmp_path):
    solver_path = os.path.join(PROTOTXT, name)
    big = any(b in name for b in BIG)
    original = read_solver_param(solver_path)
    param = prepare(solver_path, tmp_path, batch=1 if big else 2)
    solver = Solver(param, solver_path=solver_path)
    assert solver.type == (original.type or "SGD")
    assert len(solver.test_nets) == len(original.test_iter)
    start = [b.data.copy() for b in solver.net.learnable_params]
    steps = 2 if big else 3
    solver.step(steps)  # tests at iteration 0 unless test_initialization is false
    assert solver.iter == steps
    assert np.isfinite(solver.smoothed_loss)
    assert np.isfinite(solver.net.flat_data).all()
    assert solver.lr.rate(steps - 1) > 0
    moved = [not np.array_equal(a, b.data) for a, b in zip(start, solver.net.learnable_params)]
    assert any(moved)
    if solver.test_nets and not solver.last_test_scores:
        solver.test_all()
    if solver.test_nets:
        scores = solver.last_test_scores
        assert scores and all(np.isfinite(v).all() for v in scores.values())
    if solver.net.flat_data.size < 5_000_000:  # spare the disk ImageNet-sized snapshots
        model, state = solver.snapshot()
        again = Solver(param, solver_path=solver_path)
        again.restore(state)
        np.testing.assert_array_equal(again.net.flat_data, solver.net.flat_data)
    for net in [solver.net] + solver.test_nets:
        for layer in net.layers:
            if hasattr(layer, "close"):
                layer.close()
