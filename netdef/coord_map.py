"""Coordinate maps between NetSpec tops, as pycaffe's ``caffe.coord_map``.

Fully convolutional nets (FCN) upsample a coarse score map back to the input size and
then crop it so that output pixel (i, j) lines up with input pixel (i, j).  The right
crop offset follows from the layers in between: every spatial layer maps a bottom
coordinate ``x`` to a top coordinate ``a * x + b`` (per spatial axis), and composing
those maps along the path from one top to another gives the offset.

``coord_map_from_to(top_from, top_to)`` returns ``(axis, a, b)``: coordinates of
``top_from`` map to ``top_to`` as ``a * x + b`` on the axes after ``axis``.
``crop(top_from, top_to)`` makes the Crop layer that aligns ``top_from`` with
``top_to`` (it refuses scale mismatches and negative or fractional offsets).

A layer maps as follows (k: effective kernel extent with dilation, s: stride, p: pad):
Convolution / Pooling / Im2col ``x -> (x + p - (k - 1) / 2) / s``; Deconvolution
``x -> s * x + (k - 1) / 2 - p``; Crop ``x -> x - offset``; element-wise layers leave
coordinates alone; any other layer has no spatial map.
"""

import numpy as np

from .net_spec import layers as L

__all__ = ["PASS_THROUGH_LAYERS", "AxisMismatchException", "UndefinedMapException",
           "conv_params", "crop_params", "coord_map", "compose", "inverse",
           "coord_map_from_to", "crop"]

# Layers whose tops have their bottoms' coordinates.
PASS_THROUGH_LAYERS = ["AbsVal", "BatchNorm", "Bias", "BNLL", "Clip", "Dropout", "Eltwise",
                       "ELU", "Exp", "Log", "LRN", "MVN", "Power", "PReLU", "ReLU", "Scale",
                       "Sigmoid", "Split", "Swish", "TanH", "Threshold"]

_CONV_PARAM = {"Convolution": "convolution_param", "Deconvolution": "convolution_param",
               "Im2col": "convolution_param", "Pooling": "pooling_param"}


class UndefinedMapException(Exception):
    """A layer with no spatial coordinate map (InnerProduct, Reshape, data layers...)."""


class AxisMismatchException(Exception):
    """Two maps that act on different axes and cannot be composed."""


def _vector(value, default):
    return np.array(default if value is None else value, dtype=np.float64, ndmin=1)


def _spatial(params, name, default):
    """A per-axis parameter given either as ``name`` or as legacy ``name_h``/``name_w``."""
    h, w = params.get(name + "_h"), params.get(name + "_w")
    if h is not None or w is not None:
        return _vector([default if h is None else h, default if w is None else w], default)
    return _vector(params.get(name), default)


def _layer_params(fn, message):
    """The layer's parameters: its ``<type>_param`` dict when given so, else the flat ones."""
    params = fn.params.get(message)
    return params if isinstance(params, dict) else fn.params


def conv_params(fn):
    """``(axis, stride, effective kernel extent, pad)`` of a conv-like layer call."""
    params = _layer_params(fn, _CONV_PARAM.get(fn.type_name, "convolution_param"))
    if params.get("global_pooling"):
        raise UndefinedMapException(f"{fn.type_name} with global_pooling has no spatial map")
    if "kernel_size" not in params and "kernel_h" not in params:
        raise UndefinedMapException(f"{fn.type_name} call without a kernel size")
    kernel = _spatial(params, "kernel", 1) if "kernel_h" in params else \
        _vector(params["kernel_size"], 1)
    dilation = _vector(params.get("dilation"), 1)
    axis = params.get("axis", 1)
    return (axis, _spatial(params, "stride", 1), (kernel - 1) * dilation + 1,
            _spatial(params, "pad", 0))


def crop_params(fn):
    """``(axis, offset)`` of a Crop layer call (Caffe's defaults: axis 2, offset 0)."""
    params = _layer_params(fn, "crop_param")
    return params.get("axis", 2), _vector(params.get("offset"), 0)


