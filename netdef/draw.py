"""Net graphs: pycaffe's ``caffe.draw``, written as Graphviz DOT text.

Layers are boxes (convolution, pooling and inner-product ones show their geometry, in-place
"neuron" layers are green), blobs are octagons, edges carry the output counts of
convolutions and inner products.  DOT text needs nothing installed; an image (png, svg,
pdf...) is rendered with pydot, else with Graphviz's ``dot`` program, else (raster
formats: png, jpg, gif, bmp, tiff, webp, pdf) with a simple built-in layout drawn by
Pillow (``netdef.draw_image``); only svg and other vector formats then need Graphviz.
"""

import os
import shutil
import subprocess

from .atomic import atomic_write
from .errors import NetdefError
from .proto import caffe_pb2

LAYER_COLOR = "#6495ED"
NEURON_COLOR = "#90EE90"
BLOB_COLOR = "#E0E0E0"
TYPE_COLORS = {"Convolution": "#FF5050", "Deconvolution": "#FF5050", "Pooling": "#FF9900",
               "InnerProduct": "#CC33FF"}
_POOL_NAMES = {v: k for k, v in caffe_pb2.PoolingParameter.PoolMethod.items()}


class DrawError(NetdefError):
    """An image format that needs Graphviz where none is installed."""


class GraphvizMissing(DrawError):
    """Neither pydot nor Graphviz's ``dot`` can render; raster formats fall back to Pillow."""


def _net_param(net):
    """A NetParameter from a NetParameter, a Net, a path or prototxt text."""
    if isinstance(net, caffe_pb2.NetParameter):
        return net
    if hasattr(net, "param") and isinstance(net.param, caffe_pb2.NetParameter):
        return net.param
    from . import prototxt

    text = str(net)
    if "\n" in text or "{" in text:
        return prototxt.parse_net_text(text)
    return prototxt.read_net_param(text)


def _in_phase(layer, phase):
    """pycaffe's rule: a layer is drawn unless its include rules name another phase."""
    if phase is None:
        return True
    phases = [rule.phase for rule in layer.include if rule.HasField("phase")]
    return not phases or phase in phases


def _first(values, default):
    return values[0] if len(values) else default


def layer_label(layer, rankdir="LR", display_lrm=False):
    sep = "\\n" if rankdir in ("TB", "BT") else " "
    parts = [layer.name, f"({layer.type})"]
    if layer.type in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        kernel = p.kernel_h if p.HasField("kernel_h") else _first(p.kernel_size, 1)
        stride = p.stride_h if p.HasField("stride_h") else _first(p.stride, 1)
        pad = p.pad_h if p.HasField("pad_h") else _first(p.pad, 0)
        parts += [f"kernel size: {kernel}", f"stride: {stride}", f"pad: {pad}"]
    elif layer.type == "Pooling":
        p = layer.pooling_param
        kernel = p.kernel_h if p.HasField("kernel_h") else p.kernel_size
        stride = p.stride_h if p.HasField("stride_h") else p.stride
        pad = p.pad_h if p.HasField("pad_h") else p.pad
        parts[1] = f"({layer.type} {_POOL_NAMES.get(p.pool, p.pool)})"
        if p.global_pooling:
            parts.append("global")
        else:
            parts += [f"kernel size: {kernel}", f"stride: {stride}", f"pad: {pad}"]
    if display_lrm and layer.param:
        lr = ", ".join(f"{s.lr_mult:g}" for s in layer.param)
        decay = ", ".join(f"{s.decay_mult:g}" for s in layer.param)
        parts += [f"lr mult: {lr}", f"decay mult: {decay}"]
    return sep.join(parts)


def edge_label(layer):
    if layer.type == "Data":
        return str(layer.data_param.batch_size)
    if layer.type in ("Convolution", "Deconvolution"):
        return str(layer.convolution_param.num_output)
    if layer.type == "InnerProduct":
        return str(layer.inner_product_param.num_output)
    return None


def _quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace(
        "\\\\n", "\\n") + '"'


def _attrs(**kw):
    return "[" + ", ".join(f"{k}={_quote(v)}" for k, v in kw.items() if v is not None) + "]"


