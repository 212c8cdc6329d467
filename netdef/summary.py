"""What a net costs, layer by layer: shapes, parameters, activation memory, multiply-adds,
receptive field.

The net is set up layer by layer with its inputs at batch 1 and every filler replaced by
a constant, and each layer's weights are dropped as soon as they are counted: shapes come
from the layers' own ``reshape`` (so every layer type is covered exactly as the Net sees
it), nothing is computed, and the biggest allocation is one layer's weights.  Per-batch
figures are the per-image ones times the batch size.

Conventions (see docs/summary.md):
- activations: values in the tops a layer creates (in-place tops reuse their bottom and
  count 0); memory is those values as float32, forward only.
- weights: a layer's first parameter blob; params: all its learnable blobs; BatchNorm's
  stored mean/variance/factor are counted apart as statistics.
- multiply-adds: Convolution, Deconvolution and InnerProduct products (bias additions and
  every other layer's arithmetic are not counted).
- receptive field / stride: input pixels one top position sees, and the input step
  between neighbouring top positions, per spatial axis.
"""

import csv
import io
import json
import math

import numpy as np

from .blob import Blob
from .errors import LayerError, UsageError, layer_context
from .layer import create_layer
from .proto import caffe_pb2

FLOAT_BYTES = 4
_BATCHED_SOURCES = {"Data": "data_param", "ImageData": "image_data_param",
                    "HDF5Data": "hdf5_data_param", "WindowData": "window_data_param",
                    "MemoryData": "memory_data_param"}


class LayerRow:
    """One layer's figures (per image unless the name says batch)."""

    def __init__(self, name, type_name):
        self.name, self.type = name, type_name
        self.tops = []              # (name, shape with the batch size put back)
        self.in_place = False
        self.activations = 0        # values per image in the tops this layer creates
        self.unbatched = 0          # values in created tops without a batch axis
        self.weights = 0
        self.params = 0
        self.statistics = 0
        self.macs = 0               # multiply-adds per image
        self.receptive_field = None
        self.stride = None

    def as_dict(self, batch):
        return {
            "name": self.name, "type": self.type,
            "tops": [{"name": n, "shape": list(s)} for n, s in self.tops],
            "in_place": self.in_place,
            "activations_per_image": self.activations,
            "activation_bytes_per_image": self.activations * FLOAT_BYTES,
            "activation_bytes_per_batch": self.batch_values(batch) * FLOAT_BYTES,
            "weights": self.weights, "params": self.params, "statistics": self.statistics,
            "macs_per_image": self.macs, "macs_per_batch": self.macs * batch,
            "receptive_field": list(self.receptive_field) if self.receptive_field else None,
            "stride": list(self.stride) if self.stride else None,
        }

    def batch_values(self, batch):
        return (self.activations - self.unbatched) * batch + self.unbatched


class Summary:
    def __init__(self, name, phase, batch, inputs, rows):
        self.name, self.phase, self.batch, self.inputs, self.rows = \
            name, phase, batch, inputs, rows

    @property
    def totals(self):
        rows, n = self.rows, self.batch
        acts = sum(r.activations for r in rows)
        batch_values = sum(r.batch_values(n) for r in rows)
        macs = sum(r.macs for r in rows)
        return {
            "layers": len(rows), "weights": sum(r.weights for r in rows),
            "params": sum(r.params for r in rows),
            "statistics": sum(r.statistics for r in rows),
            "activations_per_image": acts,
            "activation_bytes_per_image": acts * FLOAT_BYTES,
            "activations_per_batch": batch_values,
            "activation_bytes_per_batch": batch_values * FLOAT_BYTES,
            "macs_per_image": macs, "macs_per_batch": macs * n,
        }

    def row(self, name):
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def as_dict(self):
        return {"net": self.name, "phase": "TRAIN" if self.phase == caffe_pb2.TRAIN else "TEST",
                "batch": self.batch,
                "inputs": {k: list(v) for k, v in self.inputs.items()},
                "layers": [r.as_dict(self.batch) for r in self.rows], "totals": self.totals}


# ----------------------------------------------------------------------------- building
def parse_shape(text):
    """'N,C,H,W' / 'NxCxHxW', optionally 'name=...' -> (name or None, shape tuple)."""
    name = None
    if "=" in text:
        name, text = text.split("=", 1)
        name = name.strip()
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise UsageError(f"bad input shape {text!r}: give positive sizes like 1,3,224,224")
    return name, shape


