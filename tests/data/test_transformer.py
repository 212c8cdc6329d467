"""DataTransformer: mean then scale, crops, mirrors -- against a plain NumPy reference."""

import numpy as np
import pytest

from netdef.data.transformer import TEST, TRAIN, DataTransformer
from netdef.errors import DataError
from netdef.proto import caffe_pb2


def param(**kw):
    p = caffe_pb2.TransformationParameter()
    for k, v in kw.items():
        if k == "mean_value":
            p.mean_value.extend(v)
        else:
            setattr(p, k, v)
    return p


def reference(img, h_off, w_off, crop, mirror, mean, scale):
    """Caffe's order: crop the image and the mean alike, subtract, scale, then flip."""
    c, h, w = img.shape
    ch, cw = (crop, crop) if crop else (h, w)
    out = img[:, h_off:h_off + ch, w_off:w_off + cw].astype(np.float32)
    if mean is not None:
        m = mean if mean.ndim == 1 else mean[:, h_off:h_off + ch, w_off:w_off + cw]
        out = out - (m[:, None, None] if m.ndim == 1 else m)
    out = (out * np.float32(scale)).astype(np.float32)
    return out[:, :, ::-1] if mirror else out


@pytest.fixture
def img():
    return np.random.default_rng(0).integers(0, 256, (3, 7, 9), dtype=np.uint8)


def test_mean_values_then_scale(img):
    t = DataTransformer(param(scale=0.5, mean_value=[10, 20, 30]), TEST, None)
    out = np.empty((3, 7, 9), np.float32)
    t.transform(img, "CHW", out)
    want = reference(img, 0, 0, 0, False, np.float32([10, 20, 30]), 0.5)
    np.testing.assert_array_equal(out, want)
    one = DataTransformer(param(mean_value=[5]), TEST, None)
    one.transform(img, "CHW", out)
    np.testing.assert_array_equal(out, img.astype(np.float32) - 5)


def test_mean_file_is_taken_at_the_crop_offset(tmp_path, img):
    from netdef.data.mean import write_mean_file
    mean = np.random.default_rng(1).uniform(0, 50, (3, 7, 9)).astype(np.float32)
    path = tmp_path / "m.binaryproto"
    write_mean_file(str(path), mean)
    t = DataTransformer(param(mean_file=str(path), crop_size=5, scale=0.25), TEST, None)
    out = np.empty((3, 5, 5), np.float32)
    t.transform(img, "CHW", out)
    np.testing.assert_array_equal(out, reference(img, 1, 2, 5, False, mean, 0.25))


def test_train_crops_are_random_and_in_range(img):
    t = DataTransformer(param(crop_size=4), TRAIN, np.random.default_rng(0))
    seen = set()
    batch = np.repeat(img[None], 50, axis=0)
    out = np.empty((50, 3, 4, 4), np.float32)
    draws = t.draw(50)
    t.transform_batch(batch, out, draws)
    for i in range(50):
        h_off, w_off, mirror = t.placement(draws, i, 7, 9)
        assert 0 <= h_off <= 3 and 0 <= w_off <= 5 and not mirror
        seen.add((h_off, w_off))
        np.testing.assert_array_equal(out[i], reference(img, h_off, w_off, 4, False, None, 1))
    assert len(seen) > 10


def test_mirror_flips_about_half(img):
    # Caffe draws the mirror coin in both phases (nets say mirror: false for TEST)
    t = DataTransformer(param(mirror=True, crop_size=5), TEST, np.random.default_rng(2))
    out = np.empty((200, 3, 5, 5), np.float32)
    t.transform_batch(np.repeat(img[None], 200, axis=0), out)
    plain = reference(img, 1, 2, 5, False, None, 1)
    flipped = plain[:, :, ::-1]
    is_flip = [np.array_equal(o, flipped) for o in out]
    assert all(f or np.array_equal(o, plain) for f, o in zip(is_flip, out))
    assert 60 < sum(is_flip) < 140


def test_hwc_input_matches_chw(img):
    t = DataTransformer(param(crop_size=5, mean_value=[1, 2, 3], scale=2.0), TEST, None)
    a = np.empty((3, 5, 5), np.float32)
    b = np.empty((3, 5, 5), np.float32)
    t.transform(img, "CHW", a)
    t.transform(img.transpose(1, 2, 0), "HWC", b)
    np.testing.assert_array_equal(a, b)


def test_float_input(img):
    t = DataTransformer(param(scale=3.0), TEST, None)
    out = np.empty((3, 7, 9), np.float32)
    t.transform(img.astype(np.float32) / 7, "CHW", out)
    np.testing.assert_allclose(out, img / 7 * 3, rtol=1e-6)


def test_impossible_parameters(tmp_path, img):
    with pytest.raises(DataError, match="force_color and force_gray"):
        DataTransformer(param(force_color=True, force_gray=True), TEST, None)
    path = tmp_path / "m.binaryproto"
    from netdef.data.mean import write_mean_file
    write_mean_file(str(path), np.zeros((3, 2, 2)))
    with pytest.raises(DataError, match="mean_file and mean_value"):
        DataTransformer(param(mean_file=str(path), mean_value=[1]), TEST, None)
    t = DataTransformer(param(mean_file=str(path)), TEST, None, where="layer 'd' (Data)")
    with pytest.raises(DataError, match=r"layer 'd'.*mean must match"):
        t.output_shape(3, 7, 9)
    with pytest.raises(DataError, match="1 mean_value or as many as channels"):
        DataTransformer(param(mean_value=[1, 2]), TEST, None).output_shape(3, 7, 9)
    with pytest.raises(DataError, match="smaller than crop_size 8"):
        DataTransformer(param(crop_size=8), TEST, None).output_shape(3, 7, 9)
