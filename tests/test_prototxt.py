"""Reading and writing prototxt/binary protos: every real file parses, errors are kind."""

import csv
import logging
import os

import pytest

from netdef import prototxt
from netdef.errors import PrototxtError
from netdef.proto import caffe_pb2
from tests.shared import CONFORMANCE, DATA, need

PROTOTXT = os.path.join(DATA, "prototxt")


def _manifest():
    path = os.path.join(PROTOTXT, "MANIFEST.tsv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


MANIFEST = _manifest()


@pytest.mark.parametrize("row", MANIFEST, ids=[r["file"] for r in MANIFEST])
def test_every_real_file_parses_and_upgrades(row):
    path = need(os.path.join(PROTOTXT, row["file"]))
    if row["format"].startswith("solver"):
        solver = prototxt.read_solver_param(path)
        assert not solver.HasField("solver_type")
        for inline in [solver.net_param, solver.train_net_param, *solver.test_net_param]:
            assert not inline.layers
        return
    param = prototxt.read_net_param(path)
    assert param.layer and not param.layers
    assert not param.input and not param.input_dim and not param.input_shape
    assert all(layer.type for layer in param.layer)
    if row["format"] in ("V0", "V1") and row["purpose"] == "deploy":
        assert param.layer[0].type == "Input"


def test_manifest_is_there():
    need(os.path.join(PROTOTXT, "MANIFEST.tsv"))
    assert {r["format"] for r in MANIFEST} >= {"V0", "V1", "V2", "solver"}


# ------------------------------------------------------------------ errors

def _error(text, filename="net.prototxt"):
    with pytest.raises(PrototxtError) as info:
        prototxt.parse_net_text(text, filename)
    return str(info.value)


def test_misspelled_field_gives_file_line_column_and_suggestion():
    message = _error('name: "x"\nlayer {\n  name: "a"\n  botom: "b"\n}\n')
    first = message.splitlines()[0]
    assert first.startswith("net.prototxt:4:3: ")
    assert 'has no field named "botom"' in first
    assert 'Did you mean "bottom"' in first
    lines = message.splitlines()
    assert lines[1].strip() == 'botom: "b"'
    assert lines[2].index("^") == lines[1].index("botom")


def test_misspelled_enum_value_suggests_the_right_one():
    message = _error('layer {\n  include { phase: TRIAN }\n}')
    assert message.startswith("net.prototxt:2:")
    assert "TRIAN" in message and 'Did you mean "TRAIN"' in message


def test_v1_type_in_current_layer_is_explained():
    message = _error('layer { name: "c" type: CONVOLUTION }')
    assert 'type: "Convolution"' in message and "`layers { }`" in message


def test_field_outside_its_param_message_is_explained():
    message = _error('layer { name: "c" type: "Convolution" kernel_size: 3 }')
    assert "convolution_param" in message and "pooling_param" in message


def test_v1_field_in_current_layer_is_explained():
    message = _error('layer { name: "c" type: "Convolution" blobs_lr: 1 }')
    assert "lr_mult" in message


def test_small_message_lists_its_fields():
    message = _error('layer { include { phaze_x: TRAIN } }')
    assert "phase" in message


def test_unclosed_brace():
    message = _error('layer { name: "a"\n')
    assert message.startswith("net.prototxt:")


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.prototxt"
    with pytest.raises(PrototxtError, match="nope.prototxt: no such"):
        prototxt.read_net_param(missing)
    with pytest.raises(PrototxtError, match="nope.prototxt"):
        prototxt.read_solver_param(missing)
    with pytest.raises(PrototxtError, match="nope.prototxt"):
        prototxt.read_net_param_binary(missing)


def test_binary_file_given_as_text():
    model = need(os.path.join(CONFORMANCE, "io", "snap_iter_3.caffemodel"))
    with pytest.raises(PrototxtError, match="expected a text prototxt, but this is a binary"):
        prototxt.read_net_param(model)
    image = need(os.path.join(CONFORMANCE, "io", "images", "b.png"))
    with pytest.raises(PrototxtError, match="PNG image"):
        prototxt.read_net_param(image)


def test_text_given_as_binary():
    path = need(os.path.join(CONFORMANCE, "io", "tiny_net.prototxt"))
    with pytest.raises(PrototxtError, match="not a binary NetParameter.*text file"):
        prototxt.read_net_param_binary(path)


def test_empty_binary(tmp_path):
    path = tmp_path / "empty.caffemodel"
    path.write_bytes(b"")
    with pytest.raises(PrototxtError, match="empty"):
        prototxt.read_net_param_binary(path)


def test_legacy_encoded_comments_are_fine(tmp_path):
    path = tmp_path / "gbk.prototxt"
    path.write_bytes('name: "n" # 卷积层\nlayer { name: "r" type: "ReLU" }\n'.encode("gbk"))
    assert prototxt.read_net_param(path).layer[0].name == "r"


def test_non_utf8_inside_a_value_names_its_line(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_bytes(b'name: "n"\nlayer { name: "\xc4\xe3" }\n')
    with pytest.raises(PrototxtError, match="bad.prototxt:2:"):
        prototxt.read_net_param(path)


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.prototxt"
    path.write_bytes(b'\xef\xbb\xbfname: "n"\n')
    assert prototxt.read_net_param(path).name == "n"


# ------------------------------------------------------------------ upgrade logs

def test_upgrade_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="netdef"):
        prototxt.parse_net_text('layers { name: "r" type: RELU }', "old.prototxt")
    assert "V1LayerParameter: old.prototxt" in caplog.text


def test_current_format_logs_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="netdef"):
        prototxt.parse_net_text('layer { name: "r" type: "ReLU" }', "new.prototxt")
    assert caplog.text == ""


