"""Caffe's protobuf schema, as ``netdef.proto.caffe_pb2`` (like pycaffe's caffe.proto)."""
