"""convert_hdf5 writes files the HDF5Data layer reads back."""

import os

import h5py
import numpy as np

from netdef.data.hdf5_io import HDF5Source
from netdef.tools.main import main
from tests.shared import CONFORMANCE, need


def test_npy_arrays_round_trip(tmp_path, capsys):
    data = np.random.default_rng(0).normal(size=(7, 2, 3, 3)).astype(np.float32)
    label = np.arange(7)
    np.save(tmp_path / "x.npy", data)
    np.save(tmp_path / "y.npy", label)
    out = tmp_path / "train.h5"
    assert main(["convert_hdf5", str(out), "--data", str(tmp_path / "x.npy"), "--label",
                 str(tmp_path / "y.npy"), "--gzip", "4", "--rows_per_file", "5"]) == 0
    assert "list file for hdf5_data_param.source" in capsys.readouterr().out
    lst = tmp_path / "train.txt"
    assert lst.read_text().splitlines() == [str(tmp_path / "train_0.h5"),
                                            str(tmp_path / "train_1.h5")]
    with h5py.File(tmp_path / "train_0.h5") as f:
        assert f["data"].compression == "gzip" and f["label"].dtype == np.float32
    src = HDF5Source(str(lst), ["data", "label"], 7, False, np.random.default_rng(0))
    d, l_ = np.empty((7, 2, 3, 3), np.float32), np.empty(7, np.float32)
    src.fill([d, l_])
    np.testing.assert_array_equal(d, data)
    np.testing.assert_array_equal(l_, label)


def test_image_list(tmp_path):
    io_dir = need(os.path.join(CONFORMANCE, "io"))
    out = tmp_path / "imgs.h5"
    assert main(["convert_hdf5", str(out), "--images", os.path.join(io_dir, "list.txt"),
                 "--root_folder", os.path.join(io_dir, "images"), "--resize_height", "8",
                 "--resize_width", "10", "--scale", "0.00390625"]) == 0
    with h5py.File(out) as f:
        assert f["data"].shape == (6, 3, 8, 10) and f["label"][()].tolist() == [0, 1, 2, 0, 1, 2]
        assert 0 <= f["data"][()].min() and f["data"][()].max() <= 1


def test_errors(tmp_path, capsys):
    assert main(["convert_hdf5", str(tmp_path / "o.h5"), "--data",
                 str(tmp_path / "none.npy")]) == 1
    assert "cannot read array" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    np.save(tmp_path / "y.npy", np.zeros(4))
    assert main(["convert_hdf5", str(tmp_path / "o.h5"), "--data", str(tmp_path / "x.npy"),
                 "--label", str(tmp_path / "y.npy")]) == 1
    assert "same number of rows" in capsys.readouterr().err
    assert main(["convert_hdf5", str(tmp_path / "o.h5"), "--data", str(tmp_path / "x.npy"),
                 "--gzip", "12"]) == 2