def _load(model):
    from . import prototxt
    from .upgrade import upgrade_net_param

    if isinstance(model, caffe_pb2.NetParameter):
        param = caffe_pb2.NetParameter()
        param.CopyFrom(model)
        upgrade_net_param(param)
        return param
    model = str(model)
    if "\n" in model or "{" in model:
        return prototxt.parse_net_text(model)
    return prototxt.read_net_param(model)


def _constant_fillers(message):
    """Every FillerParameter inside ``message`` becomes a zero constant (shapes only)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        items = value if _repeated(field) else [value]
        for item in items:
            if field.message_type.name == "FillerParameter":
                item.Clear()
                item.type = "constant"
            else:
                _constant_fillers(item)


def _repeated(field):
    label = getattr(field, "label", None)
    return field.is_repeated if label is None else label == field.LABEL_REPEATED


def _batch_one(param, overrides):
    """Inputs at batch 1 (shape overrides applied); returns {input: shape at batch N}."""
    inputs = {}
    first = True
    for lp in param.layer:
        if lp.type == "Input":
            shapes = lp.input_param.shape
            for i, top in enumerate(lp.top):
                spec = shapes[i] if len(shapes) > 1 else (shapes[0] if shapes else None)
                if spec is None:
                    raise LayerError(f"{layer_context(lp)}: input_param has no shape")
                shape = tuple(spec.dim)
                if top in overrides:
                    shape = overrides.pop(top)
                elif first and None in overrides:
                    shape = overrides.pop(None)
                first = False
                inputs[top] = shape
            del lp.input_param.shape[:]
            for top in lp.top:
                shape = inputs[top]
                lp.input_param.shape.add().dim.extend((1,) + tuple(shape[1:]) if shape else ())
        elif lp.type == "DummyData":
            for spec in lp.dummy_data_param.shape:
                if len(spec.dim):
                    inputs.setdefault(lp.top[0] if lp.top else lp.name, tuple(spec.dim))
                    spec.dim[0] = 1
            first = False
        elif lp.type in _BATCHED_SOURCES and lp.top:
            first = False
    if overrides:
        names = ", ".join(repr(k) for k in overrides if k) or "(first input)"
        raise UsageError(f"--input-shape: no Input layer top named {names} in the net")
    return inputs


def summarize(model, input_shapes=None, phase=caffe_pb2.TEST, batch=None):
    """A Summary of ``model`` (path, prototxt text or NetParameter).

    ``input_shapes``: {input name or None (the first input): shape}; ``batch``: the batch
    size per-batch figures use (default: the first input's declared batch).
    """
    from .net import bottom_blobs, filter_net, set_up_layer

    param = _load(model)
    param.state.phase = phase
    param = filter_net(param)
    inputs = _batch_one(param, dict(input_shapes or {}))
    blobs, fields = {}, {}
    rows = []
    built = None
    rng = np.random.default_rng(0)
    for lp in param.layer:
        lp.phase = phase
        _constant_fillers(lp)
        layer = create_layer(lp, rng=rng)
        bottoms = bottom_blobs(lp, blobs)
        tops, created = [], []
        for k, name in enumerate(lp.top):
            if k < len(lp.bottom) and lp.bottom[k] == name:
                tops.append(blobs[name])
            else:
                blob = Blob(name=name)
                blobs[name] = blob
                tops.append(blob)
                created.append(blob)
        set_up_layer(layer, lp, bottoms, tops)
        if built is None and created and created[0].shape:
            built = created[0].shape[0] or 1
            if batch is None:
                batch = next(iter(inputs.values()), created[0].shape)[0] if inputs else \
                    _declared_batch(lp, created[0].shape[0])
        row = _row(layer, lp, bottoms, tops, created, built or 1, batch or 1)
        _receptive_field(layer, lp, bottoms, tops, fields, row)
        rows.append(row)
        del layer  # its weights go now; only the top shapes are kept
    return Summary(param.name, phase, batch or 1, inputs, rows)


def _declared_batch(lp, built):
    p = _BATCHED_SOURCES.get(lp.type)
    if p and getattr(lp, p).batch_size:
        return getattr(lp, p).batch_size
    return built


def _per_image(shape, built):
    """(values per image, batched?) -- the first axis is the batch when it equals ``built``."""
    count = math.prod(shape)
    if shape and shape[0] == built:
        return count // built, True
    return count, False


def _row(layer, lp, bottoms, tops, created, built, batch):
    row = LayerRow(lp.name, lp.type)
    row.in_place = bool(tops) and not created
    for t in tops:
        shape = t.shape
        if shape and shape[0] == built:
            shape = (batch,) + tuple(shape[1:])
        row.tops.append((t.name, tuple(shape)))
    for t in created:
        n, batched = _per_image(t.shape, built)
        row.activations += n
        if not batched:
            row.unbatched += n
    counts = [b.count for b in layer.blobs]
    if lp.type == "BatchNorm":
        row.statistics = sum(counts)
    elif counts:
        row.weights = counts[0]
        row.params = sum(counts)
    if lp.type == "Convolution" and layer.blobs:
        per_out = math.prod(layer.blobs[0].shape[1:])
        row.macs = sum(_per_image(t.shape, built)[0] for t in tops) * per_out
    elif lp.type == "Deconvolution" and layer.blobs:
        per_in = math.prod(layer.blobs[0].shape[1:])
        row.macs = sum(_per_image(b.shape, built)[0] for b in bottoms) * per_in
    elif lp.type == "InnerProduct" and layer.blobs:
        n_out = lp.inner_product_param.num_output
        row.macs = _per_image(tops[0].shape, built)[0] // n_out * layer.blobs[0].count
    return row


# ----------------------------------------------------------------------------- receptive field
def _receptive_field(layer, lp, bottoms, tops, fields, row):
    """Track (field, jump) per spatial axis of every blob with spatial axes."""
    for t in tops:
        if t.name not in fields and len(t.shape) >= 3 and not bottoms:
            n = len(t.shape) - 2
            fields[t.name] = ((1,) * n, (1,) * n)
    if bottoms:
        known = [fields.get(b.name) for b in bottoms]
        if known[0] is not None:
            result = _propagate(layer, lp, bottoms, tops, known)
            for t in tops:
                if result is not None and len(t.shape) == len(result[0]) + 2:
                    fields[t.name] = result
                else:
                    fields.pop(t.name, None)
        else:
            for t in tops:
                fields.pop(t.name, None)
    if tops and tops[0].name in fields:
        rf, jump = fields[tops[0].name]
        row.receptive_field = tuple(_whole(v) for v in rf)
        row.stride = tuple(_whole(v) for v in jump)


def _whole(v):
    return int(v) if float(v).is_integer() else round(float(v), 3)


def _propagate(layer, lp, bottoms, tops, known):
    rf, jump = known[0]
    spatial_in = bottoms[0].shape[2:]
    if lp.type in ("Convolution", "Deconvolution"):
        from .layers.conv import read_geometry

        kernel, stride, _, dilation = read_geometry(layer, lp.convolution_param, len(rf))
        extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
        if lp.type == "Convolution":
            return (tuple(r + (e - 1) * j for r, e, j in zip(rf, extent, jump)),
                    tuple(j * s for j, s in zip(jump, stride)))
        return (tuple(r + (math.ceil(e / s) - 1) * j for r, e, s, j in
                      zip(rf, extent, stride, jump)),
                tuple(j / s for j, s in zip(jump, stride)))
    if lp.type == "Pooling":
        kernel, stride = _pool_geometry(lp.pooling_param, spatial_in)
        return (tuple(r + (k - 1) * j for r, k, j in zip(rf, kernel, jump)),
                tuple(j * s for j, s in zip(jump, stride)))
    if lp.type == "LRN" and lp.lrn_param.norm_region == caffe_pb2.LRNParameter.WITHIN_CHANNEL:
        size = lp.lrn_param.local_size
        return tuple(r + (size - 1) * j for r, j in zip(rf, jump)), jump
    if lp.type == "Crop":
        return rf, jump
    if all(t.shape[2:] == tuple(spatial_in) for t in tops):
        fields_known = [k for k in known if k is not None and len(k[0]) == len(rf)]
        widest = tuple(max(k[0][i] for k in fields_known) for i in range(len(rf)))
        return widest, jump
    return None


def _pool_geometry(p, spatial):
    if p.global_pooling:
        return tuple(spatial), (1,) * len(spatial)
    if p.HasField("kernel_h") or p.HasField("kernel_w"):
        kernel = (p.kernel_h, p.kernel_w)
    else:
        kernel = (p.kernel_size,) * len(spatial)
    if p.HasField("stride_h") or p.HasField("stride_w"):
        stride = (p.stride_h, p.stride_w)
    else:
        stride = (p.stride,) * len(spatial)
    return kernel, stride


# ----------------------------------------------------------------------------- output
def human(n, unit=""):
    """3.2M, 15.5G ... (decimal prefixes, as the classic tables)."""
    n = float(n)
    for prefix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000 or prefix == "T":
            text = f"{n:.0f}" if prefix == "" else f"{n:.1f}"
            return f"{text}{prefix}{unit}"
        n /= 1000
    return f"{n:.1f}T{unit}"


def human_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _dims(values):
    if not values:
        return "-"
    if len(set(values)) == 1:
        return str(values[0])
    return "x".join(str(v) for v in values)


def _shape_text(row):
    if not row.tops:
        return "-"
    text = "x".join(str(d) for d in row.tops[0][1]) or "scalar"
    if len(row.tops) > 1:
        text += f" (+{len(row.tops) - 1})"
    return text


def format_text(summary):
    n = summary.batch
    head = ("layer", "type", "top shape", "activations", "memory/image", f"memory/batch({n})",
            "weights", "params", "mult-adds", "RF", "stride")
    lines = []
    for r in summary.rows:
        lines.append((r.name, r.type, _shape_text(r) + (" (in place)" if r.in_place else ""),
                      f"{r.activations:,}", human_bytes(r.activations * FLOAT_BYTES),
                      human_bytes(r.batch_values(n) * FLOAT_BYTES),
                      f"{r.weights:,}", f"{r.params:,}", human(r.macs) if r.macs else "-",
                      _dims(r.receptive_field), _dims(r.stride)))
    t = summary.totals
    lines.append(("total", "", "", f"{t['activations_per_image']:,}",
                  human_bytes(t["activation_bytes_per_image"]),
                  human_bytes(t["activation_bytes_per_batch"]), f"{t['weights']:,}",
                  f"{t['params']:,}", human(t["macs_per_image"]), "", ""))
    widths = [max(len(row[i]) for row in [head] + lines) for i in range(len(head))]
    left = {0, 1, 2}

    def fmt(row):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    inputs = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in summary.inputs.items())
    out = [f"net: {summary.name or '(unnamed)'}   batch: {n}" +
           (f"   inputs: {inputs}" if inputs else ""), fmt(head),
           "  ".join("-" * w for w in widths)]
    out += [fmt(row) for row in lines[:-1]]
    out += ["  ".join("-" * w for w in widths), fmt(lines[-1]), ""]
    out.append(f"parameters: {t['params']:,} ({human(t['params'])})" +
               (f", plus {t['statistics']:,} BatchNorm statistics" if t["statistics"] else ""))
    out.append(f"multiply-adds: {t['macs_per_image']:,} per image ({human(t['macs_per_image'])})"
               f", {human(t['macs_per_batch'])} per batch of {n}")
    out.append(f"activations: {t['activations_per_image']:,} values per image "
               f"({human(t['activations_per_image'])}, "
               f"{human_bytes(t['activation_bytes_per_image'])} as float32), "
               f"{human_bytes(t['activation_bytes_per_batch'])} per batch of {n} "
               "(forward only; training also keeps a gradient per value)")
    return "\n".join(out) + "\n"


CSV_COLUMNS = ("layer", "type", "tops", "top_shapes", "in_place", "activations_per_image",
               "activation_bytes_per_image", "activation_bytes_per_batch", "weights", "params",
               "statistics", "macs_per_image", "macs_per_batch", "receptive_field", "stride")


def format_csv(summary):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in summary.rows:
        d = r.as_dict(summary.batch)
        writer.writerow([r.name, r.type, ";".join(n for n, _ in r.tops),
                         ";".join("x".join(map(str, s)) for _, s in r.tops), int(r.in_place),
                         d["activations_per_image"], d["activation_bytes_per_image"],
                         d["activation_bytes_per_batch"], r.weights, r.params, r.statistics,
                         r.macs, d["macs_per_batch"],
                         "x".join(map(str, r.receptive_field or ())),
                         "x".join(map(str, r.stride or ()))])
    t = summary.totals
    writer.writerow(["TOTAL", "", "", "", "", t["activations_per_image"],
                     t["activation_bytes_per_image"], t["activation_bytes_per_batch"],
                     t["weights"], t["params"], t["statistics"], t["macs_per_image"],
                     t["macs_per_batch"], "", ""])
    return out.getvalue()


def format_json(summary):
    return json.dumps(summary.as_dict(), indent=1) + "\n"


FORMATS = {"text": format_text, "csv": format_csv, "json": format_json}
