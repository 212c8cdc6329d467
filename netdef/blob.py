"""Blob: the n-d float32 array pair (data, diff) that flows between layers.

A blob keeps a flat buffer with a capacity so that reshaping to a smaller or equal
count never reallocates (the hot path allocates nothing).  ``data`` and ``diff`` are
C-contiguous views of that buffer in the current shape.  ``share_data``/``share_diff``
make two blobs use one buffer (weight sharing; test nets reading train weights).
"""

import numpy as np

from .errors import ShapeError
from .memory import check_allocation

MAX_BLOB_AXES = 32


class Blob:
    __slots__ = ("_shape", "_count", "_data_buf", "_diff_buf", "_data", "_diff", "name")

    def __init__(self, shape=(), name=""):
        self.name = name
        self._shape = ()
        self._count = 1
        self._data_buf = np.zeros(0, np.float32)
        self._diff_buf = np.zeros(0, np.float32)
        self._data = None
        self._diff = None
        self.reshape(shape)

    # -- shape ---------------------------------------------------------------
    def reshape(self, *shape):
        """Set a new shape; grows the buffers only when the count exceeds capacity."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        shape = tuple(int(d) for d in shape)
        if len(shape) > MAX_BLOB_AXES:
            raise ShapeError(f"blob '{self.name}': {len(shape)} axes exceed the limit of "
                             f"{MAX_BLOB_AXES}")
        if any(d < 0 for d in shape):
            raise ShapeError(f"blob '{self.name}': negative dimension in shape {shape}")
        count = 1
        for d in shape:
            count *= d
        if count > self._data_buf.size:
            check_allocation(2 * 4 * count, f"blob '{self.name}' of shape {shape} (data + diff)")
            self._data_buf = np.zeros(count, np.float32)
            self._diff_buf = np.zeros(count, np.float32)
        self._shape = shape
        self._count = count
        self._refresh()

    def reshape_like(self, other):
        self.reshape(other.shape)

    def _refresh(self):
        self._data = self._data_buf[: self._count].reshape(self._shape)
        self._diff = self._diff_buf[: self._count].reshape(self._shape)

    @property
    def shape(self):
        return self._shape

    @property
    def num_axes(self):
        return len(self._shape)

    @property
    def count(self):
        return self._count

    def count_range(self, start, end=None):
        """Product of the dimensions in [start, end)."""
        end = len(self._shape) if end is None else end
        n = 1
        for d in self._shape[start:end]:
            n *= d
        return n

    def canonical_axis_index(self, axis):
        """Caffe's CanonicalAxisIndex: negative axes count from the end."""
        n = len(self._shape)
        if not -n <= axis < max(n, 1):
            raise ShapeError(f"axis {axis} out of range for blob '{self.name}' with shape "
                             f"{self._shape}")
        return axis + n if axis < 0 else axis

    def legacy_dim(self, index):
        """num/channels/height/width as Caffe's legacy accessors (1 when missing)."""
        n = len(self._shape)
        if index >= n or index < -n:
            return 1
        return self._shape[index]

    num = property(lambda self: self.legacy_dim(0))
    channels = property(lambda self: self.legacy_dim(1))
    height = property(lambda self: self.legacy_dim(2))
    width = property(lambda self: self.legacy_dim(3))

    # -- arrays --------------------------------------------------------------
    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        self._assign(self._data, value, "data")

    @property
    def diff(self):
        return self._diff

    @diff.setter
    def diff(self, value):
        self._assign(self._diff, value, "diff")

    def _assign(self, target, value, what):
        value = np.asarray(value, dtype=np.float32)
        if value.size != target.size:
            raise ShapeError(f"cannot write an array of shape {value.shape} into the {what} of "
                             f"blob '{self.name}' with shape {self._shape}")
        target[...] = value.reshape(target.shape)

    def share_data(self, other):
        """Use ``other``'s data buffer (shapes must have equal counts)."""
        if other.count != self._count:
            raise ShapeError(f"cannot share data of blob '{other.name}' {other.shape} with "
                             f"'{self.name}' {self._shape}: counts differ")
        self._data_buf = other._data_buf
        self._refresh()

    def share_diff(self, other):
        if other.count != self._count:
            raise ShapeError(f"cannot share diff of blob '{other.name}' {other.shape} with "
                             f"'{self.name}' {self._shape}: counts differ")
        self._diff_buf = other._diff_buf
        self._refresh()

    def set_diff_buffer(self, flat):
        """Place the diff in ``flat`` (a float32 view of exactly ``count`` elements)."""
        if flat.size != self._count or flat.dtype != np.float32:
            raise ShapeError(f"diff buffer of size {flat.size} does not fit blob "
                             f"'{self.name}' {self._shape}")
        flat[...] = self._diff_buf[: self._count]
        self._diff_buf = flat
        self._refresh()

    def set_data_buffer(self, flat):
        """Place the data in ``flat`` (a float32 view of exactly ``count`` elements)."""
        if flat.size != self._count or flat.dtype != np.float32:
            raise ShapeError(f"data buffer of size {flat.size} does not fit blob "
                             f"'{self.name}' {self._shape}")
        flat[...] = self._data_buf[: self._count]
        self._data_buf = flat
        self._refresh()

    def shares_data_with(self, other):
        return np.shares_memory(self._data, other._data) if self._count else False

    # -- small maths used by solvers and debug output ------------------------
    def asum_data(self):
        return float(np.abs(self._data).sum(dtype=np.float64))

    def asum_diff(self):
        return float(np.abs(self._diff).sum(dtype=np.float64))

    def sumsq_data(self):
        d = self._data.ravel()
        return float(np.dot(d, d))

    def sumsq_diff(self):
        d = self._diff.ravel()
        return float(np.dot(d, d))

    def __repr__(self):
        return f"Blob({self.name!r}, shape={self._shape})"
