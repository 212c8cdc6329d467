"""Data layers: blobs that come from outside the net, with Caffe's semantics.

Input (shapes only), Data (LMDB/LevelDB of Datum records), ImageData (an image list),
HDF5Data (HDF5 files), MemoryData (arrays handed over from Python), DummyData (fillers),
WindowData (R-CNN windows) and HDF5Output (writes its two bottoms to a file).

Data, ImageData and WindowData load in a background thread a few batches ahead (Caffe's
BasePrefetchingDataLayer); each layer instance has its own cursor and thread, and errors
in the thread are raised from ``forward``.  Data layers have no bottoms and no backward;
tops are shaped in ``setup`` from the first record and re-shaped per batch when records
differ in size (batch_size 1 with encoded images of several sizes, as in Caffe).

Resuming a run: batch k of a layer (its records, shuffles, crops and mirrors) is a pure
function of the layer's seed and k, so ``get_resume_state()`` is just the number of
batches consumed and ``set_resume_state()`` continues at that batch (dropping whatever the
prefetch thread had read ahead).

Data-parallel training (``netdef.parallel``): in a TRAIN net, Data, ImageData and HDF5Data
read only their rank's shard of the record stream (``netdef.data.shard``).
"""

import os
import weakref

import numpy as np

from ..data.datum import datum_image
from ..data.datum_loader import DatumBatchLoader
from ..data.hdf5_io import HDF5Appender, HDF5Source
from ..data.image_list import ImageListLoader, read_image_list
from ..data.lmdb_io import LEVELDB, backend_name, open_reader
from ..data.mean import read_mean_file
from ..data.prefetch import IndexedLoad, make_loader
from ..data.shard import current as current_shard
from ..data.transformer import DataTransformer
from ..data.window import WindowLoader, read_window_file
from ..errors import DataError, LayerError, NetdefError
from ..fillers import fill
from ..layer import Layer, register


def _set(blob, arr):
    """Copy ``arr`` into ``blob``, reshaping it first when the shape changed."""
    if blob.shape != arr.shape:
        blob.reshape(arr.shape)
    np.copyto(blob.data, arr)


def _tagged(layer, exc):
    """The same error type with the layer named in front (once)."""
    text = str(exc)
    where = layer.describe()
    if text.startswith(where):
        return exc
    return type(exc)(f"{where}: {text}")


class _DataLayer(Layer):
    """No bottoms, nothing to propagate; ``reshape`` keeps the shapes data gave the tops."""

    exact_num_bottom_blobs = 0

    def reshape(self, bottom, top):
        pass

    def layer_setup(self, bottom, top):
        try:
            super().layer_setup(bottom, top)
        except NetdefError as exc:
            err = _tagged(self, exc)
            if err is exc:
                raise
            raise err from None

    def _positive(self, name, value):
        if value <= 0:
            raise LayerError(f"{self.describe()}: {name} must be positive, got {value}")
        return int(value)


class _PrefetchingLayer(_DataLayer):
    """Forward hands over the next prefetched batch: data to top 0, labels to top 1."""

    _loader = None

    def _start(self, load, depth, rng_users=(), position=None, start_seek=False):
        """Load batches in a thread; batch k draws from its own generator (see
        ``IndexedLoad``) and ``position(k)`` places the record cursor for it."""
        self._sequence = IndexedLoad(load, self.rng.integers(2 ** 63), rng_users, position,
                                     start_seek)
        self._depth = depth
        self.batches_consumed = 0
        self._run_loader()

    def _run_loader(self):
        self._loader = make_loader(self._sequence, self._depth,
                                   name=f"netdef-{self.type}-{self.name}")
        weakref.finalize(self, self._loader.stop)

    def forward(self, bottom, top):
        try:
            batch = self._loader.next()
        except NetdefError as exc:
            raise _tagged(self, exc) from None
        self.batches_consumed += 1
        _set(top[0], batch.data)
        if len(top) > 1:
            _set(top[1], batch.label)

    def get_resume_state(self):
        return {"batch": self.batches_consumed, "batch_size": self.batch_size}

    def set_resume_state(self, state):
        """Continue at batch ``state["batch"]``; batches read ahead are dropped."""
        k = int(state["batch"])
        self._loader.stop(timeout=None)
        self._sequence.seek(k)
        self.batches_consumed = k
        self._run_loader()

    def close(self):
        """Stop the prefetch thread (also done when the layer is garbage-collected)."""
        if self._loader is not None:
            self._loader.stop()


