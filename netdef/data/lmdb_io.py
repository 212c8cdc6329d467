"""Key/value databases of Datum records: LMDB (and LevelDB when plyvel is installed).

Reading follows Caffe's DB cursor: records in key order, starting over at the first one
when the end is reached.  Writing follows Caffe's converters (commit every 1000 records,
the map grows by doubling when full) but lands atomically: records go to a temporary
directory next to the target, which is renamed into place once everything is committed,
so an interrupted conversion never leaves a half-written database under the real name.
"""

import contextlib
import os
import shutil
import threading

import lmdb
import numpy as np

from ..errors import DataError

LMDB, LEVELDB = "lmdb", "leveldb"
_LEVELDB_HINT = ("LevelDB is not supported, convert to LMDB (e.g. `netdef convert_imageset "
                 "--backend lmdb ...`) or install the optional 'plyvel' package")

# One Environment per database directory: LMDB must not be opened twice in a process.
_envs = {}
_envs_lock = threading.Lock()


def backend_name(backend):
    """'lmdb' / 'leveldb' from a string or DataParameter.DB value (0 LEVELDB, 1 LMDB)."""
    if isinstance(backend, str):
        name = backend.strip().lower()
    else:
        name = {0: LEVELDB, 1: LMDB}.get(int(backend), str(backend))
    if name not in (LMDB, LEVELDB):
        raise DataError(f"unknown database backend {backend!r} (known: lmdb, leveldb)")
    return name


def _check_lmdb_path(path):
    if not path:
        raise DataError("no database path given (data_param.source is empty)")
    if not os.path.exists(path):
        raise DataError(f"LMDB {path!r} does not exist")
    if not os.path.isdir(path):
        raise DataError(f"{path!r} is not an LMDB: an LMDB is a directory holding data.mdb")
    if not os.path.isfile(os.path.join(path, "data.mdb")):
        raise DataError(f"{path!r} is not an LMDB: it has no data.mdb file")


def _acquire_env(path):
    real = os.path.realpath(path)
    with _envs_lock:
        entry = _envs.get(real)
        if entry is None:
            try:
                env = lmdb.open(real, readonly=True, lock=False, readahead=True,
                                max_readers=512, subdir=True)
            except lmdb.Error as exc:
                raise DataError(f"{path!r} is not a readable LMDB: {exc}") from None
            try:
                _check_not_truncated(env, path)
            except DataError:
                env.close()
                raise
            entry = _envs[real] = [env, 0]
        entry[1] += 1
        return real, entry[0]


def _check_not_truncated(env, path):
    """A data.mdb shorter than its last used page would be read past its end through the
    memory map, which kills the process with SIGBUS; refuse it instead."""
    try:
        last, stat = env.info()["last_pgno"], env.stat()
    except lmdb.Error as exc:
        raise DataError(f"{path!r} is not a readable LMDB: {exc}") from None
    need = (last + 1) * stat["psize"]
    used = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
    if used > last + 1 or stat["depth"] > 64:
        # a damaged meta page: walking the tree it describes can read outside the file
        raise DataError(f"LMDB {path!r} is damaged: its header counts {used} pages in a "
                        f"file of {last + 1}")
    have = os.path.getsize(os.path.join(path, "data.mdb"))
    if have < need:
        raise DataError(f"LMDB {path!r} is truncated: data.mdb has {have} bytes but its "
                        f"pages reach to byte {need} (an interrupted copy or write?)")


@contextlib.contextmanager
def _damage_is_data_error(path):
    """Turn LMDB's reports of damaged pages into DataError naming the database."""
    try:
        yield
    except lmdb.Error as exc:
        raise DataError(f"LMDB {path!r} is damaged: {exc}") from None


def _map_bounds(real):
    """(first, end) address of data.mdb's bytes in this process's memory map, or None
    where the map cannot be read (then records are copied unchecked)."""
    data = os.path.join(real, "data.mdb")
    try:
        size = os.path.getsize(data)
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].strip() == data and int(parts[2], 16) == 0:
                    start = int(parts[0].split("-")[0], 16)
                    return start, start + size
    except (OSError, ValueError):
        pass
    return None


def _release_env(real):
    with _envs_lock:
        entry = _envs.get(real)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _envs[real]
            entry[0].close()


