"""netdef.draw (pycaffe's caffe.draw) and `netdef draw NET OUT`."""

import os
import re
import stat
import subprocess
import sys

import pytest

import netdef
from netdef import draw
from netdef.prototxt import read_net_param
from tests.shared import ROOT

LENET = os.path.join(ROOT, "examples", "mnist", "lenet_train_test.prototxt")
DEPLOY = os.path.join(ROOT, "models", "lenet", "deploy.prototxt")


def netdef_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "netdef.tools.main", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_dot_text_has_layers_blobs_and_edges():
    dot = draw.net_to_dot(read_net_param(LENET))
    assert dot.startswith('digraph "LeNet" {') and dot.rstrip().endswith("}")
    assert '"layer2:conv1" [label="conv1 (Convolution) kernel size: 5 stride: 1 pad: 0"' in dot
    assert 'label="pool1 (Pooling MAX) kernel size: 2 stride: 2 pad: 0"' in dot
    assert '"blob:data" -> "layer2:conv1";' in dot
    assert '"layer2:conv1" -> "blob:conv1" [label="20"];' in dot
    assert '"layer0:mnist" -> "blob:data" [label="64"];' in dot
    assert f'fillcolor="{draw.NEURON_COLOR}"' in dot          # relu1, in place
    assert dot.count('shape="octagon"') == 10                    # one node per blob


def test_phase_filter_and_rankdir():
    train = draw.net_to_dot(LENET, phase=netdef.TRAIN)
    test = draw.net_to_dot(LENET, phase=netdef.TEST, rankdir="TB")
    assert "accuracy" not in train and '"layer0:mnist"' in train
    assert '"layer1:mnist"' not in train
    assert "accuracy" in test and '"layer0:mnist"' not in test
    assert 'rankdir="TB"' in test and "conv1\\n(Convolution)\\nkernel size: 5" in test
    lrm = draw.net_to_dot(LENET, display_lrm=True)
    assert "lr mult: 1, 2" in lrm


def test_accepts_a_net_and_text():
    net = netdef.Net(DEPLOY, netdef.TEST)
    assert draw.net_to_dot(net) == draw.net_to_dot(DEPLOY)
    assert draw.net_to_dot(open(DEPLOY).read()) == draw.net_to_dot(DEPLOY)


def test_draw_command_writes_dot(tmp_path):
    out = netdef_cli("draw", DEPLOY, str(tmp_path / "lenet.dot"), "--shapes")
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "lenet.dot").read_text()
    assert "conv1\\n64x20x24x24" in text and "prob\\n64x10" in text


def _no_dot_path(tmp_path):
    """A PATH without Graphviz's dot (python stays reachable)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    return str(bindir)


def test_vector_images_without_graphviz_give_a_clear_message(tmp_path):
    # raster formats fall back to the built-in layout (tests/pycaffe/test_draw_fallback.py)
    env = dict(os.environ, PATH=_no_dot_path(tmp_path))
    out = netdef_cli("draw", DEPLOY, str(tmp_path / "lenet.svg"), env=env)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert re.search(r"netdef: error: cannot draw a \.svg image: .*Graphviz.*\.dot", out.stderr)
    assert not (tmp_path / "lenet.svg").exists()


def test_images_are_rendered_by_graphviz(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n"
                    'for a in "$@"; do case "$a" in -T*) fmt="${a#-T}";; esac; done\n'
                    'cat > /dev/null 2>&1 || true\n'
                    'printf "rendered-%s" "$fmt"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    target = tmp_path / "lenet.svg"
    draw.draw_net_to_file(read_net_param(DEPLOY), str(target))
    assert target.read_bytes() == b"rendered-svg"
    assert draw.draw_net(DEPLOY, ext="png") == b"rendered-png"


def test_get_pydot_graph():
    try:
        import pydot  # noqa: F401
    except ImportError:
        with pytest.raises(draw.DrawError, match="pydot"):
            draw.get_pydot_graph(DEPLOY)
        return
    graph = draw.get_pydot_graph(read_net_param(DEPLOY))
    assert any(n.get_name() == '"layer1:conv1"' for n in graph.get_nodes())
