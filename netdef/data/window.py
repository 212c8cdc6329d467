"""R-CNN style window files and the WindowData layer's batches.

Window file (Caffe's format), repeated per image::

    # <image index>
    <image path>
    <channels> <height> <width>
    <number of windows>
    <class> <overlap> <x1> <y1> <x2> <y2>      (one line per window)

Windows overlapping an object by at least ``fg_threshold`` are foreground (class > 0);
those below ``bg_threshold`` are background (class and overlap set to 0).  Each batch
holds ``batch_size - int(batch_size * fg_fraction)`` background windows, then the
foreground ones, sampled at random.  A window is grown by ``context_pad`` pixels of
context (as measured after warping), optionally squared (``crop_mode: "square"``),
clipped to the image, warped to the crop size with the clipped part's share, and placed
in a zeroed ``crop_size`` square; then mean subtraction and ``scale`` as Caffe does.
"""

import math

import numpy as np

from ..errors import DataError
from .images import COLOR, decode_image, read_image, resize_bilinear


def _tokens(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise DataError(f"failed to open window file {path!r}: {exc.strerror or exc}") \
            from None
    for number, line in enumerate(text.splitlines(), 1):
        for tok in line.split():
            yield tok, number


def read_window_file(path, root_folder="", fg_threshold=0.5, bg_threshold=0.5):
    """(images, fg windows, bg windows): images [(path, (c, h, w))], windows float arrays
    of rows (image index, label, overlap, x1, y1, x2, y2)."""
    toks = _tokens(path)
    images, fg, bg = [], [], []

    def take(what, convert=str):
        try:
            tok, number = next(toks)
        except StopIteration:
            raise DataError(f"{path}: ends early, expected {what}") from None
        try:
            return convert(tok), number
        except ValueError:
            raise DataError(f"{path}:{number}: expected {what}, got {tok!r}") from None

    for tok, number in toks:
        if tok != "#":
            raise DataError(f"{path}:{number}: expected '# <image index>', got {tok!r}")
        take("an image index", int)
        name, _ = take("an image path")
        dims = tuple(take(what, int)[0] for what in ("channels", "height", "width"))
        images.append((root_folder + name, dims))
        count, _ = take("the number of windows", int)
        for _ in range(count):
            label, number = take("a class index", int)
            overlap, _ = take("an overlap", float)
            box = [take(f"{c}", int)[0] for c in ("x1", "y1", "x2", "y2")]
            row = [len(images) - 1, label, overlap] + box
            if overlap >= fg_threshold:
                if label <= 0:
                    raise DataError(f"{path}:{number}: foreground window (overlap {overlap}) "
                                    f"needs a class > 0, got {label}")
                fg.append(row)
            elif overlap < bg_threshold:
                row[1] = 0
                row[2] = 0.0
                bg.append(row)
    if not images:
        raise DataError(f"window file {path!r} is empty")
    return images, np.asarray(fg, np.float64).reshape(-1, 7), \
        np.asarray(bg, np.float64).reshape(-1, 7)


def _c_round(x):
    """C's round(): halves away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def window_geometry(box, img_h, img_w, crop, context_pad, square, mirror):
    """Caffe's window warp: (x1, y1, x2, y2) clipped source box, (warp_h, warp_w), (pad_h,
    pad_w) placement inside the crop square."""
    x1, y1, x2, y2 = box
    f32 = np.float32
    warp_h = warp_w = crop
    pad_h = pad_w = 0
    if context_pad > 0 or square:
        context_scale = f32(crop) / f32(crop - 2 * context_pad)
        half_h = f32((y2 - y1 + 1) / 2.0)
        half_w = f32((x2 - x1 + 1) / 2.0)
        cx = f32(x1) + half_w
        cy = f32(y1) + half_h
        if square:
            half_h = half_w = max(half_h, half_w)
        x1 = _c_round(float(cx - half_w * context_scale))
        x2 = _c_round(float(cx + half_w * context_scale))
        y1 = _c_round(float(cy - half_h * context_scale))
        y2 = _c_round(float(cy + half_h * context_scale))
        unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
        pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
        pad_x2, pad_y2 = max(0, x2 - img_w + 1), max(0, y2 - img_h + 1)
        x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
        scale_x = f32(crop) / f32(unclipped_w)
        scale_y = f32(crop) / f32(unclipped_h)
        warp_w = _c_round(float(f32(x2 - x1 + 1) * scale_x))
        warp_h = _c_round(float(f32(y2 - y1 + 1) * scale_y))
        pad_x1 = _c_round(float(f32(pad_x1) * scale_x))
        pad_x2 = _c_round(float(f32(pad_x2) * scale_x))
        pad_y1 = _c_round(float(f32(pad_y1) * scale_y))
        pad_h = pad_y1
        pad_w = pad_x2 if mirror else pad_x1
        if pad_h + warp_h > crop:
            warp_h = crop - pad_h
        if pad_w + warp_w > crop:
            warp_w = crop - pad_w
    return (x1, y1, x2, y2), (warp_h, warp_w), (pad_h, pad_w)


class WindowLoader:
    """Callable filling a ``Batch`` with sampled, warped windows (WindowData's load_batch)."""

    def __init__(self, source, images, fg, bg, batch_size, crop_size, channels, mirror,
                 scale, fg_fraction, context_pad, crop_mode, mean, mean_values,
                 cache_images, rng, where=""):
        if crop_size <= 0:
            raise DataError(f"{where}: WindowData needs transform_param.crop_size > 0")
        if len(fg) == 0 or len(bg) == 0:
            raise DataError(f"{where}: window file {source!r} gives {len(fg)} foreground and "
                            f"{len(bg)} background windows; it needs at least one of each")
        if crop_mode not in ("warp", "square"):
            raise DataError(f"{where}: crop_mode must be 'warp' or 'square', got {crop_mode!r}")
        if 2 * context_pad >= crop_size:
            raise DataError(f"{where}: context_pad {context_pad} leaves no room in "
                            f"crop_size {crop_size}")
        self.where = where
        self.images, self.fg, self.bg = images, fg, bg
        self.batch_size = int(batch_size)
        self.crop = int(crop_size)
        self.channels = int(channels)
        self.mirror = bool(mirror)
        self.scale = np.float32(scale)
        self.fg_fraction = float(fg_fraction)
        self.context_pad = int(context_pad)
        self.square = crop_mode == "square"
        self.mean = mean
        if mean is not None:
            mc, mh, mw = mean.shape
            if mc != self.channels or mh < self.crop or mw < self.crop:
                raise DataError(f"{where}: mean file shape {mean.shape} does not cover "
                                f"{self.channels} channels of a {self.crop} crop")
        self.mean_values = None
        if mean_values is not None and len(mean_values):
            mv = np.asarray(mean_values, np.float32)
            if mv.size not in (1, self.channels):
                raise DataError(f"{where}: specify either 1 mean_value or as many as channels "
                                f"({self.channels})")
            self.mean_values = np.broadcast_to(mv, (self.channels,)).astype(np.float32)
        self.cache = {}
        if cache_images:
            for path, _ in images:
                try:
                    with open(path, "rb") as f:
                        self.cache[path] = f.read()
                except OSError as exc:
                    raise DataError(f"{where}: could not open or find file {path!r}: "
                                    f"{exc.strerror or exc}") from None
        self.rng = rng

    def _load(self, path):
        if path in self.cache:
            return decode_image(self.cache[path], COLOR, name=f"image {path!r}")
        return read_image(path, COLOR)

    def __call__(self, batch):
        n, crop, ch = self.batch_size, self.crop, self.channels
        batch.reshape((n, ch, crop, crop), (n,))
        batch.data[...] = 0
        num_fg = int(np.float32(n) * np.float32(self.fg_fraction))
        item = 0
        for is_fg, count in ((0, n - num_fg), (1, num_fg)):
            pool = self.fg if is_fg else self.bg
            for _ in range(count):
                window = pool[int(self.rng.integers(len(pool)))]
                mirror = self.mirror and bool(self.rng.integers(2))
                self._fill(batch.data[item], window, mirror)
                batch.label[item] = window[1]
                item += 1

    def _fill(self, out, window, mirror):
        path, _ = self.images[int(window[0])]
        img = self._load(path)
        h, w, c = img.shape
        if c != self.channels:
            raise DataError(f"{self.where}: image {path!r} has {c} channels, the window file "
                            f"says {self.channels}")
        box = tuple(int(v) for v in window[3:7])
        (x1, y1, x2, y2), (wh, ww), (pad_h, pad_w) = window_geometry(
            box, h, w, self.crop, self.context_pad, self.square, mirror)
        if x1 < 0 or y1 < 0 or x2 >= w or y2 >= h or x2 < x1 or y2 < y1:
            raise DataError(f"{self.where}: window {box} lies outside image {path!r} "
                            f"({w}x{h})")
        if wh <= 0 or ww <= 0:
            return
        patch = resize_bilinear(np.ascontiguousarray(img[y1:y2 + 1, x1:x2 + 1]), wh, ww)
        if mirror:
            patch = patch[:, ::-1]
        pix = patch.transpose(2, 0, 1).astype(np.float32)
        if self.mean is not None:
            off = (self.mean.shape[2] - self.crop) // 2
            mean = self.mean[:, off + pad_h:off + pad_h + wh, off + pad_w:off + pad_w + ww]
            pix = (pix - mean) * self.scale
        elif self.mean_values is not None:
            pix = (pix - self.mean_values[:, None, None]) * self.scale
        else:
            pix = pix * self.scale
        out[:, pad_h:pad_h + wh, pad_w:pad_w + ww] = pix