class LMDBReader:
    """A cursor over an LMDB of Datum records that wraps around at the end.

    ``next()`` returns (key, value) and advances.  Each reader has its own cursor, so the
    TRAIN and TEST nets reading one database do not disturb each other.  The read
    transaction is opened lazily in the thread that first reads (LMDB transactions belong
    to a thread).
    """

    def __init__(self, path):
        _check_lmdb_path(path)
        self.path = path
        self._real, self._env = _acquire_env(path)
        self._bounds = _map_bounds(self._real)
        self._txn = None
        self._cursor = None
        self.entries = self._env.stat()["entries"]
        if self.entries == 0:
            self.close()
            raise DataError(f"LMDB {path!r} is empty: it holds no records")

    def __len__(self):
        return self.entries

    def first(self):
        """The first (key, value) without moving this reader's cursor."""
        with _damage_is_data_error(self.path), self._env.begin(buffers=True) as txn:
            cur = txn.cursor()
            if not cur.first():
                raise DataError(f"LMDB {self.path!r} is empty: it holds no records")
            return self._copy(cur.key()), self._copy(cur.value())

    def _open_cursor(self):
        self._txn = self._env.begin(buffers=True)
        self._cursor = self._txn.cursor()
        with _damage_is_data_error(self.path):
            found = self._cursor.first()
        if not found:
            raise DataError(f"LMDB {self.path!r} is empty: it holds no records")

    def next(self):
        """The record under the cursor; then step, restarting from the first at the end."""
        if self._cursor is None:
            self._open_cursor()
        cur = self._cursor
        with _damage_is_data_error(self.path):
            item = self._copy(cur.key()), self._copy(cur.value())
            if not cur.next():
                cur.first()
        return item

    def skip(self, n):
        """Step over ``n`` records without reading them (a data shard skips the others')."""
        if self._cursor is None:
            self._open_cursor()
        cur = self._cursor
        with _damage_is_data_error(self.path):
            for _ in range(int(n)):
                if not cur.next():
                    cur.first()

    def seek(self, index):
        """Put the cursor on record ``index`` (counted from the first, modulo the count),
        so that ``next()`` returns it; LMDB has no positional lookup, so this walks."""
        if self._txn is not None:
            try:
                self._txn.abort()
            except lmdb.Error:
                pass
            self._txn = self._cursor = None
        self._open_cursor()
        cur = self._cursor
        with _damage_is_data_error(self.path):
            for _ in range(int(index) % self.entries):
                if not cur.next():
                    cur.first()

    def __iter__(self):
        """One pass over every record in key order (independent of the cursor)."""
        with _damage_is_data_error(self.path), self._env.begin(buffers=True) as txn:
            for key, value in txn.cursor():
                yield self._copy(key), self._copy(value)

    def _copy(self, buf):
        """bytes of a buffer into the memory map, once it is known to lie inside the file:
        a damaged node can claim data past the end of data.mdb, and touching that through
        the map would kill the process with SIGBUS."""
        if self._bounds is not None and len(buf):
            start = np.frombuffer(buf, np.uint8).ctypes.data
            if start < self._bounds[0] or start + len(buf) > self._bounds[1]:
                raise DataError(f"LMDB {self.path!r} is damaged: a record points outside "
                                "data.mdb")
        return bytes(buf)

    def close(self):
        if self._txn is not None:
            try:
                self._txn.abort()
            except lmdb.Error:
                pass
            self._txn = self._cursor = None
        if self._env is not None:
            _release_env(self._real)
            self._env = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to release
            pass


class LevelDBReader:
    """The same interface over LevelDB through the optional ``plyvel`` package."""

    def __init__(self, path):
        try:
            import plyvel
        except ImportError:
            raise DataError(f"{path!r}: {_LEVELDB_HINT}") from None
        if not os.path.isdir(path):
            raise DataError(f"LevelDB {path!r} does not exist")
        try:
            self._db = plyvel.DB(path, create_if_missing=False)
        except Exception as exc:  # plyvel raises its own error types
            raise DataError(f"{path!r} is not a readable LevelDB: {exc}") from None
        self.path = path
        self._it = None
        self.entries = None  # counting a LevelDB means reading all of it
        if next(self._db.iterator(include_value=False), None) is None:
            self.close()
            raise DataError(f"LevelDB {path!r} is empty: it holds no records")

    def __len__(self):
        if self.entries is None:
            self.entries = sum(1 for _ in self._db.iterator(include_value=False))
        return self.entries

    def first(self):
        return next(self._db.iterator())

    def next(self):
        if self._it is None:
            self._it = self._db.iterator()
        try:
            return next(self._it)
        except StopIteration:
            self._it = self._db.iterator()
            return next(self._it)

    def skip(self, n):
        for _ in range(int(n)):
            self.next()

    def seek(self, index):
        """Put the cursor on record ``index`` (modulo the count): ``next()`` returns it."""
        self._it = self._db.iterator()
        for _ in range(int(index) % len(self)):
            next(self._it)

    def __iter__(self):
        yield from self._db.iterator()

    def close(self):
        if getattr(self, "_db", None) is not None:
            self._db.close()
            self._db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_reader(path, backend=LMDB):
    """A wrapping cursor reader for ``backend`` ('lmdb' or 'leveldb')."""
    if backend_name(backend) == LEVELDB:
        return LevelDBReader(path)
    return LMDBReader(path)


