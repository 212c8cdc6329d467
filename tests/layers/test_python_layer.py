"""The Python layer: a user module written to a temporary folder, run through a Net the
pycaffe way (forward, backward, param_str, phase, blobs), its errors and the opt-in."""

import itertools
import sys
import textwrap

import numpy as np
import pytest
from google.protobuf import text_format

import netdef
from netdef.blob import Blob
from netdef.errors import LayerError
from netdef.layer import create_layer
from netdef.layers import python_layer
from netdef.net import Net
from netdef.proto import caffe_pb2

USER_MODULE = '''
import numpy as np
import netdef as caffe

IMPORTS = []
IMPORTS.append(1)


class Scale(caffe.Layer):
    """y = k * x, k from param_str (pycaffe style: no __init__, reshape in reshape)."""

    def setup(self, bottom, top):
        if len(bottom) != 1:
            raise Exception("Scale needs one bottom")
        self.k = float(self.param_str or 2)
        self.setup_phase = self.phase

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.k * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = self.k * top[0].diff

    def describe_k(self):
        return "k=%g" % self.k


class AddParam(caffe.Layer):
    """y = x + w with a learnable w made with pycaffe's blobs.add_blob."""

    def setup(self, bottom, top):
        self.blobs.add_blob(bottom[0].data.shape[1])
        self.blobs[0].data[...] = np.arange(bottom[0].data.shape[1])

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data + self.blobs[0].data

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] += top[0].diff.sum(axis=0)
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff


class WithInit(caffe.Layer):
    def __init__(self, param):
        super().__init__(param)
        self.made_with = param.name

    def setup(self, bottom, top):
        self.seen = self.param_str

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data


class Duck:
    """Not a netdef.Layer subclass: driven through the wrapper."""

    def setup(self, bottom, top):
        self.k = float(self.param_str)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.k * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = self.k * top[0].diff


class Broken(Scale):
    def forward(self, bottom, top):
        raise ValueError("boom in forward")


class BrokenSetup(Scale):
    def setup(self, bottom, top):
        raise RuntimeError("cannot set up: " + self.param_str)


not_a_class = 3
'''