def _transformer(layer):
    return DataTransformer(layer.layer_param.transform_param, layer.phase, layer.rng,
                           where=layer.describe())


@register("Input")
class Input(_DataLayer):
    """Tops shaped by ``input_param.shape`` (one shape for all tops, or one per top);
    their data is written from outside (``net.blobs[...]``, ``net.forward(data=...)``)."""

    min_top_blobs = 1

    def setup(self, bottom, top):
        shapes = [tuple(s.dim) for s in self.layer_param.input_param.shape]
        if len(shapes) not in (0, 1, len(top)):
            raise LayerError(f"{self.describe()}: input_param must give 'shape' once, once "
                             f"per top blob, or not at all: {len(top)} tops vs "
                             f"{len(shapes)} shapes")
        for i, blob in enumerate(top):
            if shapes:
                blob.reshape(shapes[0] if len(shapes) == 1 else shapes[i])

    def forward(self, bottom, top):
        pass


@register("Data")
class Data(_PrefetchingLayer):
    """Batches of Datum records from an LMDB (LevelDB through the optional plyvel).

    ``data_param``: source, batch_size, backend (the schema's default is LEVELDB; real
    nets say LMDB), rand_skip (skip a random number in [0, rand_skip) of records at the
    start), prefetch (batches loaded ahead; 0 loads in forward).  Top 0 is the
    transformed data, top 1 (optional) the labels.
    """

    min_top_blobs = 1
    max_top_blobs = 2

    def setup(self, bottom, top):
        p = self.layer_param.data_param
        self.batch_size = self._positive("data_param.batch_size", p.batch_size)
        self.source = p.source
        self.backend = backend_name(p.backend)
        self.output_labels = len(top) > 1
        if not self.source:
            raise DataError("data_param.source is empty: name the LMDB to read")
        reader = self._open_reader()
        shard = current_shard(self)  # data-parallel training: every N-th record
        if shard is not None:
            reader = shard.reader(reader)
        self.transformer = _transformer(self)
        loader = DatumBatchLoader(reader, self.transformer, self.batch_size,
                                  self.output_labels, self.source)
        item = loader.first_item_shape()
        top[0].reshape((self.batch_size,) + item)
        if self.output_labels:
            top[1].reshape(self.batch_size)
        order = shard.order_rng(self) if shard is not None else self.rng
        skip = int(order.integers(p.rand_skip)) if p.rand_skip else 0
        batch = self.batch_size

        def position(k):  # batch k starts at record skip + k * batch_size (wrapping)
            reader.seek(skip + k * batch)

        self._start(loader, p.prefetch, rng_users=[self.transformer], position=position,
                    start_seek=skip > 0 or shard is not None)

    def _open_reader(self):
        try:
            return open_reader(self.source, self.backend)
        except DataError as exc:
            if self.backend == LEVELDB and self._looks_like_lmdb():
                raise DataError(f"{exc}. Note: data_param.backend is LEVELDB (Caffe's "
                                f"default) but {self.source!r} is an LMDB: add "
                                "'backend: LMDB' to data_param") from None
            raise

    def _looks_like_lmdb(self):
        return os.path.isfile(os.path.join(self.source, "data.mdb"))


@register("ImageData")
class ImageData(_PrefetchingLayer):
    """Images named in a list file ("path label" lines) under ``root_folder``.

    ``image_data_param``: source, root_folder, batch_size, shuffle (at start and at each
    pass), new_height/new_width (resize, both or neither), is_color, rand_skip.
    """

    exact_num_top_blobs = 2

    def setup(self, bottom, top):
        p = self.layer_param.image_data_param
        self.batch_size = self._positive("image_data_param.batch_size", p.batch_size)
        entries = read_image_list(p.source)
        if not entries:
            raise DataError(f"image list {p.source!r} holds no images")
        shard = current_shard(self)  # data-parallel training: every N-th image
        order = shard.order_rng(self) if shard is not None else self.rng
        start = 0
        if p.rand_skip:
            start = int(order.integers(p.rand_skip))
            if start >= len(entries):
                raise DataError(f"rand_skip drew {start} but {p.source!r} lists only "
                                f"{len(entries)} images")
        self.transformer = _transformer(self)
        loader = ImageListLoader(p.source, entries, p.root_folder, p.new_height, p.new_width,
                                 p.is_color, self.transformer, self.batch_size, p.shuffle,
                                 order, start=start,
                                 shard=(shard.rank, shard.size) if shard else (0, 1))
        top[0].reshape((self.batch_size,) + loader.item_shape())
        top[1].reshape(self.batch_size)
        self._start(loader, 4, rng_users=[self.transformer], position=loader.seek)


