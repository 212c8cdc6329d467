"""convert_imageset against the LMDBs the reference Caffe made from the same images.

Resizing reproduces OpenCV's INTER_LINEAR arithmetic, so raw records are identical byte
for byte (measured max pixel difference: 0); re-encoded PNGs differ only in their
compressed bytes, not in their pixels.
"""

import os
import shutil

import numpy as np
import pytest

from netdef.data.datum import datum_to_chw, parse_datum
from netdef.data.lmdb_io import LMDBReader
from netdef.tools.main import main
from tests.shared import CONFORMANCE, need

IO = os.path.join(CONFORMANCE, "io")


def records(path):
    with LMDBReader(str(path)) as reader:
        return list(reader)


@pytest.fixture
def in_images(monkeypatch):
    """Run where Caffe ran: inside images/, with list.txt one level up."""
    monkeypatch.chdir(need(os.path.join(IO, "images")))


@pytest.mark.parametrize("flags,reference", [
    (["--resize_height=8", "--resize_width=10", "--backend=lmdb"], "lmdb_raw_resized"),
    (["-gray", "--resize_height=6", "--resize_width=6"], "lmdb_gray_resized"),
])
def test_raw_records_identical_to_caffe(in_images, tmp_path, flags, reference):
    out = tmp_path / "db"
    assert main(["convert_imageset", "./", "../list.txt", str(out), "--quiet"] + flags) == 0
    assert records(out) == records(os.path.join(IO, reference))


def test_encoded_records_decode_to_caffe_pixels(in_images, tmp_path):
    out = tmp_path / "db"
    assert main(["convert_imageset", "./", "../list.txt", str(out), "--encoded",
                 "--encode_type=png", "--quiet"]) == 0
    mine, caffe = records(out), records(os.path.join(IO, "lmdb_encoded"))
    assert [k for k, _ in mine] == [k for k, _ in caffe]
    for (key, a), (_, b) in zip(mine, caffe):
        da, db = parse_datum(a), parse_datum(b)
        assert da.encoded and da.label == db.label
        if key.endswith(b".png"):
            assert a == b  # PNG files are stored as they are
        np.testing.assert_array_equal(datum_to_chw(da), datum_to_chw(db))


def test_unreadable_images_are_skipped_and_counted(tmp_path, capsys):
    images = need(os.path.join(IO, "images"))
    root = tmp_path / "imgs"
    shutil.copytree(images, root)
    (root / "broken.jpg").write_bytes(open(root / "a.jpg", "rb").read()[:200])
    lst = tmp_path / "list.txt"
    lst.write_text("a.jpg 0\nbroken.jpg 1\nnot-there.png 2\nc d.jpg 3\n")
    out = tmp_path / "db"
    assert main(["convert_imageset", str(root), str(lst), str(out), "--shuffle",
                 "--seed=1", "--check_size", "--resize_width=4", "--resize_height=4"]) == 0
    text = capsys.readouterr().out
    assert "wrote 2 images" in text and "skipped 2 image(s)" in text
    assert "list.txt:2" in text and "list.txt:3" in text
    keys = sorted(k.decode().split("_", 1)[1] for k, _ in records(out))
    assert keys == ["a.jpg", "c d.jpg"]


def test_list_errors_and_existing_db(tmp_path, capsys):
    images = need(os.path.join(IO, "images"))
    lst = tmp_path / "list.txt"
    lst.write_text("a.jpg 0\nb.png\n")
    assert main(["convert_imageset", images, str(lst), str(tmp_path / "db")]) == 1
    assert "list.txt:2: expected '<image path> <label>'" in capsys.readouterr().err
    (tmp_path / "db").mkdir()
    lst.write_text("a.jpg 0\n")
    assert main(["convert_imageset", images, str(lst), str(tmp_path / "db")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["convert_imageset", images, str(lst), str(tmp_path / "db"), "--overwrite",
                 "--quiet"]) == 0
