"""Crash-safe file writes: a reader sees the old file or the new one, never half of one.

Snapshots and upgraded protos are written to a temporary file beside the target,
flushed to disk, and renamed over it in one step.  A failure (or Ctrl-C) while
writing leaves the previous file untouched and no temporary file behind.
"""

import contextlib
import os
import tempfile


def _current_umask():
    """The process umask, read without changing it where the platform allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _target_mode(path):
    """Keep an existing file's permissions; give a new file what open() would."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_current_umask()


def _fsync_directory(directory):
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Yield a file open on a temporary file next to `path`; replace `path` on success.

    `handle.name` is the temporary file's path, for writers that want a file name.
    `mode` is "wb" (bytes) or "w" (text, UTF-8).  On an exception inside the block the
    temporary file is deleted, `path` keeps its old content and the exception propagates.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', not {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(
        dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        # Opened by name so that `handle.name` is the temporary path (h5py writes by name).
        if mode == "w":
            handle = open(tmp_path, "w", encoding="utf-8", newline="")
        else:
            handle = open(tmp_path, "wb")
    except BaseException:
        os.unlink(tmp_path)
        raise
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_path, _target_mode(path))
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        raise
    _fsync_directory(directory)
