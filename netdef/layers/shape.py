"""Blob-shaping and utility layers: Flatten, Reshape, Concat, Slice, Split, Silence,
Tile, Crop, BatchReindex, Filter, Parameter.

Most of these move memory and do no arithmetic.  Flatten and Reshape do not even
move it: their top is a second view of the bottom's buffers (data and diff), as in
Caffe, so they cost nothing in forward or backward.
"""

import numpy as np

from ..errors import DataError, LayerError, ShapeError
from ..kernels import shape as K
from ..layer import Layer, register


class IndexValueError(LayerError, DataError):
    """An index or selector blob holds a value the layer cannot use."""


def canonical_axis(layer, blob, axis, param="axis"):
    """Caffe's CanonicalAxisIndex (negative counts from the end), with a layer-named error."""
    n = blob.num_axes
    if not -n <= axis < n:
        raise ShapeError(f"{layer.describe()}: {param} {axis} is out of range for bottom "
                         f"'{blob.name}' with shape {blob.shape} ({n} axes; valid: "
                         f"{-n}..{n - 1})")
    return axis + n if axis < 0 else axis


def _count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _share_all(top, bottom):
    top.share_data(bottom)
    top.share_diff(bottom)


def _same_memory(a, b):
    return a.size == 0 or a.ctypes.data == b.ctypes.data


def _no_in_place(layer, bottom, top):
    for t in top:
        for b in bottom:
            if t is b:
                raise LayerError(f"{layer.describe()}: does not allow in-place computation "
                                 f"(top '{t.name}' is also a bottom)")


class _ViewLayer(Layer):
    """Flatten/Reshape: the top is the bottom's buffers under another shape."""

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def top_shape(self, bottom):
        raise NotImplementedError

    def reshape(self, bottom, top):
        shape = self.top_shape(bottom[0])
        if _count(shape) != bottom[0].count:
            raise ShapeError(f"{self.describe()}: output shape {shape} has {_count(shape)} "
                             f"elements but bottom '{bottom[0].name}' {bottom[0].shape} has "
                             f"{bottom[0].count}")
        top[0].reshape(shape)
        _share_all(top[0], bottom[0])

    def forward(self, bottom, top):
        if not _same_memory(top[0].data, bottom[0].data):
            top[0].share_data(bottom[0])

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0] and not _same_memory(top[0].diff, bottom[0].diff):
            bottom[0].diff[...] = top[0].diff.reshape(bottom[0].shape)


@register("Flatten")
class Flatten(_ViewLayer):
    """Collapse axes ``axis``..``end_axis`` (inclusive) into one; (N,C,H,W) -> (N,C*H*W)."""

    def setup(self, bottom, top):
        _no_in_place(self, bottom, top)
        p = self.layer_param.flatten_param
        self.axis, self.end_axis = p.axis, p.end_axis

    def top_shape(self, b):
        start = canonical_axis(self, b, self.axis, "axis")
        end = canonical_axis(self, b, self.end_axis, "end_axis")
        if end + 1 < start:
            raise LayerError(f"{self.describe()}: end_axis {self.end_axis} comes before axis "
                             f"{self.axis} for bottom '{b.name}' {b.shape}")
        return b.shape[:start] + (b.count_range(start, end + 1),) + b.shape[end + 1:]