@register("HDF5Data")
class HDF5Data(_DataLayer):
    """Rows of HDF5 datasets named after the tops, from the files listed in ``source``.

    ``hdf5_data_param``: source (text file, one .h5 path per line), batch_size, shuffle
    (file order per pass, row order per file).  Integer datasets are read as float.  As in
    Caffe there is no transform_param and no prefetch thread (files are read whole).
    """

    min_top_blobs = 1

    def setup(self, bottom, top):
        if self.layer_param.HasField("transform_param"):
            raise LayerError(f"{self.describe()}: HDF5Data does not transform data; remove "
                             "transform_param (preprocess the arrays before writing them)")
        p = self.layer_param.hdf5_data_param
        batch_size = self._positive("hdf5_data_param.batch_size", p.batch_size)
        names = list(self.layer_param.top)
        if len(names) != len(top):
            names = names + [f"top{i}" for i in range(len(names), len(top))]
        shard = current_shard(self)  # data-parallel training: every N-th row
        self.source = HDF5Source(p.source, names, batch_size, p.shuffle,
                                 shard.order_rng(self) if shard else self.rng,
                                 shard=(shard.rank, shard.size) if shard else (0, 1))
        self.batches_consumed = 0
        for blob, shape in zip(top, self.source.top_shapes()):
            blob.reshape(shape)

    def forward(self, bottom, top):
        for blob, shape in zip(top, self.source.top_shapes()):
            if blob.shape != shape:
                blob.reshape(shape)
        try:
            self.source.fill([blob.data for blob in top])
        except DataError as exc:
            raise _tagged(self, exc) from None
        self.batches_consumed += 1

    def get_resume_state(self):
        return {"batch": self.batches_consumed, "batch_size": self.source.batch_size}

    def set_resume_state(self, state):
        """Continue at batch ``state["batch"]`` (the file and row orders are recomputed)."""
        try:
            self.source.seek(state["batch"])
        except DataError as exc:
            raise _tagged(self, exc) from None
        self.batches_consumed = int(state["batch"])


