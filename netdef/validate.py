"""Checks on a whole NetParameter that no single layer's setup would make.

Protobuf's text format accepts ``nan`` and ``inf`` for every float field; a NaN
learning-rate multiplier, filler std or loss weight would only show up later as a
net full of NaNs, so they are refused up front with the layer and field named.
"""

import math

from google.protobuf.descriptor import FieldDescriptor

from .errors import LayerError, layer_context
from .memory import begin_estimate

_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
# fields whose infinities mean "no bound" rather than a mistake
_INF_ALLOWED = {"clip_param.min", "clip_param.max"}


def _non_finite(message, prefix=""):
    """Yield (field path, value) for every NaN/inf float inside ``message``."""
    for field, value in message.ListFields():
        path = prefix + field.name
        repeated = _is_repeated(field)
        values = value if repeated else [value]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for i, item in enumerate(values):
                sub = f"{path}[{i}]." if repeated else path + "."
                yield from _non_finite(item, sub)
        elif field.type in _FLOATS:
            for v in values:
                if math.isnan(v) or (math.isinf(v) and path not in _INF_ALLOWED):
                    yield path, v


def _is_repeated(field):
    flag = getattr(field, "is_repeated", None)  # newer protobuf; `label` in older ones
    if flag is not None:
        return bool(flag)
    return field.label == FieldDescriptor.LABEL_REPEATED


def check_finite_numbers(net_param):
    """Raise LayerError for the first NaN/inf in a layer's numeric fields."""
    for lp in net_param.layer:
        for path, value in _non_finite(lp):
            raise LayerError(f"{layer_context(lp)}: {path} is {value}; numeric fields of a "
                             "net must be finite numbers")


def check_before_build(net_param):
    """Whole-net checks, and the start of the net's memory estimate (netdef/memory.py)."""
    check_finite_numbers(net_param)
    begin_estimate(f"net '{net_param.name or '<unnamed>'}'", depth=1)