@register("Reshape")
class Reshape(_ViewLayer):
    """Give the bottom a new shape: dim 0 copies the bottom's dim, one dim -1 is inferred.

    ``axis``/``num_axes`` restrict the replacement to a range of the bottom's axes.
    """

    def setup(self, bottom, top):
        _no_in_place(self, bottom, top)
        p = self.layer_param.reshape_param
        self.dims = [int(d) for d in p.shape.dim]
        self.axis, self.num_axes = p.axis, p.num_axes
        self.copy_axes, self.inferred_axis = [], None
        for i, d in enumerate(self.dims):
            if d == 0:
                self.copy_axes.append(i)
            elif d == -1:
                if self.inferred_axis is not None:
                    raise LayerError(f"{self.describe()}: reshape_param.shape {self.dims} "
                                     f"contains more than one -1 (at {self.inferred_axis} and "
                                     f"{i}); only one dimension can be inferred")
                self.inferred_axis = i
            elif d < -1:
                raise LayerError(f"{self.describe()}: reshape_param.shape {self.dims} has "
                                 f"dimension {d}; use a size, 0 (copy) or -1 (infer)")
        if self.num_axes < -1:
            raise LayerError(f"{self.describe()}: reshape_param.num_axes must be >= -1, got "
                             f"{self.num_axes}")

    def top_shape(self, b):
        n = b.num_axes
        start = self.axis if self.axis >= 0 else n + self.axis + 1
        if not 0 <= start <= n:
            raise ShapeError(f"{self.describe()}: reshape_param.axis {self.axis} is out of "
                             f"range for bottom '{b.name}' {b.shape}")
        end = n if self.num_axes == -1 else start + self.num_axes
        if end > n:
            raise ShapeError(f"{self.describe()}: axis {self.axis} + num_axes "
                             f"{self.num_axes} runs past the {n} axes of bottom '{b.name}' "
                             f"{b.shape}")
        shape = list(b.shape[:start]) + list(self.dims) + list(b.shape[end:])
        for i in self.copy_axes:
            if start + i >= n:
                raise ShapeError(f"{self.describe()}: reshape_param.shape {self.dims} has 0 "
                                 f"at position {i}, but bottom '{b.name}' {b.shape} has no "
                                 f"axis {start + i} to copy")
            shape[start + i] = b.shape[start + i]
        if self.inferred_axis is not None:
            pos = start + self.inferred_axis
            known = _count(d for j, d in enumerate(shape) if j != pos)
            if known == 0 or b.count % known:
                raise ShapeError(f"{self.describe()}: cannot infer the -1 in "
                                 f"reshape_param.shape {self.dims}: bottom '{b.name}' "
                                 f"{b.shape} has {b.count} elements, not a multiple of "
                                 f"{known}")
            shape[pos] = b.count // known
        return tuple(shape)


@register("Concat")
class Concat(Layer):
    """Join the bottoms along ``axis`` (legacy ``concat_dim``); other dims must agree."""

    min_bottom_blobs = 1
    exact_num_top_blobs = 1

    def setup(self, bottom, top):
        p = self.layer_param.concat_param
        if p.HasField("axis") and p.HasField("concat_dim"):
            raise LayerError(f"{self.describe()}: give either concat_param.axis or the "
                             "legacy concat_dim, not both")
        self.legacy_dim = p.concat_dim if p.HasField("concat_dim") else None
        self.axis_param = p.axis

    def reshape(self, bottom, top):
        b0 = bottom[0]
        n = b0.num_axes
        if self.legacy_dim is not None:
            if self.legacy_dim >= n:
                raise ShapeError(f"{self.describe()}: concat_dim {self.legacy_dim} is out of "
                                 f"range for bottom '{b0.name}' {b0.shape}")
            axis = self.legacy_dim
        else:
            axis = canonical_axis(self, b0, self.axis_param)
        shape = list(b0.shape)
        for b in bottom[1:]:
            same = b.num_axes == n and all(b.shape[j] == shape[j] for j in range(n)
                                           if j != axis)
            if not same:
                raise ShapeError(f"{self.describe()}: all bottoms must have the same shape "
                                 f"except along axis {axis}: '{b0.name}' is {b0.shape}, "
                                 f"'{b.name}' is {b.shape}")
            shape[axis] += b.shape[axis]
        top[0].reshape(shape)
        self.outer = b0.count_range(0, axis)
        self.inner = b0.count_range(axis + 1)
        self.axis = axis
        if len(bottom) == 1:
            _share_all(top[0], b0)

    def _blocks(self, bottom, top, what):
        """(top block, bottom block) 2-D view pairs, one per bottom."""
        t = getattr(top[0], what).reshape(self.outer, -1) if self.outer else None
        off = 0
        for b in bottom:
            w = b.shape[self.axis] * self.inner
            if self.outer:
                yield t[:, off:off + w], getattr(b, what).reshape(self.outer, w)
            off += w

    def forward(self, bottom, top):
        if len(bottom) == 1:
            top[0].share_data(bottom[0])
            return
        for dst, src in self._blocks(bottom, top, "data"):
            dst[...] = src

    def backward(self, top, propagate_down, bottom):
        if len(bottom) == 1:
            return
        for i, (src, dst) in enumerate(self._blocks(bottom, top, "diff")):
            if propagate_down[i]:
                dst[...] = src