# ------------------------------------------------------------------ round trips

def test_text_round_trip(tmp_path):
    source = need(os.path.join(PROTOTXT, "BVLC_caffe/models/bvlc_googlenet/train_val.prototxt"))
    param = prototxt.read_net_param(source)
    out = tmp_path / "g.prototxt"
    prototxt.write_text(param, out)
    assert prototxt.read_net_param(out) == param
    assert prototxt.parse_net_text(prototxt.to_text(param)) == param


def test_binary_round_trip(tmp_path):
    source = need(os.path.join(PROTOTXT, "BVLC_caffe/models/bvlc_alexnet/train_val.prototxt"))
    param = prototxt.read_net_param(source)
    out = tmp_path / "a.binaryproto"
    prototxt.write_binary(param, out)
    assert prototxt.read_net_param_binary(out) == param


def test_to_text_is_caffe_style():
    param = caffe_pb2.NetParameter(name="n")
    param.layer.add(name="r", type="ReLU", bottom=["x"], top=["x"])
    assert prototxt.to_text(param) == (
        'name: "n"\nlayer {\n  name: "r"\n  type: "ReLU"\n  bottom: "x"\n  top: "x"\n}\n')


def test_raw_readers_do_not_upgrade(tmp_path):
    path = tmp_path / "v1.prototxt"
    path.write_text('layers { name: "r" type: RELU }')
    raw = prototxt.read_text_proto(path, caffe_pb2.NetParameter())
    assert len(raw.layers) == 1 and not raw.layer


def test_solver_from_file_and_text(tmp_path):
    path = tmp_path / "s.prototxt"
    path.write_text('net: "n.prototxt"\nbase_lr: 0.01\nsolver_type: NESTEROV\n')
    solver = prototxt.read_solver_param(path)
    assert solver.type == "Nesterov" and solver.net == "n.prototxt"
    with pytest.raises(PrototxtError, match="s.prototxt:1:"):
        prototxt.parse_solver_text("base_lr: fast", "s.prototxt")


# ------------------------------------------------------------------ sniffing

@pytest.mark.parametrize("head,expected", [
    (b"\x89PNG\r\n\x1a\n....", "a PNG image"),
    (b"\xff\xd8\xff\xe0", "a JPEG image"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"\x80\x04\x95", "a Python pickle"),
    (b'name: "x"\n', "a text file"),
    (b"", "an empty file"),
])
def test_describe_content(head, expected):
    assert prototxt.describe_content(head) == expected