_names = itertools.count()


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A fresh user module in tmp_path, importable by name; its name is returned."""
    name = f"user_layers_{next(_names)}_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.fixture(autouse=True)
def restore_switch(monkeypatch):
    monkeypatch.delenv(python_layer.ENV_VAR, raising=False)
    yield
    python_layer.allow_python_layers(True)


def net_text(module, cls, param_str="", backward=True):
    return textwrap.dedent(f"""
        name: "py" {"force_backward: true" if backward else ""}
        layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 }} }} }}
        layer {{ name: "l" type: "Python" bottom: "x" top: "y"
                python_param {{ module: "{module}" layer: "{cls}" param_str: "{param_str}" }} }}
    """)


X = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5


def test_forward_backward_and_param_str(user_module):
    net = Net(net_text(user_module, "Scale", "3"), phase="TRAIN")
    layer = net.layers[-1]
    assert type(layer).__name__ == "Scale" and isinstance(layer, netdef.Layer)
    assert layer.describe_k() == "k=3"  # the user's own methods, as in pycaffe
    assert layer.setup_phase == netdef.TRAIN and layer.type == "Python"
    out = net.forward(x=X)
    np.testing.assert_allclose(out["y"], 3 * X)
    diffs = net.backward(y=np.ones_like(X))
    np.testing.assert_allclose(diffs["x"], 3 * np.ones_like(X))


def test_default_param_str_and_test_phase(user_module):
    net = Net(net_text(user_module, "Scale"), phase="TEST")
    assert net.layers[-1].param_str == "" and net.layers[-1].setup_phase == netdef.TEST
    np.testing.assert_allclose(net.forward(x=X)["y"], 2 * X)


def test_add_blob_makes_a_learnable_parameter(user_module):
    net = Net(net_text(user_module, "AddParam"), phase="TRAIN")
    (w,) = net.params["l"]
    np.testing.assert_array_equal(w.data, [0, 1, 2])
    np.testing.assert_allclose(net.forward(x=X)["y"], X + [0, 1, 2])
    net.clear_param_diffs()
    net.backward(y=np.ones_like(X))
    net.backward(y=np.ones_like(X))
    np.testing.assert_array_equal(w.diff, [4, 4, 4])  # two backwards accumulate
    assert net.learnable_params[0] is w


def test_user_init_taking_the_layer_parameter(user_module):
    net = Net(net_text(user_module, "WithInit", "abc"), phase="TRAIN")
    layer = net.layers[-1]
    assert layer.made_with == "l" and layer.seen == "abc"
    np.testing.assert_allclose(net.forward(x=X)["y"], X)


def test_a_class_that_does_not_subclass_layer(user_module):
    net = Net(net_text(user_module, "Duck", "-1.5"), phase="TRAIN")
    np.testing.assert_allclose(net.forward(x=X)["y"], -1.5 * X)
    np.testing.assert_allclose(net.backward(y=np.ones_like(X))["x"], -1.5)
    assert net.layers[-1].k == -1.5  # the user's attributes show through


def test_module_found_in_the_current_directory(tmp_path, monkeypatch):
    name = f"cwd_layers_{next(_names)}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    try:
        net = Net(net_text(name, "Scale", "4"), phase="TEST")
        np.testing.assert_allclose(net.forward(x=X)["y"], 4 * X)
        assert str(tmp_path) not in sys.path  # only added while importing
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("module, cls, message", [
    ("no_such_module_xyz", "Scale", r"cannot import module 'no_such_module_xyz'.*"
                                    r"No module named"),
    (None, "Missing", "has no class 'Missing'"),
    (None, "not_a_class", "is a int, not a class"),
])
def test_loading_errors(user_module, module, cls, message):
    module = module or user_module
    with pytest.raises(LayerError, match=message) as info:
        Net(net_text(module, cls), phase="TEST")
    assert f"Python layer 'l' (module '{module}', class '{cls}')" in str(info.value)


def test_missing_python_param_fields():
    with pytest.raises(LayerError, match="needs both 'module' and 'layer'"):
        Net(net_text("", "Scale"), phase="TEST")


def test_exception_in_user_forward(user_module):
    net = Net(net_text(user_module, "Broken"), phase="TEST")
    with pytest.raises(LayerError) as info:
        net.forward(x=X)
    msg = str(info.value)
    assert "layer 'l'" in msg and user_module in msg and "'Broken'" in msg
    assert "ValueError: boom in forward" in msg
    assert isinstance(info.value.__cause__, ValueError)


def test_exception_in_user_setup(user_module):
    with pytest.raises(LayerError, match=r"class 'BrokenSetup'\): setup\(\) raised "
                                         r"RuntimeError: cannot set up: xyz"):
        Net(net_text(user_module, "BrokenSetup", "xyz"), phase="TEST")


def test_wrong_bottom_count_reported_from_user_code(user_module):
    text = net_text(user_module, "Scale").replace('bottom: "x"', 'bottom: "x" bottom: "x"')
    with pytest.raises(LayerError, match="Scale needs one bottom"):
        Net(text, phase="TEST")


def test_disallowed_python_layers_are_not_imported(user_module):
    python_layer.allow_python_layers(False)
    with pytest.raises(LayerError, match="--allow-python-layers") as info:
        Net(net_text(user_module, "Scale"), phase="TEST")
    assert python_layer.ENV_VAR in str(info.value)
    assert user_module not in sys.modules
    # at layer level the refusal comes from setup
    lp = text_format.Parse(f'name: "l" type: "Python" python_param {{ module: "{user_module}" '
                           'layer: "Scale" }', caffe_pb2.LayerParameter())
    layer = create_layer(lp)
    with pytest.raises(LayerError, match="Python layers are disabled"):
        layer.layer_setup([Blob((2, 3))], [Blob()])
    assert user_module not in sys.modules


def test_environment_variable_opts_in(user_module, monkeypatch):
    python_layer.allow_python_layers(False)
    monkeypatch.setenv(python_layer.ENV_VAR, "1")
    assert python_layer.python_layers_allowed()
    net = Net(net_text(user_module, "Scale", "5"), phase="TEST")
    np.testing.assert_allclose(net.forward(x=X)["y"], 5 * X)