def net_to_dot(net, rankdir="LR", label_edges=True, phase=None, display_lrm=False,
               shapes=None):
    """DOT text of the net; ``shapes`` ({blob: shape}) labels blobs with their shapes."""
    param = _net_param(net)
    lines = [f"digraph {_quote(param.name or 'net')} {{",
             f"  graph {_attrs(rankdir=rankdir)};",
             '  node [fontname="Helvetica"];']
    blobs = set()
    edges = []
    for i, layer in enumerate(param.layer):
        if not _in_phase(layer, phase):
            continue
        node = f"layer{i}:{layer.name}"
        neuron = len(layer.bottom) == 1 and list(layer.bottom) == list(layer.top)
        color = NEURON_COLOR if neuron else TYPE_COLORS.get(layer.type, LAYER_COLOR)
        style = _attrs(label=layer_label(layer, rankdir, display_lrm), shape="record",
                       style="filled", fillcolor=color)
        lines.append(f"  {_quote(node)} {style};")
        for b in layer.bottom:
            blobs.add(b)
            edges.append((f"blob:{b}", node, None))
        label = edge_label(layer) if label_edges else None
        for t in layer.top:
            blobs.add(t)
            edges.append((node, f"blob:{t}", label))
    for b in sorted(blobs):
        text = b if not shapes or b not in shapes else \
            f"{b}\\n{'x'.join(str(d) for d in shapes[b])}"
        style = _attrs(label=text, shape="octagon", style="filled", fillcolor=BLOB_COLOR)
        lines.append(f"  {_quote('blob:' + b)} {style};")
    for a, b, label in edges:
        lines.append(f"  {_quote(a)} -> {_quote(b)}" + (f" {_attrs(label=label)}" if label
                                                         else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text, fmt):
    """Image bytes in ``fmt`` (png, svg, pdf...) from DOT text, via pydot or ``dot``."""
    fmt = fmt.lower()
    if fmt in ("dot", "gv", "raw"):
        return dot_text.encode()
    try:
        import pydot
    except ImportError:
        pydot = None
    if pydot is not None:
        try:
            graph = pydot.graph_from_dot_data(dot_text)[0]
            return graph.create(format=fmt)
        except (OSError, FileNotFoundError, AssertionError) as exc:
            if shutil.which("dot") is None:
                why = f"pydot could not run Graphviz ({str(exc).rstrip('.')})"
                raise GraphvizMissing(_missing(fmt, why)) from None
    if shutil.which("dot") is None:
        raise GraphvizMissing(_missing(fmt, "neither pydot nor Graphviz's `dot` program is "
                                            "installed"))
    done = subprocess.run(["dot", f"-T{fmt}"], input=dot_text.encode(), capture_output=True)
    if done.returncode:
        raise DrawError(f"Graphviz could not render {fmt}: "
                        f"{done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _missing(fmt, why):
    return (f"cannot draw a .{fmt} image: {why}. Install Graphviz (e.g. `apt install "
            "graphviz`) and pydot (`pip install 'netdef[draw]'`), or write DOT text instead "
            "(`netdef draw NET OUT.dot`) and render it elsewhere")


def get_pooling_types_dict():
    """pycaffe's name: {pooling enum value: its name}."""
    return dict(_POOL_NAMES)


def choose_color_by_layertype(layertype):
    """pycaffe's name: the fill colour of a layer box."""
    return TYPE_COLORS.get(layertype, LAYER_COLOR)


get_layer_label = layer_label  # pycaffe's names
get_edge_label = edge_label


def get_pydot_graph(caffe_net, rankdir="LR", label_edges=True, phase=None, display_lrm=False):
    """pycaffe's name: the graph as a ``pydot.Dot`` (needs pydot)."""
    try:
        import pydot
    except ImportError:
        raise DrawError("get_pydot_graph needs pydot: pip install 'netdef[draw]' "
                        "(net_to_dot gives the same graph as DOT text without it)") from None
    text = net_to_dot(caffe_net, rankdir, label_edges, phase, display_lrm)
    return pydot.graph_from_dot_data(text)[0]


def draw_net(caffe_net, rankdir="LR", ext="png", phase=None, display_lrm=False):
    """pycaffe's name: the drawing as bytes in format ``ext``."""
    return _draw(caffe_net, ext, rankdir, phase, display_lrm)


def draw_net_to_file(caffe_net, filename, rankdir="LR", phase=None, display_lrm=False,
                     shapes=None):
    """Write the drawing; the format follows the extension (.dot/.gv write DOT text)."""
    ext = os.path.splitext(filename)[1].lstrip(".").lower() or "dot"
    data = _draw(caffe_net, ext, rankdir, phase, display_lrm, shapes)
    with atomic_write(filename) as f:
        f.write(data)
    return filename


def _draw(caffe_net, ext, rankdir, phase, display_lrm, shapes=None):
    """Image bytes through Graphviz, or through the Pillow layout when Graphviz is absent."""
    param = _net_param(caffe_net)
    try:
        return render(net_to_dot(param, rankdir, True, phase, display_lrm, shapes), ext)
    except GraphvizMissing:
        from .draw_image import FORMATS, render_image

        if ext.lower() not in FORMATS:
            raise
        return render_image(param, ext, rankdir, phase, display_lrm, shapes)
