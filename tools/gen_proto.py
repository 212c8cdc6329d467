"""Regenerate proto/caffe_pb2.py from proto/caffe.proto (``make proto``).

Also used by the test that fails when the committed module drifts from the schema.
"""

import os
import sys
import tempfile

PROTO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "proto")


def generate(out_dir):
    """Run protoc (from grpcio-tools) on caffe.proto into ``out_dir``; return the path."""
    from grpc_tools import protoc

    status = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}",
                          os.path.join(PROTO_DIR, "caffe.proto")])
    if status != 0:
        raise RuntimeError("protoc failed on caffe.proto")
    return os.path.join(out_dir, "caffe_pb2.py")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(tmp)
        with open(generated, "rb") as f:
            text = f.read()
    target = os.path.join(PROTO_DIR, "caffe_pb2.py")
    with open(target, "wb") as f:
        f.write(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
