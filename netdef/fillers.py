"""Weight initialisers, with Caffe's definitions of fan-in/fan-out.

``fill(blob_data, filler_param, rng)`` writes into an existing float32 array.
``filler_param`` is a ``FillerParameter`` message (or anything with the same
attributes); ``rng`` a ``numpy.random.Generator`` (the Net's seeded one).
"""

import math

import numpy as np

from .errors import LayerError

FAN_IN, FAN_OUT, AVERAGE = 0, 1, 2


def _fans(shape):
    count = int(np.prod(shape)) if shape else 1
    fan_in = count // shape[0] if shape and shape[0] else count
    fan_out = count // shape[1] if len(shape) > 1 and shape[1] else count
    return fan_in, fan_out


def _norm(shape, variance_norm):
    fan_in, fan_out = _fans(shape)
    if variance_norm == AVERAGE:
        return (fan_in + fan_out) / 2.0
    if variance_norm == FAN_OUT:
        return float(fan_out)
    return float(fan_in)


def fill(data, fp, rng):
    """Fill ``data`` (float32 ndarray, modified in place) as ``fp`` says."""
    kind = fp.type or "constant"
    shape = data.shape
    if kind == "constant":
        data[...] = fp.value
    elif kind == "uniform":
        if fp.max < fp.min:
            raise LayerError(f"uniform filler: max ({fp.max}) < min ({fp.min})")
        data[...] = rng.uniform(fp.min, fp.max, size=shape)
    elif kind == "gaussian":
        data[...] = rng.normal(fp.mean, fp.std, size=shape)
        if fp.sparse >= 0:
            if not shape:
                raise LayerError("gaussian filler with sparse needs a blob with axes")
            p = min(1.0, fp.sparse / float(shape[0]))
            data *= rng.random(size=shape) < p
    elif kind == "positive_unitball":
        data[...] = rng.uniform(0.0, 1.0, size=shape)
        rows = data.reshape(shape[0] if shape else 1, -1)
        rows /= rows.sum(axis=1, keepdims=True)
    elif kind == "xavier":
        scale = math.sqrt(3.0 / _norm(shape, fp.variance_norm))
        data[...] = rng.uniform(-scale, scale, size=shape)
    elif kind == "msra":
        std = math.sqrt(2.0 / _norm(shape, fp.variance_norm))
        data[...] = rng.normal(0.0, std, size=shape)
    elif kind == "bilinear":
        data[...] = bilinear_kernel(shape)
    else:
        raise LayerError(f"unknown filler type {kind!r} (known: constant, uniform, gaussian, "
                         "positive_unitball, xavier, msra, bilinear)")
    return data


def bilinear_kernel(shape):
    """Upsampling weights for Deconvolution: separable triangle, as in FCN."""
    if len(shape) != 4 or shape[2] != shape[3]:
        raise LayerError(f"bilinear filler needs a 4-D blob with square kernels, got {shape}")
    k = shape[3]
    f = math.ceil(k / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    ramp = 1.0 - np.abs(np.arange(k) / f - c)
    kernel = np.outer(ramp, ramp).astype(np.float32)
    return np.broadcast_to(kernel, shape)
