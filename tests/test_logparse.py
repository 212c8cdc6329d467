"""`netdef parse_log` / `plot_log`: training logs (Caffe's and ours, with or without the year
in the glog prefix) to the CSV rows Caffe's tools/extra/parse_log.py writes."""

import os
import re
import subprocess
import sys

import pytest

from netdef.logparse import line_time, parse_log, save_csv_files
from tests.shared import DATA, need

REAL_LOG = os.path.join(DATA, "logs", "caffe_lenet_fashion_mnist.log")
TINY_NET = """
name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
        dummy_data_param { shape { dim: 8 dim: 5 } shape { dim: 8 }
                           data_filler { type: "gaussian" } data_filler { type: "constant" } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"
        include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


@pytest.fixture(scope="module")
def our_log(tmp_path_factory):
    """A real `netdef train` log: display every iteration, a test every 2."""
    folder = tmp_path_factory.mktemp("ourlog")
    (folder / "net.prototxt").write_text(TINY_NET)
    (folder / "solver.prototxt").write_text(
        f'net: "{folder}/net.prototxt"\ntest_iter: 1\ntest_interval: 2\nbase_lr: 0.1\n'
        f'lr_policy: "fixed"\ndisplay: 1\nmax_iter: 4\nsnapshot_after_train: false\n')
    out = netdef_cli("train", f"--solver={folder}/solver.prototxt")
    assert out.returncode == 0, out.stderr
    path = folder / "train.log"
    path.write_text(out.stderr)
    return str(path)


def netdef_cli(*args):
    return subprocess.run([sys.executable, "-m", "netdef.tools.main", *args],
                          capture_output=True, text=True, timeout=120)


def classic(path, out):
    """The same log with glog's classic prefix (no year)."""
    with open(path) as f:
        text = f.read()
    out.write_text(re.sub(r"^([IWEF])\d{4}(\d{4} )", r"\1\2", text, flags=re.M))
    return str(out)


def test_the_real_caffe_log_with_year_prefixes():
    train, test = parse_log(need(REAL_LOG))
    assert len(train) == 100 and len(test) == 21
    assert list(train[0]) == ["NumIters", "Seconds", "LearningRate", "loss"]
    assert list(test[0]) == ["NumIters", "Seconds", "LearningRate", "accuracy", "loss"]
    assert [r["NumIters"] for r in train[:3]] == [0.0, 100.0, 200.0]
    assert train[-1]["NumIters"] == 9900.0
    assert [r["NumIters"] for r in test] == [500.0 * i for i in range(21)]
    assert test[-1]["accuracy"] == 0.8965 and test[-1]["loss"] == 0.317321
    # Seconds count from the "Solving" line (06:58:43.449271)
    assert train[0]["Seconds"] == pytest.approx(45.625229 - 43.449271, abs=1e-6)
    # Caffe's quirks: a row's rate is the last one printed before it; the first borrows
    # the second's
    assert train[1]["LearningRate"] == 0.01 and train[2]["LearningRate"] == 0.00992565
    assert test[0]["LearningRate"] == test[1]["LearningRate"] == 0.00971013


def test_classic_prefix_gives_the_same_rows(tmp_path):
    with_year = parse_log(need(REAL_LOG))
    without = parse_log(classic(REAL_LOG, tmp_path / "classic.log"))
    assert without == with_year


def test_csv_files_as_caffe_writes_them(tmp_path):
    train, test = parse_log(need(REAL_LOG))
    written = save_csv_files(REAL_LOG, str(tmp_path), train, test)
    assert [os.path.basename(p) for p in written] == ["caffe_lenet_fashion_mnist.log.train",
                                                      "caffe_lenet_fashion_mnist.log.test"]
    with open(written[0], newline="") as f:
        head = f.read().split("\r\n")[:3]
    assert head == ["NumIters,Seconds,LearningRate,loss", "0.0,2.175958,0.01,2.33399",
                    "100.0,8.987148,0.01,0.63348"]
    with open(written[1], newline="") as f:
        last = f.read().split("\r\n")[-2]
    assert last == "10000.0,381.976523,0.00596843,0.8965,0.317321"


def test_our_own_training_log(our_log):
    train, test = parse_log(our_log)
    assert [r["NumIters"] for r in train] == [0.0, 1.0, 2.0, 3.0]
    assert all(r["LearningRate"] == 0.1 for r in train)
    assert all(r["loss"] > 0 for r in train)
    assert [r["NumIters"] for r in test] == [0.0, 2.0, 4.0]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in test)


def test_year_rollover_and_prefix_forms(tmp_path):
    log = tmp_path / "newyear.log"
    log.write_text(
        "I1231 23:59:58.000000  1 solver.cpp:289] Solving Net\n"
        "I1231 23:59:59.000000  1 solver.cpp:239] Iteration 0, loss = 1\n"
        "I1231 23:59:59.500000  1 solver.cpp:258]     Train net output #0: loss = 1\n"
        "I0101 00:00:01.000000  1 solver.cpp:239] Iteration 10, loss = 0.5\n"
        "I0101 00:00:01.000000  1 solver.cpp:258]     Train net output #0: loss = 0.5\n"
        "I0101 00:00:01.000000  1 sgd_solver.cpp:112] Iteration 10, lr = 0.001\n")
    train, _ = parse_log(str(log))
    assert [r["Seconds"] for r in train] == [1.5, 3.0]
    t, with_year = line_time("I20261123 06:58:43.406499 13887 caffe.cpp:197] Use CPU.", 1999)
    assert with_year and (t.year, t.month, t.day, t.microsecond) == (2026, 11, 23, 406499)
    t, with_year = line_time("W1123 06:58:43.4 13887 x.cpp:1] w", 2020)
    assert not with_year and (t.year, t.microsecond) == (2020, 400000)


def test_parse_log_command(tmp_path):
    out = netdef_cli("parse_log", need(REAL_LOG), str(tmp_path), "--verbose")
    assert out.returncode == 0, out.stderr
    assert os.path.exists(tmp_path / "caffe_lenet_fashion_mnist.log.train")
    assert os.path.exists(tmp_path / "caffe_lenet_fashion_mnist.log.test")


def test_plot_log_command(tmp_path):
    target = tmp_path / "curves.png"
    out = netdef_cli("plot_log", need(REAL_LOG), str(target))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert out.returncode == 1
        assert "matplotlib" in out.stderr and "pip install" in out.stderr
        assert "Traceback" not in out.stderr
        return
    assert out.returncode == 0, out.stderr
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_log_draws_every_panel(tmp_path):
    pytest.importorskip("matplotlib")
    from netdef.logparse import plot_log

    train, test = parse_log(need(REAL_LOG))
    path = plot_log(train, test, str(tmp_path / "p.svg"), title="t")
    text = open(path).read()
    for word in ("loss", "accuracy", "learning rate", "iterations", "seconds"):
        assert word in text
