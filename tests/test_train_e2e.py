"""End to end, through the command line: idx files -> LMDB -> LeNet trained -> snapshot,
resume, score -- the main job on a tiny synthetic dataset the model can learn quickly."""

import gzip
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LENET = os.path.join(ROOT, "examples", "mnist", "lenet_train_test.prototxt")


def write_idx(folder, prefix, n, seed):
    """Two classes of 28x28 images: a bright bar in the top or the bottom half."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, y in enumerate(labels):
        rows = slice(4, 10) if y == 0 else slice(18, 24)
        images[i, rows, 4:24] = 220
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, n) + labels.tobytes())


def netdef(*args, cwd):
    return subprocess.run([sys.executable, "-m", "netdef.tools.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_lenet_from_idx_files_to_trained_caffemodel(tmp_path):
    write_idx(tmp_path, "train", 320, 1)
    write_idx(tmp_path, "t10k", 100, 2)
    for prefix, db in (("train", "train_lmdb"), ("t10k", "test_lmdb")):
        out = netdef("convert_mnist_data", f"{prefix}-images-idx3-ubyte.gz",
                     f"{prefix}-labels-idx1-ubyte.gz", db, "--backend=lmdb", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    net = open(LENET).read()
    net = net.replace("examples/mnist/mnist_train_lmdb", "train_lmdb")
    net = net.replace("examples/mnist/mnist_test_lmdb", "test_lmdb")
    net = net.replace("batch_size: 64", "batch_size: 16").replace("batch_size: 100",
                                                                   "batch_size: 50")
    (tmp_path / "net.prototxt").write_text(net)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\ntest_iter: 2\ntest_interval: 30\nbase_lr: 0.01\nmomentum: 0.9\n'
        'weight_decay: 0.0005\nlr_policy: "inv"\ngamma: 0.0001\npower: 0.75\ndisplay: 10\n'
        'max_iter: 60\nsnapshot: 30\nsnapshot_prefix: "lenet"\nrandom_seed: 1\n'
        'solver_mode: CPU\n')
    out = netdef("train", "-solver", "solver.prototxt", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    log = out.stderr
    assert re.search(r"^I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \w+\.py:\d+\] Iteration 10 ", log,
                     re.M), log[-2000:]
    assert "Snapshotting to binary proto file lenet_iter_30.caffemodel" in log
    accuracies = [float(a) for a in re.findall(r"Test net output #0: accuracy = ([\d.]+)", log)]
    assert accuracies[-1] >= 0.95, accuracies
    for name in ("lenet_iter_30.caffemodel", "lenet_iter_30.solverstate",
                 "lenet_iter_60.caffemodel", "lenet_iter_60.solverstate"):
        assert (tmp_path / name).exists(), name

    resumed = netdef("train", "--solver=solver.prototxt", "--snapshot=lenet_iter_30.solverstate",
                     cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Iteration 30, Testing net" in resumed.stderr
    assert "Iteration 0," not in resumed.stderr

    scored = netdef("test", "--model=net.prototxt", "--weights=lenet_iter_60.caffemodel",
                    "--iterations=2", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    final = re.findall(r"\] accuracy = ([\d.]+)", scored.stderr)
    assert final and float(final[-1]) >= 0.95