@register("MemoryData")
class MemoryData(_DataLayer):
    """Batches cut from arrays handed over with ``set_input_arrays``/``reset`` (pycaffe).

    ``memory_data_param``: batch_size, channels, height, width.  Each forward hands out
    the next ``batch_size`` rows and wraps around; the label top becomes
    (batch_size, 1, 1, 1) at forward, as in Caffe.  Arrays are used as they are (no
    transform), like Caffe's Reset; ``add_datum_vector`` transforms Datums first.
    """

    exact_num_top_blobs = 2

    def setup(self, bottom, top):
        p = self.layer_param.memory_data_param
        self.batch_size = int(p.batch_size)
        self.channels, self.height, self.width = int(p.channels), int(p.height), int(p.width)
        if self.batch_size * self.channels * self.height * self.width <= 0:
            raise LayerError(f"{self.describe()}: batch_size, channels, height, and width "
                             "must be specified and positive in memory_data_param")
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        top[1].reshape(self.batch_size)
        self._data = self._labels = None
        self.n = self.pos = 0
        self.has_new_data = False
        self._transformer = None
        self._resume_pos = None

    @property
    def item_shape(self):
        return (self.channels, self.height, self.width)

    def reset(self, data, labels, n=None):
        """Serve ``data`` (N, C, H, W) and ``labels`` (N,) from now on; N % batch_size == 0."""
        data = np.ascontiguousarray(data, np.float32)
        labels = np.ascontiguousarray(labels, np.float32)
        n = data.shape[0] if n is None else int(n)
        if n <= 0 or n % self.batch_size:
            raise DataError(f"{self.describe()}: the number of inputs ({n}) must be a "
                            f"positive multiple of batch_size ({self.batch_size})")
        if data.size != n * self.channels * self.height * self.width:
            raise DataError(f"{self.describe()}: data of shape {data.shape} does not hold {n} "
                            f"items of shape {self.item_shape}")
        if labels.size != n:
            raise DataError(f"{self.describe()}: labels of shape {labels.shape} do not hold "
                            f"one label for each of the {n} items")
        self._data = data.reshape((n,) + self.item_shape)
        self._labels = labels.reshape(n)
        self.n, self.pos = n, 0
        if self._resume_pos is not None:  # a restored run continues where it stopped
            self.pos, self._resume_pos = self._resume_pos % n, None

    def set_input_arrays(self, data, labels):
        """pycaffe's Net.set_input_arrays: float32 C-contiguous 4-D data, labels (N,) or
        (N, 1, 1, 1); kept by reference, as pycaffe does."""
        for name, arr in (("data", data), ("labels", labels)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 \
                    or not arr.flags.c_contiguous:
                raise DataError(f"{self.describe()}: set_input_arrays needs {name} as a "
                                "C-contiguous float32 numpy array")
        if data.ndim != 4 or data.shape[1:] != self.item_shape:
            raise DataError(f"{self.describe()}: data must have shape (N, {self.channels}, "
                            f"{self.height}, {self.width}), got {data.shape}")
        if labels.ndim == 4 and labels.shape[1:] != (1, 1, 1) or labels.ndim not in (1, 4):
            raise DataError(f"{self.describe()}: labels must have shape (N,) or (N, 1, 1, 1), "
                            f"got {labels.shape}")
        if labels.shape[0] != data.shape[0]:
            raise DataError(f"{self.describe()}: data has {data.shape[0]} items but labels "
                            f"{labels.shape[0]}")
        self.reset(data, labels)

    def add_datum_vector(self, datums):
        """Transform Datums (with transform_param) and serve them (Caffe's AddDatumVector)."""
        if self.has_new_data:
            raise DataError(f"{self.describe()}: can't add data until the current data has "
                            "been consumed")
        n = len(datums)
        if n == 0 or n % self.batch_size:
            raise DataError(f"{self.describe()}: the added data ({n} items) must be a "
                            f"positive multiple of batch_size ({self.batch_size})")
        if self._transformer is None:
            self._transformer = _transformer(self)
        data = np.empty((n,) + self.item_shape, np.float32)
        labels = np.empty(n, np.float32)
        for i, datum in enumerate(datums):
            img, layout = datum_image(datum, self._transformer.decode_color, key=str(i))
            self._transformer.transform(img, layout, data[i])
            labels[i] = datum.label
        self.reset(data, labels)
        self.has_new_data = True

    def set_batch_size(self, batch_size):
        if self.has_new_data:
            raise DataError(f"{self.describe()}: can't change batch_size until the current "
                            "data has been consumed")
        self.batch_size = self._positive("batch_size", batch_size)

    def forward(self, bottom, top):
        if self._data is None:
            raise LayerError(f"{self.describe()}: MemoryData needs input arrays: call "
                             "net.set_input_arrays(data, labels) (or layer.reset) first")
        b = self.batch_size
        top[0].reshape(b, self.channels, self.height, self.width)
        top[1].reshape(b, 1, 1, 1)
        top[0].data[...] = self._data[self.pos:self.pos + b]
        top[1].data[...] = self._labels[self.pos:self.pos + b].reshape(b, 1, 1, 1)
        self.pos = (self.pos + b) % self.n
        if self.pos == 0:
            self.has_new_data = False

    def get_resume_state(self):
        return {"pos": self.pos}

    def set_resume_state(self, state):
        """The arrays are the caller's: continue at row ``pos`` of the current arrays, or
        of the next ones handed over when there are none yet."""
        if self._data is None:
            self._resume_pos = int(state["pos"])
        else:
            self.pos = int(state["pos"]) % self.n


@register("DummyData")
class DummyData(_DataLayer):
    """Tops filled by ``data_filler`` (0, 1 or one per top; none means constant 0).

    Shapes from ``shape`` (once or per top) or the legacy num/channels/height/width.
    Constant tops are filled once at setup; the others at every forward (from the first).
    """

    min_top_blobs = 1

    def setup(self, bottom, top):
        p = self.layer_param.dummy_data_param
        nt = len(top)
        fillers = list(p.data_filler)
        if len(fillers) not in (0, 1, nt):
            raise LayerError(f"{self.describe()}: number of data fillers must be 0, 1 or equal "
                             f"to the number of tops: {nt}; you specified {len(fillers)} "
                             "data fillers")
        legacy = [list(getattr(p, f)) for f in ("num", "channels", "height", "width")]
        if any(legacy):
            if len(p.shape):
                raise LayerError(f"{self.describe()}: both shape and legacy fields "
                                 "(num/channels/height/width) were specified")
            for name, values in zip(("num", "channels", "height", "width"), legacy):
                if len(values) not in (1, nt):
                    raise LayerError(f"{self.describe()}: must specify '{name}' once, or once "
                                     f"per top blob ({nt}); specified {len(values)}")
            shapes = [tuple(v[0] if len(v) == 1 else v[i] for v in legacy) for i in range(nt)]
        else:
            if len(p.shape) not in (1, nt):
                raise LayerError(f"{self.describe()}: must specify 'shape' once, or once per "
                                 f"top blob ({nt}); specified {len(p.shape)}")
            shapes = [tuple(p.shape[0 if len(p.shape) == 1 else i].dim) for i in range(nt)]
        if not fillers:
            from ..proto import caffe_pb2
            zero = caffe_pb2.FillerParameter()
            zero.type = "constant"
            zero.value = 0
            fillers = [zero]
        self.fillers = fillers
        self.refill = [(f.type or "constant") != "constant" for f in fillers]
        for blob, shape in zip(top, shapes):
            blob.reshape(shape)
        for i, blob in enumerate(top):
            if not self.refill[i if len(self.fillers) > 1 else 0]:
                fill(blob.data, self._filler(i), self.rng)  # constants: once, here

    def _filler(self, i):
        return self.fillers[i if len(self.fillers) > 1 else 0]

    def forward(self, bottom, top):
        for i, blob in enumerate(top):
            if self.refill[i if len(self.fillers) > 1 else 0]:
                fill(blob.data, self._filler(i), self.rng)


@register("WindowData")
class WindowData(_PrefetchingLayer):
    """Foreground/background windows sampled from a window file, warped to crop_size.

    ``window_data_param``: source, root_folder, batch_size, fg_threshold, bg_threshold,
    fg_fraction, context_pad, crop_mode ("warp"/"square"), cache_images, and ``scale``
    (Caffe's WindowData scales by window_data_param.scale, not transform_param's).
    ``transform_param``: crop_size (required), mirror, mean_file or mean_value.
    """

    exact_num_top_blobs = 2

    def setup(self, bottom, top):
        p = self.layer_param.window_data_param
        tp = self.layer_param.transform_param
        batch_size = self._positive("window_data_param.batch_size", p.batch_size)
        images, fg, bg = read_window_file(p.source, p.root_folder, p.fg_threshold,
                                          p.bg_threshold)
        channels = images[-1][1][0]
        if tp.mean_file and len(tp.mean_value):
            raise LayerError(f"{self.describe()}: cannot specify mean_file and mean_value at "
                             "the same time")
        mean = read_mean_file(tp.mean_file) if tp.mean_file else None
        loader = WindowLoader(p.source, images, fg, bg, batch_size, tp.crop_size, channels,
                              tp.mirror, p.scale, p.fg_fraction, p.context_pad, p.crop_mode,
                              mean, list(tp.mean_value), p.cache_images, self.rng,
                              where=self.describe())
        top[0].reshape(batch_size, channels, tp.crop_size, tp.crop_size)
        top[1].reshape(batch_size)
        self.batch_size = batch_size
        self._start(loader, 4, rng_users=[loader])


@register("HDF5Output")
class HDF5Output(Layer):
    """Writes bottom 0 as dataset 'data' and bottom 1 as 'label' to ``file_name``.

    The file is created (truncated) at setup; every forward appends its batch (Caffe
    writes once and fails on a second forward).  No tops, no backward.
    """

    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 0

    def setup(self, bottom, top):
        if bottom[0].num != bottom[1].num:
            raise LayerError(f"{self.describe()}: data and label need the same number of rows "
                             f"({bottom[0].shape} vs {bottom[1].shape})")
        try:
            self.writer = HDF5Appender(self.layer_param.hdf5_output_param.file_name,
                                       ["data", "label"])
        except DataError as exc:
            raise _tagged(self, exc) from None
        weakref.finalize(self, self.writer.close)

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        self.writer.append([bottom[0].data, bottom[1].data])

    def close(self):
        self.writer.close()
