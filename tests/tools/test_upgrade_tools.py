"""Caffe's upgrade_net_proto_text/_binary and upgrade_solver_proto_text as subcommands."""

import os
import subprocess
import sys

from netdef.proto import caffe_pb2
from netdef.prototxt import read_net_param, read_text_proto
from netdef.weights import load_weights
from tests.shared import DATA, need

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTOTXT = os.path.join(DATA, "prototxt")


def netdef(*args):
    return subprocess.run([sys.executable, "-m", "netdef.tools.main", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_upgrade_net_proto_text(tmp_path):
    source = need(os.path.join(PROTOTXT, "BVLC_caffe@2e33058_V0/examples/lenet/lenet.prototxt"))
    out = tmp_path / "lenet.prototxt"
    result = netdef("upgrade_net_proto_text", source, str(out))
    assert result.returncode == 0, result.stderr
    assert "Wrote upgraded NetParameter text proto to" in result.stderr
    raw = read_text_proto(out, caffe_pb2.NetParameter())  # already current: no upgrade needed
    assert not raw.layers and not raw.input and raw.layer[0].type == "Input"
    assert raw == read_net_param(source)


def test_upgrade_net_proto_text_on_a_current_file(tmp_path):
    source = need(os.path.join(PROTOTXT, "BVLC_caffe/examples/mnist/lenet.prototxt"))
    out = tmp_path / "same.prototxt"
    result = netdef("upgrade_net_proto_text", source, str(out))
    assert result.returncode == 0
    assert "File already in latest proto format" in result.stderr
    assert read_text_proto(out, caffe_pb2.NetParameter()) == read_net_param(source)


def test_upgrade_net_proto_binary(tmp_path):
    source = need(os.path.join(DATA, "models/cifar10_quick_everpeace/"
                                     "cifar10_quick_iter_5000.caffemodel"))
    out = tmp_path / "v2.caffemodel"
    result = netdef("upgrade_net_proto_binary", source, str(out))
    assert result.returncode == 0, result.stderr
    raw = caffe_pb2.NetParameter.FromString(out.read_bytes())
    assert not raw.layers and [layer.type for layer in raw.layer if layer.blobs] == [
        "Convolution"] * 3 + ["InnerProduct"] * 2
    assert [n for n, _ in load_weights(out)] == [n for n, _ in load_weights(source)]


def test_upgrade_solver_proto_text(tmp_path):
    source = tmp_path / "old_solver.prototxt"
    source.write_text('net: "n.prototxt"\nbase_lr: 0.01\nsolver_type: ADAGRAD\n')
    out = tmp_path / "new_solver.prototxt"
    result = netdef("upgrade_solver_proto_text", str(source), str(out))
    assert result.returncode == 0, result.stderr
    solver = read_text_proto(out, caffe_pb2.SolverParameter())
    assert solver.type == "AdaGrad" and not solver.HasField("solver_type")


def test_unparsable_input_exits_2_with_a_clear_message(tmp_path):
    source = tmp_path / "bad.prototxt"
    source.write_text("layer {\n  nmae: \"x\"\n}\n")
    out = tmp_path / "out.prototxt"
    result = netdef("upgrade_net_proto_text", str(source), str(out))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "bad.prototxt:2:3:" in result.stderr and 'Did you mean "name"' in result.stderr
    assert not out.exists()
