"""Fillers: Caffe's definitions of each initialiser, fan-in/fan-out and variance_norm."""

import math

import numpy as np
import pytest
from google.protobuf import text_format

from netdef.errors import LayerError
from netdef.fillers import bilinear_kernel, fill
from netdef.proto import caffe_pb2


def filler(text):
    return text_format.Parse(text, caffe_pb2.FillerParameter())


def sample(text, shape=(64, 32, 3, 3), seed=0):
    data = np.zeros(shape, np.float32)
    fill(data, filler(text), np.random.default_rng(seed))
    return data


def test_constant_and_default_is_zero():
    assert (sample('type: "constant" value: 2.5') == 2.5).all()
    assert (sample("") == 0).all()


def test_uniform_range():
    d = sample('type: "uniform" min: -0.5 max: 0.25')
    assert d.min() >= -0.5 and d.max() <= 0.25
    assert abs(d.mean() - (-0.125)) < 0.01


def test_gaussian_moments_and_sparse():
    d = sample('type: "gaussian" mean: 1 std: 0.1', shape=(100, 1000))
    assert abs(d.mean() - 1) < 0.01 and abs(d.std() - 0.1) < 0.005
    s = sample('type: "gaussian" std: 1 sparse: 10', shape=(100, 1000))
    # each weight kept with probability sparse / num_outputs = 10 / 100
    assert abs((s != 0).mean() - 0.1) < 0.01


def test_positive_unitball_rows_sum_to_one():
    d = sample('type: "positive_unitball"', shape=(5, 4, 3))
    assert (d >= 0).all()
    np.testing.assert_allclose(d.reshape(5, -1).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("norm,n", [("FAN_IN", 32 * 9), ("FAN_OUT", 64 * 9),
                                    ("AVERAGE", (32 * 9 + 64 * 9) / 2)])
def test_xavier_and_msra_scales(norm, n):
    x = sample(f'type: "xavier" variance_norm: {norm}', seed=1)
    scale = math.sqrt(3.0 / n)
    assert x.max() <= scale and x.min() >= -scale and x.max() > 0.95 * scale
    m = sample(f'type: "msra" variance_norm: {norm}', seed=2)
    assert abs(m.std() - math.sqrt(2.0 / n)) < 0.03 * math.sqrt(2.0 / n)


def test_bilinear_is_caffes_upsampling_kernel():
    k = bilinear_kernel((1, 1, 4, 4))[0, 0]
    ramp = np.array([0.25, 0.75, 0.75, 0.25], np.float32)
    np.testing.assert_allclose(k, np.outer(ramp, ramp))
    odd = bilinear_kernel((2, 1, 5, 5))[1, 0]  # factor 3
    np.testing.assert_allclose(odd[2], [1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3], rtol=1e-6)
    with pytest.raises(LayerError):
        bilinear_kernel((1, 1, 3, 4))


def test_unknown_filler_is_a_clear_error():
    with pytest.raises(LayerError, match="unknown filler type 'gausian'"):
        sample('type: "gausian"')
