"""A user's exception from a Python layer keeps its class (``except RuntimeError`` works, as
in pycaffe) and is still a LayerError naming the layer."""

import pytest

import netdef
from netdef.errors import LayerError
from tests.pycaffe.pylayers import TwoArgError, net_text, random_input


def test_setup_error_keeps_the_users_class():
    with pytest.raises(RuntimeError, match="no setup today") as info:
        netdef.Net(net_text(("RaiseInSetup", "")), netdef.TEST)
    assert isinstance(info.value, LayerError)
    assert "Python layer 'l0'" in str(info.value) and "setup() raised RuntimeError" in str(
        info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_forward_error_keeps_the_users_class():
    net = netdef.Net(net_text(("RaiseInForward", "")), netdef.TEST)
    with pytest.raises(KeyError) as info:
        net.forward(data=random_input((4, 3)))
    assert isinstance(info.value, LayerError)
    assert "forward() raised KeyError" in str(info.value)


def test_exception_classes_with_their_own_constructor():
    net = netdef.Net(net_text(("RaiseCustom", "")), netdef.TEST)
    with pytest.raises(TwoArgError) as info:
        net.forward(data=random_input((4, 3)))
    assert isinstance(info.value, LayerError)
    assert "7: custom failure" in str(info.value)
    assert info.value.__cause__.code == 7


def test_python_layer_param_str_and_phase():
    net = netdef.Net(net_text(("Times", "4")), netdef.TRAIN)
    layer = net.layer_dict["l0"]
    assert layer.param_str == "4" and layer.phase == netdef.TRAIN
    assert layer.param_str_ == "4"  # older pycaffe's name
    assert "Python" in netdef.layer_type_list()


def test_the_combined_error_pickles_as_a_layer_error():
    import pickle

    net = netdef.Net(net_text(("RaiseInForward", "")), netdef.TEST)
    with pytest.raises(KeyError) as info:
        net.forward(data=random_input((4, 3)))
    copy = pickle.loads(pickle.dumps(info.value))
    assert isinstance(copy, LayerError) and str(copy) == str(info.value)
