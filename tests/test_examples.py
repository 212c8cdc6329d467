"""The examples run end to end through the command line, with few iterations.

Each example folder is copied to a temporary directory laid out like the repository
(``examples/<name>/``) and run from there, as its README says, on small generated data.
"""

import gzip
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from tests.shared import ROOT

pytestmark = pytest.mark.slow

# One BLAS thread: these runs are small, and on a busy two-core machine BLAS threads
# competing with other processes slow small GEMMs down many times over.
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def workspace(tmp_path, name):
    shutil.copytree(os.path.join(ROOT, "examples", name), tmp_path / "examples" / name)
    return tmp_path / "examples" / name


def run(cmd, cwd, timeout=300, env=ENV):
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         env=env)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def netdef(*args, cwd, env=ENV):
    return run([sys.executable, "-m", "netdef.tools.main", *args], cwd=cwd, env=env)


def edit(path, *pairs):
    text = path.read_text()
    for old, new in pairs:
        assert old in text, (path, old)
        text = text.replace(old, new)
    path.write_text(text)


def accuracies(log, output="accuracy"):
    return [float(v) for v in re.findall(rf"Test net output #\d+: {output} = ([\d.e+-]+)",
                                         log)]


def test_logreg_hdf5_v1(tmp_path):
    here = workspace(tmp_path, "logreg_hdf5")
    run([sys.executable, "examples/logreg_hdf5/make_data.py", "--train", "2000", "--test",
         "500"], cwd=tmp_path)
    edit(here / "solver.prototxt", ("test_iter: 250", "test_iter: 50"),
         ("test_interval: 1000", "test_interval: 500"))
    log = netdef("train", "--solver", "examples/logreg_hdf5/solver.prototxt",
                 "--iterations", "1000", cwd=tmp_path).stderr
    acc = accuracies(log)
    assert len(acc) == 3 and acc[0] < 0.7 and acc[-1] >= 0.8, acc
    assert (here / "logreg_iter_1000.caffemodel").exists()


def write_idx(folder, prefix, n, seed):
    """Ten classes of 28x28 images: a bright block at one of ten places."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, y in enumerate(labels):
        r, c = divmod(int(y), 5)
        images[i, 3 + 12 * r:12 + 12 * r, 1 + 5 * c:6 + 5 * c] = 230
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, n) + labels.tobytes())


def test_finetune_fashion(tmp_path):
    from netdef.weights import load_weights

    here = workspace(tmp_path, "finetune_fashion")
    write_idx(tmp_path / "data" / "synthetic", "train", 600, 1)
    write_idx(tmp_path / "data" / "synthetic", "t10k", 200, 2)
    run([sys.executable, "examples/finetune_fashion/split_classes.py", "data/synthetic",
         "data/split"], cwd=tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "netdef").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m '
                                   'netdef.tools.main "$@"\n')
    (bindir / "netdef").chmod(0o755)
    env = dict(ENV, PATH=f"{bindir}{os.pathsep}{ENV['PATH']}")
    run(["bash", "examples/finetune_fashion/create_lmdbs.sh", "data/split"], cwd=tmp_path,
        env=env)
    for name in ("base", "new"):
        for split in ("train", "test"):
            assert (here / f"{name}_{split}_lmdb" / "data.mdb").exists()
    for net in ("base_train_test.prototxt", "finetune_train_test.prototxt"):
        edit(here / net, ("batch_size: 64", "batch_size: 32"))
    edit(here / "base_solver.prototxt", ("test_iter: 50", "test_iter: 2"),
         ("test_interval: 500", "test_interval: 60"))
    edit(here / "finetune_solver.prototxt", ("test_iter: 50", "test_iter: 2"),
         ("test_interval: 100", "test_interval: 40"))
    base = netdef("train", "--solver", "examples/finetune_fashion/base_solver.prototxt",
                  "--iterations", "60", cwd=tmp_path).stderr
    assert accuracies(base)[-1] >= 0.9, accuracies(base)
    tuned = netdef("train", "--solver", "examples/finetune_fashion/finetune_solver.prototxt",
                   "--iterations", "40", "--weights",
                   "examples/finetune_fashion/base_iter_60.caffemodel", cwd=tmp_path).stderr
    assert "Ignoring source layer ip2" in tuned
    assert accuracies(tuned)[-1] >= 0.9, accuracies(tuned)
    base_w = dict(load_weights(str(here / "base_iter_60.caffemodel")))
    tuned_w = dict(load_weights(str(here / "finetune_iter_40.caffemodel")))
    assert "ip2_new" in tuned_w and "ip2" not in tuned_w
    a, b = base_w["conv1"][0].ravel(), tuned_w["conv1"][0].ravel()
    assert np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) > 0.95   # transferred


def test_net_surgery(tmp_path):
    workspace(tmp_path, "net_surgery")
    out = run([sys.executable, "examples/net_surgery/surgery.py", "--random-weights", "0",
               "--check", "--deploy", os.path.join(ROOT, "models", "caffenet",
                                                   "deploy.prototxt"),
               "--output", str(tmp_path / "full_conv.caffemodel")], cwd=tmp_path).stdout
    assert re.search(r"fc6\s+\(4096, 9216\) -> fc6-conv \(4096, 256, 6, 6\)", out), out
    rows = [line for line in out.splitlines() if re.fullmatch(r"(\s*\d+){8}", line)]
    assert len(rows) == 8, out
    assert "reproduces the original classifier" in out
    assert (tmp_path / "full_conv.caffemodel").stat().st_size > 200e6


def test_fcn_shapes(tmp_path):
    here = workspace(tmp_path, "fcn_shapes")
    made = run([sys.executable, "examples/fcn_shapes/make_shapes.py", "--train", "300",
                "--test", "100"], cwd=tmp_path).stdout
    background = float(re.search(r"test\.h5; pixel share background ([\d.]+)", made).group(1))
    edit(here / "solver.prototxt", ("test_iter: 10", "test_iter: 5"),
         ("test_interval: 250", "test_interval: 100"))
    log = netdef("train", "--solver", "examples/fcn_shapes/solver.prototxt", "--iterations",
                 "100", cwd=tmp_path).stderr
    acc = accuracies(log)
    assert acc[-1] > background + 0.04, (acc, background)
    scored = run([sys.executable, "examples/fcn_shapes/segment.py",
                  "examples/fcn_shapes/fcn_iter_100.caffemodel", "--batches", "5"],
                 cwd=tmp_path).stdout
    assert re.search(r"pixel accuracy 0\.\d+, mean IoU 0\.\d+", scored), scored
    summary = netdef("summary", "examples/fcn_shapes/fcn_train_test.prototxt", "--format",
                     "csv", cwd=tmp_path).stdout
    shapes = {line.split(",")[0]: line.split(",")[3] for line in summary.splitlines()[1:]}
    assert shapes["score_fr"] == "20x4x8x8" and shapes["upscore"] == "20x4x36x36"
    assert shapes["score"] == "20x4x32x32"
