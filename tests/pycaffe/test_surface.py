"""``import netdef as caffe``: the module names and top-level names pycaffe scripts use."""

import importlib

import pytest
from google.protobuf import text_format

import netdef
from netdef.proto import caffe_pb2

# pycaffe's own caffe/__init__.py exports these.
PYCAFFE_NAMES = [
    "Net", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver",
    "AdamSolver", "NCCL", "Timer", "init_log", "log", "set_mode_cpu", "set_mode_gpu",
    "set_device", "Layer", "get_solver", "layer_type_list", "set_random_seed", "solver_count",
    "set_solver_count", "solver_rank", "set_solver_rank", "set_multiprocess", "has_nccl",
    "__version__", "TRAIN", "TEST", "Classifier", "Detector", "io", "layers", "params",
    "NetSpec", "to_proto",
]

# Submodules scripts import: `import caffe.io`, `from caffe.coord_map import crop`, ...
SUBMODULES = ["io", "draw", "net_spec", "coord_map", "classifier", "detector", "pycaffe",
              "proto", "proto.caffe_pb2"]

NET = """
name: "tiny" layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


@pytest.mark.parametrize("name", PYCAFFE_NAMES)
def test_pycaffe_top_level_name(name):
    assert hasattr(netdef, name), f"netdef.{name} missing (pycaffe has caffe.{name})"


@pytest.mark.parametrize("name", SUBMODULES)
def test_pycaffe_submodule(name):
    module = importlib.import_module(f"netdef.{name}")
    parent = netdef
    for part in name.split("."):
        parent = getattr(parent, part)
    assert parent is module


def test_io_exposes_caffe_pb2_like_pycaffe():
    # user scripts write `datum = caffe.io.caffe_pb2.Datum()`
    assert netdef.io.caffe_pb2.Datum is caffe_pb2.Datum
    assert netdef.proto.caffe_pb2.BlobProto is caffe_pb2.BlobProto


def test_pycaffe_module_names():
    from netdef.pycaffe import Net, SGDSolver  # noqa: F401  (`from caffe.pycaffe import Net`)

    assert Net is netdef.Net


def _solver_file(tmp_path, extra=""):
    (tmp_path / "net.prototxt").write_text(NET)
    path = tmp_path / "solver.prototxt"
    path.write_text(f'net: "{tmp_path}/net.prototxt" base_lr: 0.1 lr_policy: "fixed" '
                    f'max_iter: 1 {extra}')
    return str(path)


def test_typed_solver_constructors_use_their_own_update_rule(tmp_path):
    plain = _solver_file(tmp_path)
    adam = netdef.AdamSolver(plain)
    assert adam.type == "Adam"
    assert isinstance(adam, netdef.SGDSolver) and isinstance(adam, netdef.Solver)
    assert netdef.NesterovSolver(plain).type == "Nesterov"
    assert netdef.get_solver(plain).type == "SGD"
    adam_file = _solver_file(tmp_path, 'type: "Adam"')
    # pycaffe's SGDSolver(file) is an SGD solver whatever the file's type says
    assert netdef.SGDSolver(adam_file).type == "SGD"
    assert netdef.get_solver(adam_file).type == "Adam"
    param = text_format.Parse(open(adam_file).read(), caffe_pb2.SolverParameter())
    assert netdef.RMSPropSolver(param).type == "RMSProp"
    assert param.type == "Adam"  # the caller's message is left alone


def test_timer_counts_milliseconds():
    timer = netdef.Timer()
    timer.start()
    sum(range(10000))
    timer.stop()
    assert timer.ms > 0
    assert timer.ms == timer.ms  # stopped: no longer moving


def test_multi_gpu_switches_are_accepted():
    assert netdef.has_nccl() is False
    assert netdef.solver_count() == 1 and netdef.solver_rank() == 0
    netdef.set_solver_count(1)
    netdef.set_solver_rank(0)
    netdef.set_multiprocess(False)
    with pytest.raises(RuntimeError, match="CPU"):
        netdef.NCCL()


def test_layer_parameter_holder_round_trips():
    from_text = netdef.LayerParameter("type: 'Convolution' name: 'conv1'")
    assert from_text.type == "Convolution" and from_text.name == "conv1"
    message = caffe_pb2.LayerParameter(name="ip", type="InnerProduct")
    held = netdef.LayerParameter(message)
    assert held.to_python() == message
    empty = netdef.LayerParameter("")
    empty.from_python(message)
    assert empty.to_python() == message
    assert empty.to_python() is not message


def test_logging_functions(capfd):
    from netdef.log import logger

    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        # An earlier test in this process may have attached the handler to another stream.
        logger.handlers[:] = [h for h in logger.handlers if not getattr(h, "_netdef", False)]
        netdef.init_log()
        netdef.log("hello from a script")
        assert "hello from a script" in capfd.readouterr().err
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])


def test_draw_helper_names():
    assert netdef.draw.get_pooling_types_dict()[caffe_pb2.PoolingParameter.MAX] == "MAX"
    assert netdef.draw.choose_color_by_layertype("Convolution") != \
        netdef.draw.choose_color_by_layertype("Silence")
    layer = caffe_pb2.LayerParameter(name="ip", type="InnerProduct")
    layer.inner_product_param.num_output = 7
    assert netdef.draw.get_edge_label(layer) == "7"
    assert "ip" in netdef.draw.get_layer_label(layer, "TB")
