"""netdef.io: pycaffe's caffe.io helpers."""

import os

import numpy as np
import pytest
from PIL import Image

from netdef import io as cio
from netdef.errors import DataError
from tests.shared import DATA, need


def test_blobproto_round_trips():
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    blob = cio.array_to_blobproto(arr, diff=-arr)
    np.testing.assert_array_equal(cio.blobproto_to_array(blob), arr)
    np.testing.assert_array_equal(cio.blobproto_to_array(blob, return_diff=True), -arr)
    vec = cio.arraylist_to_blobprotovector_str([arr, arr[0]])
    back = cio.blobprotovector_str_to_arraylist(vec)
    assert [a.shape for a in back] == [(2, 3, 4), (3, 4)]


def test_datum_round_trips():
    u8 = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    d = cio.array_to_datum(u8, label=4)
    assert d.label == 4 and len(d.data) == 12
    np.testing.assert_array_equal(cio.datum_to_array(d), u8)
    f = u8.astype(np.float64) / 3
    np.testing.assert_allclose(cio.datum_to_array(cio.array_to_datum(f)), f, rtol=1e-6)
    with pytest.raises(ValueError):
        cio.array_to_datum(np.zeros((2, 2)))


def test_load_image_rgb_float_and_gray(tmp_path):
    cat = need(os.path.join(DATA, "images", "cat.jpg"))
    img = cio.load_image(cat)
    rgb = np.asarray(Image.open(cat).convert("RGB"))
    assert img.dtype == np.float32 and img.shape == rgb.shape
    np.testing.assert_allclose(img, rgb / 255.0, atol=1e-6)
    gray = cio.load_image(cat, color=False)
    assert gray.shape == rgb.shape[:2] + (1,)
    want = rgb @ np.array([0.2125, 0.7154, 0.0721]) / 255
    np.testing.assert_allclose(gray[:, :, 0], want, atol=1e-5)
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "g.png")
    tiled = cio.load_image(str(tmp_path / "g.png"))
    assert tiled.shape[2] == 3 and np.array_equal(tiled[:, :, 0], tiled[:, :, 2])
    with pytest.raises(DataError, match="not found"):
        cio.load_image(str(tmp_path / "none.jpg"))


def test_resize_image():
    im = np.random.default_rng(0).random((4, 6, 3)).astype(np.float32)
    same = cio.resize_image(im, (4, 6))
    np.testing.assert_allclose(same, im, rtol=1e-6)
    up = cio.resize_image(im, (8, 12))
    assert up.shape == (8, 12, 3) and up.dtype == np.float32
    assert im.min() - 1e-6 <= up.min() and up.max() <= im.max() + 1e-6
    np.testing.assert_allclose(cio.resize_image(im, (2, 3)),
                               im.reshape(2, 2, 3, 2, 3).mean(axis=(1, 3)), rtol=1e-5)
    const = cio.resize_image(np.full((3, 3, 1), 0.5, np.float32), (5, 7))
    assert const.shape == (5, 7, 1) and np.all(const == 0.5)
    many = cio.resize_image(np.zeros((3, 3, 5), np.float32) + np.arange(5), (6, 6))
    assert many.shape == (6, 6, 5)


def test_oversample_corners_centre_and_mirrors():
    im = np.arange(6 * 8, dtype=np.float32).reshape(6, 8, 1)
    crops = cio.oversample([im], (4, 4))
    assert crops.shape == (10, 4, 4, 1)
    np.testing.assert_array_equal(crops[0], im[:4, :4])
    np.testing.assert_array_equal(crops[3], im[2:, 4:])
    np.testing.assert_array_equal(crops[4], im[1:5, 2:6])
    np.testing.assert_array_equal(crops[5:], crops[:5, :, ::-1])


def test_transformer_preprocess_and_deprocess():
    t = cio.Transformer({"data": (1, 3, 4, 5)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", np.array([104.0, 117.0, 123.0]))
    t.set_input_scale("data", 0.5)
    img = np.random.default_rng(1).random((4, 5, 3)).astype(np.float32)
    out = t.preprocess("data", img)
    want = (img.transpose(2, 0, 1)[::-1] * 255 - np.array([104, 117, 123])[:, None, None]) * 0.5
    np.testing.assert_allclose(out, want, rtol=1e-5)
    np.testing.assert_allclose(t.deprocess("data", out), img, atol=1e-5)
    assert t.preprocess("data", np.zeros((8, 10, 3), np.float32)).shape == (3, 4, 5)
    with pytest.raises(ValueError, match="Mean shape incompatible"):
        t.set_mean("data", np.zeros((3, 5, 5)))
    with pytest.raises(ValueError, match="Channel swap"):
        t.set_channel_swap("data", (1, 0))
    with pytest.raises(KeyError, match="not one of the net inputs"):
        t.preprocess("label", img)
