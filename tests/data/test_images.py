"""Image decoding and resizing agree with OpenCV (what Caffe uses) pixel for pixel."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from netdef.data.images import (
    decode_image,
    encode_image,
    read_image,
    read_image_resized,
    resize_bilinear,
)
from netdef.errors import DataError
from tests.shared import CONFORMANCE, DATA, need

cv2 = pytest.importorskip("cv2")
IMAGES = os.path.join(CONFORMANCE, "io", "images")


def _images():
    folder = need(IMAGES)
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder))]


@pytest.mark.parametrize("flag,color", [("IMREAD_COLOR", True), ("IMREAD_GRAYSCALE", False)])
def test_decode_matches_opencv(flag, color):
    paths = _images() + [need(os.path.join(DATA, "images", "cat.jpg"))]
    for path in paths:
        want = cv2.imread(path, getattr(cv2, flag))
        got = read_image(path, color)
        assert got.shape[2] == (3 if color else 1)
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=path)


def test_unchanged_keeps_stored_channels():
    for path in _images():
        want = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        got = read_image(path, None)
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=path)


def test_png_gray_uses_libpng_arithmetic():
    rgb = np.random.default_rng(3).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    data = buf.getvalue()
    want = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(decode_image(data, False)[:, :, 0], want)


def test_bmp_gray_uses_opencv_weights():
    rgb = np.random.default_rng(4).integers(0, 256, (9, 14, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="BMP")
    data = buf.getvalue()
    want = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(decode_image(data, False)[:, :, 0], want)


def test_resize_is_bit_exact_with_cv2():
    rng = np.random.default_rng(0)
    for _ in range(60):
        H, W = (int(v) for v in rng.integers(1, 40, 2))
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        c = int(rng.choice([1, 3, 4]))
        img = rng.integers(0, 256, (H, W, c), dtype=np.uint8)
        want = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, c)
        np.testing.assert_array_equal(resize_bilinear(img, h, w), want,
                                      err_msg=f"{(H, W, c)} -> {(h, w)}")


def test_resize_views_and_identity():
    img = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    view = img[3:15, 5:25]
    want = cv2.resize(np.ascontiguousarray(view), (7, 9))
    np.testing.assert_array_equal(resize_bilinear(view, 9, 7), want)
    np.testing.assert_array_equal(resize_bilinear(img, 20, 30), img)
    np.testing.assert_array_equal(resize_bilinear(img[:, :, 0], 10, 15),
                                  cv2.resize(img[:, :, 0], (15, 10)))


def test_read_resized_only_when_both_sizes_given():
    path = _images()[0]
    full = read_image(path)
    assert read_image_resized(path, 5, 0).shape == full.shape
    assert read_image_resized(path, 5, 6).shape == (5, 6, 3)


def test_encode_png_round_trip_and_jpeg_quality():
    img = np.random.default_rng(2).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(encode_image(img, "png")), img)
    gray = img[:, :, :1]
    np.testing.assert_array_equal(decode_image(encode_image(gray, ".PNG"), None), gray)
    jpg = decode_image(encode_image(img, "jpg"))
    assert jpg.shape == img.shape
    with pytest.raises(DataError, match="unknown image encoding"):
        encode_image(img, "xyz")


def test_truncated_and_missing_images_are_data_errors(tmp_path):
    data = open(_images()[0], "rb").read()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="bad.jpg"):
        read_image(str(bad))
    with pytest.raises(DataError, match="cannot decode"):
        decode_image(b"not an image at all", name="record 'k'")
    with pytest.raises(DataError, match="missing.png"):
        read_image(str(tmp_path / "missing.png"))