def coord_map(fn):
    """``(axis, a, b)``: a bottom coordinate x of layer call ``fn`` is ``a * x + b`` in its
    top; ``axis`` is the last axis before the spatial ones (None: any)."""
    kind = fn.type_name
    if kind in ("Convolution", "Pooling", "Im2col"):
        axis, stride, kernel, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (kernel - 1) / 2) / stride
    if kind == "Deconvolution":
        axis, stride, kernel, pad = conv_params(fn)
        return axis, stride, (kernel - 1) / 2 - pad
    if kind in PASS_THROUGH_LAYERS:
        return None, 1, 0
    if kind == "Crop":
        axis, offset = crop_params(fn)
        return axis - 1, 1, -offset
    raise UndefinedMapException(f"no coordinate map through a {kind} layer")


def compose(outer, inner):
    """The map ``outer(inner(x))``."""
    ax_outer, a_outer, b_outer = outer
    ax_inner, a_inner, b_inner = inner
    if ax_outer is None:
        axis = ax_inner
    elif ax_inner is None or ax_outer == ax_inner:
        axis = ax_outer
    else:
        raise AxisMismatchException(f"maps on axis {ax_outer} and axis {ax_inner}")
    return axis, a_outer * a_inner, a_outer * b_inner + b_outer


def inverse(cmap):
    """The map back: x = (y - b) / a."""
    axis, a, b = cmap
    return axis, 1 / a, -b / a


def _mappable_bottoms(top):
    """Bottoms that share ``top``'s coordinates: all of them, except that a Crop layer's
    second bottom only gives the output size."""
    bottoms = top.fn.inputs
    return bottoms[:1] if top.fn.type_name == "Crop" else bottoms


def _maps_to(start):
    """{top: map from that top's coordinates to ``start``'s} for every top upstream of
    ``start`` reached through spatial layers only."""
    maps = {start: (None, 1, 0)}
    frontier = [start]
    while frontier:
        top = frontier.pop()
        try:
            step = coord_map(top.fn)
        except UndefinedMapException:
            continue
        for bottom in _mappable_bottoms(top):
            if bottom not in maps:
                maps[bottom] = compose(maps[top], step)
                frontier.append(bottom)
    return maps


def coord_map_from_to(top_from, top_to):
    """``(axis, a, b)`` taking coordinates of ``top_from`` to those of ``top_to``, through
    a top both derive from (RuntimeError when there is none)."""
    from_maps = _maps_to(top_from)
    to_maps = {top_to: (None, 1, 0)}
    frontier = [top_to]
    while frontier:
        top = frontier.pop(0)
        if top in from_maps:
            return compose(to_maps[top], inverse(from_maps[top]))
        try:
            step = coord_map(top.fn)
        except UndefinedMapException:
            continue
        for bottom in _mappable_bottoms(top):
            if bottom not in to_maps:
                to_maps[bottom] = compose(to_maps[top], step)
                frontier.append(bottom)
    raise RuntimeError("Could not compute map between tops; are they connected by spatial "
                       "layers?")


def crop(top_from, top_to):
    """A Crop layer call cutting ``top_from`` to line up with ``top_to``.

    Raises AssertionError (as pycaffe's) when the two differ in scale or the offset would
    be negative or fractional.
    """
    axis, a, b = coord_map_from_to(top_from, top_to)
    a, b = np.asarray(a), np.asarray(b)
    if not (a == 1).all():
        raise AssertionError(f"scale mismatch on crop (a = {a})")
    if not (b <= 0).all():
        raise AssertionError(f"cannot crop negative offset (b = {b})")
    if not (np.round(b) == b).all():
        raise AssertionError(f"cannot crop noninteger offset (b = {b})")
    offset = [int(v) for v in -np.round(b)]
    return L.Crop(top_from, top_to, crop_param=dict(axis=axis + 1, offset=offset))
