"""HDF5 lists and row cursors with Caffe's semantics, on Caffe's own test files."""

import os

import h5py
import numpy as np
import pytest

from netdef.data.hdf5_io import (
    HDF5Appender,
    HDF5Source,
    convert_to_hdf5,
    load_hdf5_arrays,
    read_hdf5_list,
)
from netdef.errors import DataError
from tests.shared import DATA, need

TEST_DATA = os.path.join(DATA, "test_data")


@pytest.fixture
def caffe_root(tmp_path, monkeypatch):
    """A folder where Caffe's list paths (src/caffe/test/test_data/...) resolve."""
    need(TEST_DATA)
    (tmp_path / "src" / "caffe" / "test").mkdir(parents=True)
    os.symlink(TEST_DATA, tmp_path / "src" / "caffe" / "test" / "test_data")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_caffe_hdf5_sequence(caffe_root):
    """Caffe's test_hdf5data_layer: batch 5 over two 10-row files (labels 1-indexed)."""
    src = HDF5Source(os.path.join(TEST_DATA, "sample_data_list.txt"),
                     ["data", "label", "label2"], 5, False, np.random.default_rng(0))
    assert src.top_shapes() == [(5, 8, 6, 5), (5, 1), (5, 1)]
    data = np.empty((5, 8, 6, 5), np.float32)
    label = np.empty((5, 1), np.float32)
    label2 = np.empty((5, 1), np.float32)
    for it in range(10):
        src.fill([data, label, label2])
        label_offset = 1 + (0 if it % 2 == 0 else 5)
        np.testing.assert_array_equal(label[:, 0], label_offset + np.arange(5))
        np.testing.assert_array_equal(label2[:, 0], label_offset + 1 + np.arange(5))
        file_offset = 0 if it % 4 < 2 else 2400
        data_offset = 0 if it % 2 == 0 else 5 * 240
        np.testing.assert_array_equal(data.ravel(), file_offset + data_offset + np.arange(1200))


def test_paths_relative_to_the_list_file(tmp_path):
    need(TEST_DATA)
    lst = tmp_path / "list.txt"
    os.symlink(os.path.join(TEST_DATA, "sample_data.h5"), tmp_path / "a.h5")
    lst.write_text("a.h5\n")
    assert read_hdf5_list(str(lst)) == [str(tmp_path / "a.h5")]
    lst.write_text("a.h5\nmissing.h5\n")
    with pytest.raises(DataError, match=r"list.txt:2: HDF5 file 'missing.h5' not found"):
        read_hdf5_list(str(lst))
    lst.write_text("\n")
    with pytest.raises(DataError, match="at least one file"):
        read_hdf5_list(str(lst))


def test_missing_dataset_names_file_and_dataset():
    path = need(os.path.join(TEST_DATA, "sample_data.h5"))
    with pytest.raises(DataError, match=r"sample_data.h5' has no dataset 'labels'.*label2"):
        load_hdf5_arrays(path, ["data", "labels"])
    arrays = load_hdf5_arrays(os.path.join(TEST_DATA, "sample_data_2_gzip.h5"),
                              ["data", "label"])
    assert arrays[1].dtype == np.float32 and arrays[1][0, 0] == 1  # uint8 read as float


def test_shuffle_visits_every_row_once_per_pass(tmp_path):
    path = str(tmp_path / "x.h5")
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(12, dtype=np.float32).reshape(12, 1)
    lst = tmp_path / "l.txt"
    lst.write_text(path + "\n")
    src = HDF5Source(str(lst), ["data"], 4, True, np.random.default_rng(0))
    out = np.empty((4, 1), np.float32)
    rows = []
    for _ in range(3):
        src.fill([out])
        rows.extend(out[:, 0].tolist())
    assert sorted(rows) == list(range(12)) and rows != list(range(12))


def test_convert_and_append(tmp_path):
    data = np.random.default_rng(0).normal(size=(10, 2, 3)).astype(np.float32)
    label = np.arange(10)
    files, lst = convert_to_hdf5(str(tmp_path / "t.h5"), {"data": data, "label": label},
                                 rows_per_file=4, compression=4, chunk_rows=2)
    assert [os.path.basename(f) for f in files] == ["t_0.h5", "t_1.h5", "t_2.h5"]
    src = HDF5Source(lst, ["data", "label"], 10, False, np.random.default_rng(0))
    d, l_ = np.empty((10, 2, 3), np.float32), np.empty((10,), np.float32)
    src.fill([d, l_])
    np.testing.assert_array_equal(d, data)
    np.testing.assert_array_equal(l_, label)
    with h5py.File(files[0]) as f:
        assert f["data"].compression == "gzip" and f["data"].chunks == (2, 2, 3)
    with pytest.raises(DataError, match="already exists"):
        convert_to_hdf5(str(tmp_path / "t.h5"), {"data": data}, rows_per_file=4)
    out = HDF5Appender(str(tmp_path / "o.h5"), ["data", "label"])
    out.append([data[:3], label[:3]])
    out.append([data[3:5], label[3:5]])
    out.close()
    with h5py.File(tmp_path / "o.h5") as f:
        np.testing.assert_array_equal(f["data"][()], data[:5])
        assert f["label"].dtype == np.float32
