"""convert_mnist_data writes the records Caffe's converter wrote, byte for byte."""

import gzip
import os

import pytest

from netdef.data.lmdb_io import LMDBReader
from netdef.tools.main import main
from tests.shared import CONFORMANCE, need

IO = os.path.join(CONFORMANCE, "io")


def records(path):
    with LMDBReader(str(path)) as reader:
        return list(reader)


def test_same_records_as_caffe(tmp_path, capsys):
    images = need(os.path.join(IO, "tiny-images-idx3-ubyte"))
    labels = os.path.join(IO, "tiny-labels-idx1-ubyte")
    assert main(["convert_mnist_data", images, labels, str(tmp_path / "db")]) == 0
    assert "wrote 5 records" in capsys.readouterr().out
    assert records(tmp_path / "db") == records(os.path.join(IO, "lmdb_mnist"))


def test_gzipped_inputs_and_caffe_flag_spelling(tmp_path):
    images = need(os.path.join(IO, "tiny-images-idx3-ubyte"))
    labels = os.path.join(IO, "tiny-labels-idx1-ubyte")
    for src in (images, labels):
        with open(src, "rb") as f, gzip.open(tmp_path / (os.path.basename(src) + ".gz"),
                                             "wb") as g:
            g.write(f.read())
    assert main(["convert_mnist_data", str(tmp_path / "tiny-images-idx3-ubyte.gz"),
                 str(tmp_path / "tiny-labels-idx1-ubyte.gz"), str(tmp_path / "db"),
                 "-backend", "lmdb"]) == 0
    assert records(tmp_path / "db") == records(os.path.join(IO, "lmdb_mnist"))


def test_clear_errors(tmp_path, capsys):
    images = need(os.path.join(IO, "tiny-images-idx3-ubyte"))
    labels = os.path.join(IO, "tiny-labels-idx1-ubyte")
    assert main(["convert_mnist_data", labels, images, str(tmp_path / "db")]) == 1
    assert "incorrect image file magic" in capsys.readouterr().err
    truncated = tmp_path / "short"
    truncated.write_bytes(open(images, "rb").read()[:100])
    assert main(["convert_mnist_data", str(truncated), labels, str(tmp_path / "db")]) == 1
    assert "is truncated" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    assert main(["convert_mnist_data", images, labels, str(tmp_path / "exists")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert not os.listdir(tmp_path / "exists")


@pytest.mark.parametrize("name", ["missing-file"])
def test_missing_input(tmp_path, capsys, name):
    labels = need(os.path.join(IO, "tiny-labels-idx1-ubyte"))
    assert main(["convert_mnist_data", str(tmp_path / name), labels, str(tmp_path / "db")]) == 1
    assert "unable to open file" in capsys.readouterr().err