class LMDBWriter:
    """Write records into a new LMDB at ``path``, atomically.

    Use as a context manager; ``put(key, value)`` buffers, every ``commit_every`` records
    are committed in one transaction.  On success the temporary directory is renamed to
    ``path``; on an exception it is removed.  An existing ``path`` is an error unless
    ``overwrite`` (then it is replaced only once the new database is complete).
    """

    def __init__(self, path, overwrite=False, commit_every=1000, map_size=10 << 20):
        if not path:
            raise DataError("no output database path given")
        self.path = os.path.normpath(path)
        if os.path.exists(self.path) and not overwrite:
            raise DataError(f"{path!r} already exists; remove it or choose another name "
                            "(Caffe's converters refuse to write into an existing database)")
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise DataError(f"cannot create {path!r}: directory {parent!r} does not exist")
        self.overwrite = overwrite
        self.commit_every = int(commit_every)
        self.count = 0
        self._pending = []
        self._tmp = os.path.join(parent, f".{os.path.basename(self.path)}.tmp-{os.getpid()}")
        if os.path.exists(self._tmp):
            shutil.rmtree(self._tmp)
        try:
            self._env = lmdb.open(self._tmp, map_size=map_size, subdir=True, lock=True,
                                  sync=False, metasync=False)
        except lmdb.Error as exc:
            raise DataError(f"cannot create LMDB next to {path!r}: {exc}") from None

    def put(self, key, value):
        if isinstance(key, str):
            key = key.encode("utf-8", "surrogateescape")
        self._pending.append((key, value))
        self.count += 1
        if len(self._pending) >= self.commit_every:
            self.commit()

    def commit(self):
        """Write the buffered records in one transaction, doubling the map when full."""
        if not self._pending:
            return
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
        self._pending.clear()

    def close(self):
        """Commit what is left, then move the database into place."""
        self.commit()
        self._env.sync(True)
        self._env.close()
        if os.path.exists(self.path):
            shutil.rmtree(self.path) if os.path.isdir(self.path) else os.remove(self.path)
        os.rename(self._tmp, self.path)

    def abort(self):
        try:
            self._env.close()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def open_writer(path, backend=LMDB, overwrite=False):
    """A writer for a new database; LevelDB needs plyvel."""
    if backend_name(backend) == LEVELDB:
        return LevelDBWriter(path, overwrite=overwrite)
    return LMDBWriter(path, overwrite=overwrite)


class LevelDBWriter:
    """Minimal LevelDB writer (plyvel), with the same interface; not atomic."""

    def __init__(self, path, overwrite=False, commit_every=1000):
        try:
            import plyvel
        except ImportError:
            raise DataError(f"{path!r}: {_LEVELDB_HINT}") from None
        if os.path.exists(path):
            if not overwrite:
                raise DataError(f"{path!r} already exists; remove it or choose another name")
            shutil.rmtree(path)
        self.path = path
        self.count = 0
        self.commit_every = commit_every
        self._db = plyvel.DB(path, create_if_missing=True, error_if_exists=True)
        self._batch = self._db.write_batch()

    def put(self, key, value):
        if isinstance(key, str):
            key = key.encode("utf-8", "surrogateescape")
        self._batch.put(key, value)
        self.count += 1
        if self.count % self.commit_every == 0:
            self.commit()

    def commit(self):
        self._batch.write()
        self._batch = self._db.write_batch()

    def close(self):
        self.commit()
        self._db.close()

    def abort(self):
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