@register("Slice")
class Slice(Layer):
    """Cut the bottom along ``axis`` at ``slice_point``s, or into equal parts."""

    exact_num_bottom_blobs = 1
    min_top_blobs = 1

    def setup(self, bottom, top):
        p = self.layer_param.slice_param
        if p.HasField("axis") and p.HasField("slice_dim"):
            raise LayerError(f"{self.describe()}: give either slice_param.axis or the "
                             "legacy slice_dim, not both")
        self.legacy_dim = p.slice_dim if p.HasField("slice_dim") else None
        self.axis_param = p.axis
        self.slice_points = [int(s) for s in p.slice_point]

    def _sizes(self, b, length, num_tops):
        if not self.slice_points:
            if length % num_tops:
                raise ShapeError(f"{self.describe()}: {num_tops} tops do not evenly divide "
                                 f"axis {self.axis} (size {length}) of bottom '{b.name}' "
                                 f"{b.shape}; give slice_point")
            return [length // num_tops] * num_tops
        points = self.slice_points
        if len(points) != num_tops - 1:
            raise LayerError(f"{self.describe()}: {len(points)} slice_point(s) make "
                             f"{len(points) + 1} slices but the layer has {num_tops} tops")
        bounds = [0] + points + [length]
        sizes = [hi - lo for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        if num_tops > length or any(s <= 0 for s in sizes[:-1]) or sizes[-1] < 0:
            raise ShapeError(f"{self.describe()}: slice_point {points} must increase strictly "
                             f"within axis {self.axis} (size {length}) of bottom '{b.name}' "
                             f"{b.shape}")
        return sizes

    def reshape(self, bottom, top):
        b = bottom[0]
        if self.legacy_dim is not None:
            if self.legacy_dim >= b.num_axes:
                raise ShapeError(f"{self.describe()}: slice_dim {self.legacy_dim} is out of "
                                 f"range for bottom '{b.name}' {b.shape}")
            self.axis = self.legacy_dim
        else:
            self.axis = canonical_axis(self, b, self.axis_param)
        self.sizes = self._sizes(b, b.shape[self.axis], len(top))
        shape = list(b.shape)
        for t, size in zip(top, self.sizes, strict=True):
            shape[self.axis] = size
            t.reshape(shape)
        self.outer = b.count_range(0, self.axis)
        self.inner = b.count_range(self.axis + 1)
        if len(top) == 1:
            _share_all(top[0], b)

    def _blocks(self, bottom, top, what):
        if not self.outer:
            return
        src = getattr(bottom[0], what).reshape(self.outer, -1)
        off = 0
        for t, size in zip(top, self.sizes, strict=True):
            w = size * self.inner
            yield src[:, off:off + w], getattr(t, what).reshape(self.outer, w)
            off += w

    def forward(self, bottom, top):
        if len(top) == 1:
            top[0].share_data(bottom[0])
            return
        for src, dst in self._blocks(bottom, top, "data"):
            dst[...] = src

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0] or len(top) == 1:
            return
        for dst, src in self._blocks(bottom, top, "diff"):
            dst[...] = src


@register("Split")
class Split(Layer):
    """One bottom feeding several consumers: every top shares the bottom's data; the
    bottom's gradient is the sum of the tops' diffs.  The Net inserts these itself."""

    exact_num_bottom_blobs = 1
    min_top_blobs = 1

    def setup(self, bottom, top):
        _no_in_place(self, bottom, top)

    def reshape(self, bottom, top):
        for t in top:
            t.reshape(bottom[0].shape)
            t.share_data(bottom[0])

    def forward(self, bottom, top):
        for t in top:
            if not _same_memory(t.data, bottom[0].data):
                t.share_data(bottom[0])

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        out = bottom[0].diff
        if len(top) == 1:
            out[...] = top[0].diff
            return
        np.add(top[0].diff, top[1].diff, out=out)
        for t in top[2:]:
            np.add(out, t.diff, out=out)


@register("Silence")
class Silence(Layer):
    """Swallow blobs nobody uses (so the Net does not report them as outputs)."""

    min_bottom_blobs = 1
    exact_num_top_blobs = 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        for b, down in zip(bottom, propagate_down, strict=True):
            if down:
                b.diff[...] = 0


@register("Tile")
class Tile(Layer):
    """Repeat the bottom ``tiles`` times along ``axis`` (the whole tail block repeats)."""

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def setup(self, bottom, top):
        p = self.layer_param.tile_param
        if not p.HasField("tiles"):
            raise LayerError(f"{self.describe()}: tile_param.tiles must be given")
        if p.tiles <= 0:
            raise LayerError(f"{self.describe()}: tile_param.tiles must be positive, got "
                             f"{p.tiles}")
        self.axis_param, self.tiles = p.axis, p.tiles

    def reshape(self, bottom, top):
        b = bottom[0]
        axis = canonical_axis(self, b, self.axis_param)
        shape = list(b.shape)
        shape[axis] *= self.tiles
        top[0].reshape(shape)
        self.outer, self.inner = b.count_range(0, axis), b.count_range(axis)

    def forward(self, bottom, top):
        K.tile_forward(top[0].data.reshape(self.outer, self.tiles * self.inner),
                       bottom[0].data.reshape(self.outer, self.inner), self.tiles)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K.tile_backward(bottom[0].diff.reshape(self.outer, self.inner),
                            top[0].diff.reshape(self.outer, self.tiles * self.inner),
                            self.tiles)


@register("Crop")
class Crop(Layer):
    """Cut bottom[0] to bottom[1]'s shape on the axes from ``axis`` on, starting at
    ``offset`` (one value for all those axes, or one per axis).  bottom[1] only lends
    its shape and gets no gradient."""

    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1

    def setup(self, bottom, top):
        p = self.layer_param.crop_param
        self.axis_param, self.offsets = p.axis, [int(o) for o in p.offset]

    def reshape(self, bottom, top):
        b, ref = bottom
        n = b.num_axes
        if ref.num_axes < n:
            raise ShapeError(f"{self.describe()}: reference '{ref.name}' {ref.shape} has "
                             f"fewer axes than bottom '{b.name}' {b.shape}")
        start = canonical_axis(self, b, self.axis_param)
        if len(self.offsets) > 1 and start + len(self.offsets) != n:
            raise LayerError(f"{self.describe()}: {len(self.offsets)} offsets given for the "
                             f"{n - start} axes from axis {start} of bottom '{b.name}' "
                             f"{b.shape}; give one offset, or one per axis")
        shape, window = list(b.shape), []
        for i in range(n):
            offset = 0
            if i >= start:
                if self.offsets:
                    offset = self.offsets[0 if len(self.offsets) == 1 else i - start]
                if b.shape[i] - offset < ref.shape[i]:
                    raise ShapeError(f"{self.describe()}: cannot crop axis {i} of bottom "
                                     f"'{b.name}' {b.shape} at offset {offset} to the size "
                                     f"{ref.shape[i]} of reference '{ref.name}' {ref.shape}")
                shape[i] = ref.shape[i]
            window.append(slice(offset, offset + shape[i]))
        self.window = tuple(window)
        top[0].reshape(shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data[self.window]

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            d = bottom[0].diff
            d[...] = 0
            d[self.window] = top[0].diff


def index_rows(layer, blob, limit, what, require_integer=False):
    """float32 index blob -> int64 rows, or a layer-named error for a bad value."""
    flat = blob.data.reshape(-1)
    rows = np.empty(flat.size, np.int64)
    bad = K.rows_from_values(rows, flat, limit, require_integer)
    if bad >= 0:
        kind = "an integer" if require_integer else "a value"
        raise IndexValueError(f"{layer.describe()}: {what} {float(flat[bad]):g} at position "
                              f"{bad} of bottom '{blob.name}' {blob.shape} is not {kind} in "
                              f"[0, {limit})")
    return rows


@register("BatchReindex")
class BatchReindex(Layer):
    """top[i] = bottom[0][index[i]] along the first axis; bottom[1] holds the indices.

    Backward accumulates: an item picked several times gets the sum of their diffs.
    """

    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        b, idx = bottom
        if idx.num_axes != 1:
            raise ShapeError(f"{self.describe()}: the indices bottom '{idx.name}' must be "
                             f"1-D, got shape {idx.shape}")
        if b.num_axes < 1:
            raise ShapeError(f"{self.describe()}: bottom '{b.name}' has no axis to index")
        top[0].reshape((idx.shape[0],) + b.shape[1:])
        self.inner = b.count_range(1)

    def _rows(self, bottom):
        return index_rows(self, bottom[1], bottom[0].shape[0], "index")

    def forward(self, bottom, top):
        rows = self._rows(bottom)
        K.gather_rows(top[0].data.reshape(rows.size, self.inner),
                      bottom[0].data.reshape(bottom[0].shape[0], self.inner), rows)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError(f"{self.describe()}: cannot backpropagate to the indices "
                             f"'{bottom[1].name}'")
        if not propagate_down[0]:
            return
        rows = self._rows(bottom)
        d = bottom[0].diff
        d[...] = 0
        K.scatter_add_rows(d.reshape(d.shape[0], self.inner),
                           top[0].diff.reshape(rows.size, self.inner), rows)


@register("Filter")
class Filter(Layer):
    """Keep the items (first axis) whose selector (last bottom) is nonzero.

    The tops' first axis changes with the selector; the selector gets no gradient.
    """

    min_bottom_blobs = 2
    min_top_blobs = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index != len(self.layer_param.bottom) - 1

    def setup(self, bottom, top):
        if len(top) != len(bottom) - 1:
            raise LayerError(f"{self.describe()}: needs one top per filtered bottom "
                             f"({len(bottom) - 1}: every bottom but the selector), got "
                             f"{len(top)}")
        # At setup the selector holds no data yet: shape the tops for all items.
        self._first_reshape = True
        self.rows = np.zeros(0, np.int64)

    def reshape(self, bottom, top):
        sel = bottom[-1]
        if sel.num_axes < 1 or any(d != 1 for d in sel.shape[1:]):
            raise ShapeError(f"{self.describe()}: the selector '{sel.name}' must have shape "
                             f"(N,) or (N, 1, ...), got {sel.shape}")
        for b in bottom[:-1]:
            if b.num_axes < 1 or b.shape[0] != sel.shape[0]:
                raise ShapeError(f"{self.describe()}: bottom '{b.name}' {b.shape} must have "
                                 f"the selector's first dimension ({sel.shape[0]}, selector "
                                 f"'{sel.name}' {sel.shape})")
        self.rows = np.flatnonzero(sel.data.reshape(-1)).astype(np.int64, copy=False)
        kept = self.rows.size
        if self._first_reshape:
            kept, self._first_reshape = sel.shape[0], False
        for t, b in zip(top, bottom[:-1], strict=True):
            t.reshape((kept,) + b.shape[1:])

    def forward(self, bottom, top):
        self.reshape(bottom, top)
        for t, b in zip(top, bottom[:-1], strict=True):
            inner = b.count_range(1)
            K.gather_rows(t.data.reshape(self.rows.size, inner),
                          b.data.reshape(b.shape[0], inner), self.rows)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[-1]:
            raise LayerError(f"{self.describe()}: cannot backpropagate to the selector "
                             f"'{bottom[-1].name}'")
        for t, b, down in zip(top, bottom[:-1], propagate_down[:-1], strict=True):
            if down:
                inner = b.count_range(1)
                b.diff[...] = 0
                K.scatter_add_rows(b.diff.reshape(b.shape[0], inner),
                                   t.diff.reshape(self.rows.size, inner), self.rows)


@register("Parameter")
class Parameter(Layer):
    """A learned blob of ``parameter_param.shape`` exposed as the top (no bottoms).

    The top shares the parameter's data and diff, so whatever gradient reaches the
    top is the parameter's gradient.
    """

    exact_num_bottom_blobs = 0
    exact_num_top_blobs = 1

    def setup(self, bottom, top):
        self.shape = tuple(int(d) for d in self.layer_param.parameter_param.shape.dim)
        if any(d < 0 for d in self.shape):
            raise LayerError(f"{self.describe()}: parameter_param.shape {self.shape} has a "
                             "negative dimension")
        if not self.blobs:
            self.new_param_blob(self.shape)
        self.param_propagate_down = [True]

    def reshape(self, bottom, top):
        top[0].reshape(self.shape)
        _share_all(top[0], self.blobs[0])

    def forward(self, bottom, top):
        t, p = top[0], self.blobs[0]
        if not (_same_memory(t.data, p.data) and _same_memory(t.diff, p.diff)):
            top[0].reshape(p.shape)
            _share_all(t, p)

    def backward(self, top, propagate_down, bottom):
        pass
