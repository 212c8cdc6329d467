"""LMDB reading (Caffe's cursor semantics) and atomic writing."""

import os

import lmdb
import numpy as np
import pytest

from netdef.data.lmdb_io import LMDBReader, LMDBWriter, backend_name, open_reader
from netdef.errors import DataError
from tests.shared import CONFORMANCE, need

IO = os.path.join(CONFORMANCE, "io")


def test_reads_caffe_lmdb_in_key_order_and_wraps_around():
    with LMDBReader(need(os.path.join(IO, "lmdb_raw_resized"))) as r:
        assert len(r) == 6
        keys = [r.next()[0] for _ in range(8)]
        assert keys[:3] == [b"00000000_a.jpg", b"00000001_b.png", b"00000002_c d.jpg"]
        assert keys[6:] == keys[:2]
        assert r.first()[0] == b"00000000_a.jpg"
        assert [k for k, _ in r] == keys[:6]


def test_two_readers_have_their_own_cursors():
    path = need(os.path.join(IO, "lmdb_mnist"))
    a, b = LMDBReader(path), LMDBReader(path)
    a.skip(3)
    assert a.next()[0] == b"00000003"
    assert b.next()[0] == b"00000000"
    a.close()
    assert b.next()[0] == b"00000001"
    b.close()


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        LMDBReader(str(tmp_path / "nope"))
    f = tmp_path / "file.txt"
    f.write_text("hello")
    with pytest.raises(DataError, match="is not an LMDB"):
        LMDBReader(str(f))
    (tmp_path / "dir").mkdir()
    with pytest.raises(DataError, match="no data.mdb"):
        LMDBReader(str(tmp_path / "dir"))
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "data.mdb").write_bytes(b"x" * 8192)
    with pytest.raises(DataError, match="not a readable LMDB"):
        LMDBReader(str(tmp_path / "fake"))
    with pytest.raises(DataError, match="source is empty"):
        LMDBReader("")


def test_empty_lmdb_is_an_error(tmp_path):
    with LMDBWriter(str(tmp_path / "empty")):
        pass
    with pytest.raises(DataError, match="is empty"):
        LMDBReader(str(tmp_path / "empty"))


def test_leveldb_without_plyvel_says_convert(tmp_path):
    try:
        import plyvel  # noqa: F401
        pytest.skip("plyvel is installed")
    except ImportError:
        pass
    with pytest.raises(DataError, match="LevelDB is not supported, convert to LMDB"):
        open_reader(str(tmp_path), "leveldb")
    assert backend_name(0) == "leveldb" and backend_name(1) == "lmdb"


def test_writer_commits_in_batches_and_grows_the_map(tmp_path):
    path = str(tmp_path / "db")
    value = bytes(np.random.default_rng(0).integers(0, 256, 40000, dtype=np.uint8))
    with LMDBWriter(path, commit_every=7, map_size=1 << 16) as w:
        for i in range(30):
            w.put(f"{i:08d}", value)
        assert not os.path.exists(path)  # written beside the target, renamed at the end
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.stat()["entries"] == 30
        assert txn.get(b"00000029") == value
    env.close()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_writer_refuses_existing_and_cleans_up_on_error(tmp_path):
    path = tmp_path / "db"
    path.mkdir()
    with pytest.raises(DataError, match="already exists"):
        LMDBWriter(str(path))
    with pytest.raises(RuntimeError):
        with LMDBWriter(str(path), overwrite=True) as w:
            w.put("a", b"1")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == ["db"] and not os.listdir(path)
    with LMDBWriter(str(path), overwrite=True) as w:
        w.put("a", b"1")
    with LMDBReader(str(path)) as r:
        assert r.next() == (b"a", b"1")
