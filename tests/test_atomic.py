"""atomic_write: the target holds the old content or the new, never a partial file."""

import os
import stat

import pytest

from netdef.atomic import atomic_write


def _leftovers(directory, name):
    return [n for n in os.listdir(directory) if n != name]


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    with atomic_write(path) as handle:
        handle.write(b"new content")
        assert path.read_bytes() == b"old"  # not visible before the block ends
    assert path.read_bytes() == b"new content"
    assert _leftovers(tmp_path, "a.bin") == []


def test_text_mode(tmp_path):
    path = tmp_path / "t.prototxt"
    with atomic_write(str(path), "w") as handle:
        handle.write('name: "Ünïcode"\n')
    assert path.read_text(encoding="utf-8") == 'name: "Ünïcode"\n'


def test_exception_leaves_target_untouched(tmp_path):
    path = tmp_path / "keep.bin"
    path.write_bytes(b"precious")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path) as handle:
            handle.write(b"half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"precious"
    assert _leftovers(tmp_path, "keep.bin") == []


def test_exception_creates_nothing(tmp_path):
    path = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_new_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "perm.bin"
        with atomic_write(path) as handle:
            handle.write(b"x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & 0o044 == 0o044  # readable by others, not 0600 like a temp file
    assert mode & 0o022 == 0


def test_existing_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "ro.bin"
    path.write_bytes(b"a")
    os.chmod(path, 0o640)
    with atomic_write(path) as handle:
        handle.write(b"b")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_rejects_other_modes(tmp_path):
    with pytest.raises(ValueError):
        with atomic_write(tmp_path / "x", "ab"):
            pass
