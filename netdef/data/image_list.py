"""Image list files ("path label" per line): the ImageData layer and convert_imageset.

The path is everything before the last space (so names may contain spaces, as in Caffe
master) and is appended to the root folder.  Caffe's atoi would read a missing or
malformed label as 0; here that is an error naming the line.
"""

import logging
import os

import numpy as np

from ..errors import DataError
from .datum import encoded_datum, image_to_datum
from .images import encode_image, file_extension, read_image_resized
from .lmdb_io import open_writer
from .prefetch import decode_pool

logger = logging.getLogger("netdef")


def read_image_list(path):
    """[(name, label, line_number)] from a list file; DataError naming file:line."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read image list {path!r}: {exc.strerror or exc}") from None
    entries = []
    for number, line in enumerate(lines, 1):
        text = line.rstrip()
        if not text.strip():
            continue
        cut = max(text.rfind(" "), text.rfind("\t"))
        if cut <= 0:
            raise DataError(f"{path}:{number}: expected '<image path> <label>', got {line!r}")
        name, label = text[:cut].rstrip(" \t"), text[cut + 1:]
        try:
            value = int(label)
        except ValueError:
            raise DataError(f"{path}:{number}: label {label!r} is not an integer "
                            f"(line {line!r})") from None
        if not -2**31 <= value < 2**31:
            raise DataError(f"{path}:{number}: label {value} does not fit a Datum's 32-bit "
                            f"label (line {line!r})")
        entries.append((name, value, number))
    return entries


def join_root(root, name):
    """Caffe concatenates root_folder and the name; add the separator a folder lacks."""
    if root and not root.endswith(("/", os.sep)) and os.path.isdir(root):
        return root + "/" + name
    return root + name


class ImageListLoader:
    """Callable filling a ``Batch`` from an image list (the ImageData layer's load_batch).

    Walks the list in order, starting over (and reshuffling when ``shuffle``) at the end.
    A missing or undecodable image is a DataError naming the list file and line.  The
    order of pass e is drawn from a generator derived from (seed, e), so where batch k
    starts is computable: ``seek(k)`` resumes there without replaying earlier batches.
    ``shard`` (rank, size): take every size-th entry of that stream, from entry ``rank``
    (data-parallel training, see ``netdef.data.shard``).
    """

    def __init__(self, list_path, entries, root, new_height, new_width, is_color,
                 transformer, batch_size, shuffle, rng, start=0, shard=(0, 1)):
        if not entries:
            raise DataError(f"image list {list_path!r} holds no images")
        if (new_height > 0) != (new_width > 0):
            raise DataError(f"{transformer.where}: new_height and new_width must be set "
                            "together")
        self.list_path = list_path
        self.entries = list(entries)
        self.root = root
        self.size = (new_height, new_width)
        self.is_color = bool(is_color)
        self.transformer = transformer
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.rng = rng
        self.listed = list(self.entries)
        self.seed = int(rng.integers(2 ** 63)) if self.shuffle else 0
        self.start = int(start)
        self.rank, self.ranks = int(shard[0]), int(shard[1])
        self.epoch = 0
        if self.shuffle:
            self._shuffle()
        self._goto(self.start + self.rank)

    def _shuffle(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.listed))
        self.entries = [self.listed[i] for i in order]

    def _goto(self, index):
        """Put the cursor on entry ``index`` of the stream (epochs laid end to end)."""
        self.index = int(index)
        epoch, self.pos = divmod(self.index, len(self.listed))
        if epoch != self.epoch:
            self.epoch = epoch
            if self.shuffle:
                self._shuffle()

    def seek(self, batch_index):
        """Continue as if ``batch_index`` batches had been taken since the start."""
        self._goto(self.start + int(batch_index) * self.batch_size * self.ranks + self.rank)

    def read(self, entry):
        name, _, number = entry
        path = join_root(self.root, name)
        try:
            return read_image_resized(path, self.size[0], self.size[1], self.is_color)
        except DataError as exc:
            raise DataError(f"{self.list_path}:{number}: {exc}") from None

    def item_shape(self):
        img = self.read(self.entries[self.pos])
        h, w, c = img.shape
        name, _, number = self.entries[self.pos]
        return self.transformer.output_shape(c, h, w, what=f"image {name!r} "
                                             f"({self.list_path}:{number})")

    def _take(self, n):
        picked = []
        for _ in range(n):
            picked.append(self.entries[self.pos])
            self._goto(self.index + self.ranks)
        return picked

    def __call__(self, batch):
        tf = self.transformer
        picked = self._take(self.batch_size)
        n = len(picked)
        first = self.read(picked[0])
        h0, w0, c0 = first.shape
        shape = tf.output_shape(c0, h0, w0, what=f"image {picked[0][0]!r}")
        batch.reshape((n,) + shape, (n,))
        draws = tf.draw(n)

        def work(i):
            img = first if i == 0 else self.read(picked[i])
            h, w, c = img.shape
            if (h, w, c) != (h0, w0, c0) and (c != c0 or not tf.crop_size):
                name, _, number = picked[i]
                raise DataError(f"{self.list_path}:{number}: image {name!r} is {h}x{w}x{c} "
                                f"but the batch's first image is {h0}x{w0}x{c0}; set "
                                "new_height/new_width (or crop_size) for images of "
                                "different sizes")
            tf.output_shape(c, h, w, what=f"image {picked[i][0]!r}")
            tf.transform(img, "HWC", batch.data[i], draws, i)

        if n > 1:
            list(decode_pool().map(work, range(n)))
        else:
            work(0)
        batch.label[...] = np.asarray([e[1] for e in picked], np.float32)


# -- convert_imageset ----------------------------------------------------------------------
def _match_ext(name, enc):
    ext = file_extension(name) if "." in name else name.lower()
    enc = enc.lower()
    return ext == enc or (enc == "jpg" and ext == "jpeg")


def image_to_record(path, label, height, width, is_color, encoding):
    """Caffe's ReadImageToDatum: a Datum for one image, or None when it cannot be read.

    With an encoding, the original file bytes are kept when no resize is asked, the
    colour mode agrees and the extension already matches; otherwise the decoded (and
    resized) image is re-encoded.
    """
    try:
        img = read_image_resized(path, height, width, is_color)
    except DataError as exc:
        return None, str(exc)
    if encoding:
        if (img.shape[2] == 3) == is_color and not height and not width \
                and _match_ext(path, encoding):
            with open(path, "rb") as f:
                return encoded_datum(f.read(), label), None
        return encoded_datum(encode_image(img, encoding), label), None
    return image_to_datum(img, label), None


def convert_imageset(root, list_path, db_path, gray=False, shuffle=False, backend="lmdb",
                     resize_height=0, resize_width=0, check_size=False, encoded=False,
                     encode_type="", overwrite=False, rng=None, progress=True):
    """Write the images of a list file into a new database, as Caffe's convert_imageset.

    Keys are ``%08d_<name>`` with the line's position in the (shuffled) list.  Unreadable
    images are skipped with a warning.  Returns (written, [(line, path, reason) skipped]).
    """
    entries = read_image_list(list_path)
    if shuffle:
        rng = rng if rng is not None else np.random.default_rng()
        order = rng.permutation(len(entries))
        entries = [entries[i] for i in order]
    is_color = not gray
    height, width = max(0, int(resize_height)), max(0, int(resize_width))
    skipped = []
    data_size = None
    bar = _progress(len(entries), progress)
    try:
        with open_writer(db_path, backend, overwrite=overwrite) as db:
            for line_id, (name, label, number) in enumerate(entries):
                enc = encode_type
                if encoded and not enc:
                    enc = file_extension(name)
                    if not enc:
                        logger.warning("Failed to guess the encoding of '%s'", name)
                path = join_root(root, name)
                datum, reason = image_to_record(path, label, height, width, is_color, enc)
                bar.update(1)
                if datum is None:
                    logger.warning("%s:%d: skipped: %s", list_path, number, reason)
                    skipped.append((number, path, reason))
                    continue
                if check_size and not datum.encoded:
                    size = datum.channels * datum.height * datum.width
                    if data_size is None:
                        data_size = size
                    elif len(datum.data) != data_size:
                        raise DataError(f"{list_path}:{number}: image {name!r} gives "
                                        f"{len(datum.data)} bytes, the first image "
                                        f"{data_size} (--check_size)")
                db.put(f"{line_id:08d}_{name}", datum.SerializeToString())
            written = db.count
    finally:
        bar.close()
    return written, skipped


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total, enabled):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, unit="img", desc="convert_imageset", dynamic_ncols=True)


def image_list_arrays(list_path, root="", gray=False, resize_height=0, resize_width=0):
    """All images of a list file as float32 (N, C, H, W) BGR pixel values and labels (N,).

    Every image must end up the same size (give resize_height/resize_width otherwise).
    """
    entries = read_image_list(list_path)
    if not entries:
        raise DataError(f"image list {list_path!r} holds no images")
    images = []
    for name, _, number in entries:
        try:
            img = read_image_resized(join_root(root, name), resize_height, resize_width,
                                     not gray)
        except DataError as exc:
            raise DataError(f"{list_path}:{number}: {exc}") from None
        if images and img.shape != images[0].shape:
            raise DataError(f"{list_path}:{number}: image {name!r} is {img.shape[:2]}, the "
                            f"first image {images[0].shape[:2]}; give --resize_height and "
                            "--resize_width")
        images.append(img)
    data = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32)
    labels = np.asarray([e[1] for e in entries], np.float32)
    return data, labels
