"""compute_image_mean writes Caffe's mean file byte for byte and prints channel means."""

import os

from netdef.tools.main import main
from tests.shared import CONFORMANCE, need

IO = os.path.join(CONFORMANCE, "io")


def test_matches_caffe(tmp_path, capsys):
    db = need(os.path.join(IO, "lmdb_raw_resized"))
    out = tmp_path / "mean.binaryproto"
    assert main(["compute_image_mean", db, str(out), "-backend", "lmdb"]) == 0
    assert out.read_bytes() == open(os.path.join(IO, "mean_raw_resized.binaryproto"),
                                    "rb").read()
    text = capsys.readouterr().out
    assert "mean_value channel [0]:" in text and "mean_value channel [2]:" in text


def test_without_output_and_bad_db(tmp_path, capsys):
    assert main(["compute_image_mean", need(os.path.join(IO, "lmdb_mnist"))]) == 0
    assert "shape (1, 28, 28)" in capsys.readouterr().out
    assert main(["compute_image_mean", str(tmp_path)]) == 1
    assert "is not an LMDB" in capsys.readouterr().err
