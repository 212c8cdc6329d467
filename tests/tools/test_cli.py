"""The `netdef` program: help, Caffe-style flags, and one clear error per bad input."""

import os
import subprocess
import sys

import pytest

from netdef.tools.main import normalize_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def netdef(*args, cwd=None, env=None):
    cmd = [sys.executable, "-m", "netdef.tools.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or ROOT,
                          env=env, timeout=300)


def test_help_lists_the_tools():
    out = netdef("--help")
    assert out.returncode == 0
    for tool in ("train", "test", "time", "convert_mnist_data"):
        assert tool in out.stdout


def test_caffe_style_flags_are_accepted():
    assert normalize_flags(["train", "-solver", "s.prototxt", "-gpu=0", "-1"]) == \
        ["train", "--solver", "s.prototxt", "--gpu=0", "-1"]


def _assert_clean_error(out, *needles):
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("netdef: error: ")]
    assert len(errors) == 1, out.stderr
    tail = out.stderr[out.stderr.index(errors[0]):]
    for n in needles:
        assert n in tail, out.stderr


def test_solver_without_net(tmp_path):
    s = tmp_path / "solver.prototxt"
    s.write_text('base_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 1\n')
    _assert_clean_error(netdef("train", f"--solver={s}"), "names no net")


def test_misspelled_field_gives_file_line_column(tmp_path):
    s = tmp_path / "solver.prototxt"
    s.write_text('net: "x.prototxt"\nbase_lrr: 0.01\n')
    _assert_clean_error(netdef("train", "-solver", str(s)), f"{s}:2:")


def test_unknown_layer_type_lists_known(tmp_path):
    m = tmp_path / "net.prototxt"
    m.write_text('layer { name: "c" type: "Convolutoin" }\n')
    _assert_clean_error(netdef("time", f"--model={m}", "--iterations=1"), "Convolutoin",
                        "Convolution")


def test_missing_bottom_names_layer_and_blob(tmp_path):
    m = tmp_path / "net.prototxt"
    m.write_text('layer { name: "r" type: "ReLU" bottom: "nowhere" top: "r" }\n')
    _assert_clean_error(netdef("time", f"--model={m}", "--iterations=1"), "'r'", "'nowhere'")


def test_incompatible_shapes_name_layer(tmp_path):
    m = tmp_path / "net.prototxt"
    m.write_text('layer { name: "in" type: "Input" top: "a" top: "b" input_param { '
                 'shape { dim: 2 dim: 3 } shape { dim: 2 dim: 4 } } }\n'
                 'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "c" }\n')
    _assert_clean_error(netdef("time", f"--model={m}", "--iterations=1"), "'sum'")


def test_weights_that_do_not_fit(tmp_path):
    m = tmp_path / "net.prototxt"
    m.write_text('layer { name: "in" type: "Input" top: "a" '
                 'input_param { shape { dim: 2 dim: 3 } } }\n'
                 'layer { name: "ip" type: "InnerProduct" bottom: "a" top: "b" '
                 'inner_product_param { num_output: 2 } }\n')
    from netdef.net import Net

    net = Net(str(m), phase="TEST")
    w = tmp_path / "w.caffemodel"
    net.save(str(w))
    m.write_text(m.read_text().replace("num_output: 2", "num_output: 5"))
    _assert_clean_error(netdef("test", f"--model={m}", f"--weights={w}", "--iterations=1"),
                        "'ip'", "shape mismatch")


def test_missing_lmdb(tmp_path):
    m = tmp_path / "net.prototxt"
    m.write_text(f'layer {{ name: "d" type: "Data" top: "data" top: "label" data_param {{ '
                 f'source: "{tmp_path}/nope_lmdb" batch_size: 2 backend: LMDB }} }}\n')
    _assert_clean_error(netdef("test", f"--model={m}", "--iterations=1"), "nope_lmdb")


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n....."])
def test_weights_file_that_is_not_a_caffemodel(tmp_path, content):
    m = tmp_path / "net.prototxt"
    m.write_text('layer { name: "in" type: "Input" top: "a" '
                 'input_param { shape { dim: 2 dim: 3 } } }\n'
                 'layer { name: "ip" type: "InnerProduct" bottom: "a" top: "b" '
                 'inner_product_param { num_output: 2 } }\n')
    w = tmp_path / "w.caffemodel"
    w.write_bytes(content)
    _assert_clean_error(netdef("test", f"--model={m}", f"--weights={w}", "--iterations=1"),
                        str(w))


def test_python_layers_need_opt_in_on_the_command_line(tmp_path):
    (tmp_path / "mylayer.py").write_text(
        "import netdef\n"
        "class Double(netdef.Layer):\n"
        "    def setup(self, bottom, top):\n        pass\n"
        "    def reshape(self, bottom, top):\n        top[0].reshape(*bottom[0].shape)\n"
        "    def forward(self, bottom, top):\n        top[0].data[...] = 2 * bottom[0].data\n"
        "    def backward(self, top, propagate_down, bottom):\n        pass\n")
    m = tmp_path / "net.prototxt"
    m.write_text('layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 2 } } }\n'
                 'layer { name: "py" type: "Python" bottom: "a" top: "b" '
                 'python_param { module: "mylayer" layer: "Double" } }\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("NETDEF_ALLOW_PYTHON_LAYERS", None)
    refused = netdef("time", f"--model={m}", "--iterations=1", cwd=tmp_path, env=env)
    _assert_clean_error(refused, "--allow-python-layers")
    allowed = netdef("time", f"--model={m}", "--iterations=1", "--allow-python-layers",
                     cwd=tmp_path, env=env)
    assert allowed.returncode == 0, allowed.stderr


def test_device_query_describes_the_cpu():
    out = netdef("device_query")
    assert out.returncode == 0 and "Device: CPU" in out.stdout


def test_main_restores_the_python_layer_switch():
    from netdef.layers import python_layer
    from netdef.tools.main import main

    assert python_layer.python_layers_switch()
    main(["device_query"])
    assert python_layer.python_layers_switch()
