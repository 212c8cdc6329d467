"""The committed caffe_pb2.py must be what the schema compiles to, and match Caffe's wire format."""

import os

import numpy as np
import pytest
from google.protobuf import descriptor_pb2

from netdef.proto import caffe_pb2

PROTO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "proto")


def _file_proto(module):
    fp = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(fp)
    return fp


def _normalised(fp):
    """Drop what differs only in spelling: derived json_names, float default formatting."""
    def strip(messages):
        for m in messages:
            for f in m.field:
                f.ClearField("json_name")
                if f.type == f.TYPE_FLOAT and f.HasField("default_value"):
                    f.default_value = repr(float(np.float32(float(f.default_value))))
            strip(m.nested_type)

    strip(fp.message_type)
    return fp


def test_generated_module_matches_schema(tmp_path):
    protoc = pytest.importorskip("grpc_tools.protoc",
                                 reason="grpcio-tools (the `proto` extra) regenerates")
    out = tmp_path / "caffe.desc"
    status = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--descriptor_set_out={out}",
                          os.path.join(PROTO_DIR, "caffe.proto")])
    assert status == 0
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(out.read_bytes())
    assert _normalised(_file_proto(caffe_pb2)) == _normalised(fds.file[0]), \
        "proto/caffe_pb2.py is stale: run `make proto`"


@pytest.mark.parametrize("message,field,number", [
    ("BlobProto", "shape", 7), ("BlobProto", "num", 1), ("Datum", "encoded", 7),
    ("NetParameter", "layer", 100), ("NetParameter", "layers", 2),
    ("SolverParameter", "type", 40), ("SolverParameter", "weights", 42),
    ("SolverParameter", "layer_wise_reduce", 41), ("SolverState", "current_step", 4),
    ("LayerParameter", "clip_param", 148), ("LayerParameter", "swish_param", 147),
    ("LayerParameter", "recurrent_param", 146), ("LayerParameter", "transform_param", 100),
    ("V1LayerParameter", "layer", 1), ("V1LayerParameter", "blobs_lr", 7),
    ("V0LayerParameter", "hdf5_output_param", 1001), ("PoolingParameter", "round_mode", 13),
    ("ConvolutionParameter", "dilation", 18), ("InfogainLossParameter", "axis", 2),
])
def test_field_numbers_are_caffes(message, field, number):
    desc = getattr(caffe_pb2, message).DESCRIPTOR
    assert desc.fields_by_name[field].number == number


def test_defaults_are_caffes():
    assert caffe_pb2.DataParameter().backend == caffe_pb2.DataParameter.LEVELDB
    assert caffe_pb2.LossParameter().normalization == caffe_pb2.LossParameter.VALID
    assert caffe_pb2.SolverParameter().snapshot_format == caffe_pb2.SolverParameter.BINARYPROTO
    assert caffe_pb2.SolverParameter().random_seed == -1
    assert caffe_pb2.SolverParameter().clip_gradients == -1
    assert caffe_pb2.NetState().phase == caffe_pb2.TEST
    assert abs(caffe_pb2.BatchNormParameter().moving_average_fraction - 0.999) < 1e-7
    assert caffe_pb2.FillerParameter().type == "constant"
    assert caffe_pb2.V1LayerParameter.SOFTMAX_LOSS == 21
