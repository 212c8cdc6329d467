"""HDF5 datasets for the HDF5Data / HDF5Output layers and the convert_hdf5 tool.

HDF5Data reads a text file listing .h5 files; each file holds one dataset per top blob,
named like the top, with the rows on axis 0.  As in Caffe, a listed path is relative to
the current directory; when nothing is there, it is also looked up relative to the list
file.  Batches run row by row across file boundaries: the next file is loaded when a file
runs out, and the list starts over after the last one (reshuffled when ``shuffle``).
"""

import os

import h5py
import numpy as np

from ..errors import DataError


def read_hdf5_list(source):
    """Resolved paths of the HDF5 files named in ``source`` (one per line)."""
    try:
        with open(source, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read HDF5 file list {source!r}: {exc.strerror or exc}") \
            from None
    base = os.path.dirname(os.path.abspath(source))
    files = []
    for number, line in enumerate(lines, 1):
        for name in line.split():
            if os.path.exists(name):
                files.append(name)
            elif not os.path.isabs(name) and os.path.exists(os.path.join(base, name)):
                files.append(os.path.join(base, name))
            else:
                raise DataError(f"{source}:{number}: HDF5 file {name!r} not found (looked "
                                f"relative to the current directory and to {base!r})")
    if not files:
        raise DataError(f"HDF5 file list {source!r} must name at least one file")
    return files


def load_hdf5_arrays(path, names):
    """float32 arrays of the datasets ``names`` in ``path``, checked to have equal rows."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"cannot open HDF5 file {path!r}: {exc}") from None
    try:
        arrays = _read_datasets(f, path, names)
    except DataError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        # h5py reports damaged internals (bad headers, checksums) as any of these
        raise DataError(f"HDF5 file {path!r} is damaged: {exc}") from None
    rows = arrays[0].shape[0] if arrays else 0
    for name, arr in zip(names, arrays):
        if arr.shape[0] != rows:
            raise DataError(f"HDF5 file {path!r}: dataset {name!r} has {arr.shape[0]} rows, "
                            f"{names[0]!r} has {rows}; every dataset needs the same rows")
    if rows == 0:
        raise DataError(f"HDF5 file {path!r}: dataset {names[0]!r} has no rows")
    return arrays


def _read_datasets(f, path, names):
    arrays = []
    with f:
        for name in names:
            if name not in f or not isinstance(f[name], h5py.Dataset):
                have = ", ".join(sorted(k for k in f if isinstance(f[k], h5py.Dataset)))
                raise DataError(f"HDF5 file {path!r} has no dataset {name!r} (it has: "
                                f"{have or 'none'}); datasets are named after the tops")
            ds = f[name]
            if ds.dtype.kind not in "fiub":
                raise DataError(f"HDF5 dataset {name!r} in {path!r} has type {ds.dtype}; "
                                "only integer and float data can be read")
            if ds.ndim < 1:
                raise DataError(f"HDF5 dataset {name!r} in {path!r} is a scalar; it needs "
                                "at least one axis (rows)")
            arrays.append(np.ascontiguousarray(ds[()], dtype=np.float32))
    return arrays


class HDF5Source:
    """Row cursor over a list of HDF5 files (Caffe's HDF5DataLayer Next/LoadHDF5FileData).

    With ``shuffle``, the file order of pass p and the row order of the i-th file of that
    pass are drawn from generators derived from (seed, p[, i]) -- the same distribution as
    Caffe's reshuffles, but a pure function of the position, so ``seek(k)`` can put the
    cursor where batch k starts (resuming a run) without replaying the batches before it.
    ``shard`` (rank, size): take every size-th row of that stream, from row ``rank``
    (data-parallel training, see ``netdef.data.shard``).
    """

    def __init__(self, source, names, batch_size, shuffle, rng, shard=(0, 1)):
        self.source = source
        self.names = list(names)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.rng = rng
        self.seed = int(rng.integers(2 ** 63)) if self.shuffle else 0
        self.files = read_hdf5_list(source)
        self._rows_per_file = None
        self.pass_index = 0
        self.file_order = self._order_of_files(0)
        self.current_file = 0
        self._load(self.files[self.file_order[0]])
        self.row_shapes = [a.shape[1:] for a in self.arrays]
        self.rank, self.ranks = int(shard[0]), int(shard[1])
        for _ in range(self.rank):
            self._next()

    def _order_of_files(self, pass_index):
        if self.shuffle and len(self.files) > 1:
            return np.random.default_rng([self.seed, 0, pass_index]).permutation(len(self.files))
        return np.arange(len(self.files))

    def _order_of_rows(self, rows):
        if self.shuffle:
            stream = np.random.default_rng([self.seed, 1, self.pass_index, self.current_file])
            return stream.permutation(rows)
        return np.arange(rows)

    def _load(self, path):
        if getattr(self, "path", None) != path:
            self.arrays = load_hdf5_arrays(path, self.names)
            self.path = path
        if hasattr(self, "row_shapes"):
            for name, arr, want in zip(self.names, self.arrays, self.row_shapes):
                if arr.shape[1:] != want:
                    raise DataError(f"HDF5 file {path!r}: dataset {name!r} rows have shape "
                                    f"{arr.shape[1:]}, earlier files had {want}")
        self.row_order = self._order_of_rows(self.arrays[0].shape[0])
        self.current_row = 0

    def top_shapes(self):
        return [(self.batch_size,) + shape for shape in self.row_shapes]

    def _next(self):
        self.current_row += 1
        if self.current_row == self.arrays[0].shape[0]:
            if len(self.files) > 1:
                self.current_file += 1
                if self.current_file == len(self.files):
                    self.current_file = 0
                    self.pass_index += 1
                    self.file_order = self._order_of_files(self.pass_index)
                self._load(self.files[self.file_order[self.current_file]])
            else:
                self.current_row = 0
                self.pass_index += 1
                self.row_order = self._order_of_rows(self.arrays[0].shape[0])

    def fill(self, outputs):
        """Copy the next ``batch_size`` rows into each output array (batch, ...)."""
        for i in range(self.batch_size):
            row = self.row_order[self.current_row]
            for out, arr in zip(outputs, self.arrays):
                out[i] = arr[row]
            for _ in range(self.ranks):
                self._next()

    def rows_per_file(self):
        """Row count of each listed file (read from the headers, once)."""
        if self._rows_per_file is None:
            counts = []
            for path in self.files:
                if path == self.path:
                    counts.append(self.arrays[0].shape[0])
                    continue
                try:
                    with h5py.File(path, "r") as f:
                        counts.append(int(f[self.names[0]].shape[0]))
                except (OSError, KeyError):
                    counts.append(load_hdf5_arrays(path, self.names)[0].shape[0])
            self._rows_per_file = counts
        return self._rows_per_file

    def seek(self, batch_index):
        """Continue as if ``batch_index`` batches had been read since the start."""
        rows = self.rows_per_file()
        start = int(batch_index) * self.batch_size * self.ranks + self.rank
        self.pass_index, offset = divmod(start, sum(rows))
        self.file_order = self._order_of_files(self.pass_index)
        position = 0
        while offset >= rows[self.file_order[position]]:
            offset -= rows[self.file_order[position]]
            position += 1
        self.current_file = position
        self._load(self.files[self.file_order[position]])
        self.current_row = offset


# -- writing -------------------------------------------------------------------------------
def write_hdf5(path, arrays, compression=None, chunk_rows=None):
    """Write {name: array} as float32 datasets (chunked by rows; gzip level or None)."""
    try:
        f = h5py.File(path, "w")
    except OSError as exc:
        raise DataError(f"cannot create HDF5 file {path!r}: {exc}") from None
    with f:
        for name, arr in arrays.items():
            arr = np.asarray(arr, np.float32)
            if arr.ndim == 0:
                raise DataError(f"dataset {name!r} is a scalar; it needs rows")
            options = {}
            if chunk_rows or compression is not None:
                rows = max(1, min(arr.shape[0], int(chunk_rows or 64)))
                options["chunks"] = (rows,) + arr.shape[1:]
            if compression is not None:
                options["compression"] = "gzip"
                options["compression_opts"] = int(compression)
            f.create_dataset(name, data=arr, **options)


def write_list_file(path, files):
    with open(path, "w", encoding="utf-8") as f:
        for name in files:
            f.write(f"{name}\n")


class HDF5Appender:
    """HDF5Output's file: float32 datasets that grow along axis 0 with each forward.

    Caffe writes the datasets at the first forward and fails on the second; appending
    keeps every batch instead.
    """

    def __init__(self, path, names):
        if not path:
            raise DataError("hdf5_output_param.file_name is empty")
        try:
            self.file = h5py.File(path, "w")
        except OSError as exc:
            raise DataError(f"cannot create HDF5 file {path!r}: {exc}") from None
        self.path = path
        self.names = list(names)

    def append(self, arrays):
        for name, arr in zip(self.names, arrays):
            arr = np.asarray(arr, np.float32)
            if name not in self.file:
                self.file.create_dataset(name, data=arr, maxshape=(None,) + arr.shape[1:],
                                         chunks=True)
                continue
            ds = self.file[name]
            if ds.shape[1:] != arr.shape[1:]:
                raise DataError(f"HDF5 output {self.path!r}: '{name}' rows changed shape from "
                                f"{ds.shape[1:]} to {arr.shape[1:]}")
            n = ds.shape[0]
            ds.resize(n + arr.shape[0], axis=0)
            ds[n:] = arr
        self.file.flush()

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


def convert_to_hdf5(output, arrays, rows_per_file=0, compression=None, chunk_rows=None,
                    list_file=None, overwrite=False):
    """Write {name: array} (equal rows) into one HDF5 file, or several of
    ``rows_per_file`` rows each (``<output stem>_<k>.h5``), plus the list file HDF5Data
    reads (absolute paths, one per line; default ``<output stem>.txt``).

    Returns (files, list_file).
    """
    names = list(arrays)
    if not names:
        raise DataError("nothing to write: give at least one array")
    rows = {name: np.asarray(arr).shape[0] if np.ndim(arr) else 0 for name, arr in
            arrays.items()}
    n = rows[names[0]]
    for name in names:
        if rows[name] != n:
            raise DataError(f"'{name}' has {rows[name]} rows, '{names[0]}' has {n}; every "
                            "array needs the same number of rows")
    if n == 0:
        raise DataError("the arrays hold no rows")
    stem, ext = os.path.splitext(output)
    ext = ext or ".h5"
    per = int(rows_per_file) if rows_per_file and rows_per_file > 0 else n
    parts = [(k, s, min(s + per, n)) for k, s in enumerate(range(0, n, per))]
    files = [output if len(parts) == 1 else f"{stem}_{k}{ext}" for k, _, _ in parts]
    list_file = list_file or stem + ".txt"
    for path in files + [list_file]:
        if os.path.exists(path) and not overwrite:
            raise DataError(f"{path!r} already exists; remove it or pass --overwrite")
    for path, (_, s, e) in zip(files, parts):
        write_hdf5(path, {name: np.asarray(arrays[name])[s:e] for name in names},
                   compression=compression, chunk_rows=chunk_rows)
    write_list_file(list_file, [os.path.abspath(p) for p in files])
    return files, list_file
