"""netdef.Detector (pycaffe's caffe.Detector): windows of images through the net."""

import numpy as np
import pytest
from PIL import Image

import netdef

NET = """
name: "det" layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "mean" type: "Python" bottom: "data" top: "mean"
  python_param { module: "tests.pycaffe.pylayers" layer: "ChannelMean" } }
"""


@pytest.fixture
def image_file(tmp_path):
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[..., 0] = np.arange(30, dtype=np.uint8)[None, :] * 8  # red grows to the right
    pixels[..., 1] = 255
    path = tmp_path / "im.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def test_windows_are_cropped_warped_and_classified_in_order(tmp_path, image_file):
    (tmp_path / "net.prototxt").write_text(NET)
    det = netdef.Detector(str(tmp_path / "net.prototxt"), None, raw_scale=255,
                          channel_swap=(2, 1, 0))
    windows = [np.array([0, 0, 8, 8]), np.array([0, 20, 8, 28]), np.array([4, 4, 20, 30])]
    found = det.detect_windows([(image_file, windows), (image_file, windows[:2])])
    assert [d["filename"] for d in found] == [image_file] * 3 + [image_file] * 2
    assert all(d["window"] is w for d, w in zip(found, windows + windows[:2]))
    image = netdef.io.load_image(image_file)
    for d in found:
        y0, x0, y1, x1 = d["window"]
        expected = det.transformer.preprocess("data", image[y0:y1, x0:x1]).mean(axis=(1, 2))
        np.testing.assert_allclose(d["prediction"], expected, rtol=1e-5)
    # BGR order: green is channel 1 (255 everywhere), red is channel 2 and grows rightwards
    assert found[0]["prediction"][1] == pytest.approx(255, rel=1e-5)
    assert found[1]["prediction"][2] > found[0]["prediction"][2]


def test_context_padding_fills_outside_the_image_with_the_mean(tmp_path):
    white = tmp_path / "white.png"
    Image.fromarray(np.full((40, 40, 3), 255, np.uint8)).save(white)
    (tmp_path / "net.prototxt").write_text(NET)
    det = netdef.Detector(str(tmp_path / "net.prototxt"), None, mean=np.full(3, 127.5),
                          raw_scale=255, context_pad=1)
    assert tuple(det.crop_dims) == (4, 4, 3)
    np.testing.assert_allclose(det.crop_mean, 0.5)
    inside, corner = det.detect_windows([(str(white), [np.array([10, 10, 30, 30]),
                                                       np.array([0, 0, 20, 20])])])
    np.testing.assert_allclose(inside["prediction"], 127.5, rtol=1e-5)
    assert 0 < corner["prediction"][0] < 127.5  # part of the crop is mean padding (0 after)


def test_no_windows_no_detections(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    det = netdef.Detector(str(tmp_path / "net.prototxt"))
    assert det.detect_windows([]) == []
