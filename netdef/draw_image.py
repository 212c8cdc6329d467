"""Net drawings as raster images with Pillow alone, for machines without Graphviz.

pycaffe draws nets through pydot and Graphviz; when neither is installed, ``netdef.draw``
falls back to this simple layered layout so that ``draw_net(net, "LR")`` and
``draw_net_to_file(net, "net.png")`` still give a picture.  Layers and blobs keep
``netdef.draw``'s colours and labels; each layer sits one rank after its deepest bottom
and its tops one rank after it; an in-place layer sits beside the blob it rewrites.
Ranks run left to right (``LR``), top to bottom (``TB``), or reversed (``RL``, ``BT``).
"""

import io

from PIL import Image, ImageDraw, ImageFont

# Formats Pillow writes, by file extension.
FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "gif": "GIF", "bmp": "BMP",
           "tif": "TIFF", "tiff": "TIFF", "webp": "WEBP", "pdf": "PDF"}
PAD = 6           # text padding inside a box
GAP_RANK = 36     # space between ranks
GAP_NODE = 14     # space between nodes of one rank
MARGIN = 12


class _Node:
    __slots__ = ("key", "lines", "color", "shape", "rank", "w", "h", "x", "y")

    def __init__(self, key, lines, color, shape):
        self.key, self.lines, self.color, self.shape = key, lines, color, shape
        self.rank = 0
        self.w = self.h = self.x = self.y = 0


def _layout_nodes(param, phase, display_lrm, colors, shapes=None):
    """Nodes (with ranks) and edges ``(from key, to key, label)`` of the net; ``shapes``
    ({blob: shape}) adds a second line to blob labels."""
    shapes = shapes or {}

    def blob_lines(name):
        if name in shapes:
            return [name, "x".join(str(d) for d in shapes[name])]
        return [name]

    from .draw import _in_phase, edge_label, layer_label

    nodes, edges, blob_node = {}, [], {}
    for i, layer in enumerate(param.layer):
        if not _in_phase(layer, phase):
            continue
        in_place = len(layer.bottom) == 1 and list(layer.bottom) == list(layer.top)
        label = layer_label(layer, "TB", display_lrm).split("\\n")
        node = _Node(f"layer{i}", label, colors(layer, in_place), "box")
        bottoms = [blob_node[b] for b in layer.bottom if b in blob_node]
        for b in layer.bottom:
            if b not in blob_node:  # a bottom nobody made (an old-style input): a source
                blob_node[b] = nodes[f"blob:{b}"] = _Node(f"blob:{b}", blob_lines(b), None,
                                                          "blob")
                bottoms.append(blob_node[b])
        node.rank = (max(n.rank for n in bottoms) + (0 if in_place else 1)) if bottoms else 0
        nodes[node.key] = node
        for b in layer.bottom:
            edges.append((blob_node[b].key, node.key, None))
        label = edge_label(layer)
        for t in layer.top:
            if t in blob_node and in_place:
                edges.append((node.key, blob_node[t].key, label))
                continue
            top = blob_node[t] = nodes[f"blob:{t}#{i}"] = _Node(f"blob:{t}#{i}", blob_lines(t),
                                                                 None, "blob")
            top.rank = node.rank + 1
            edges.append((node.key, top.key, label))
    return list(nodes.values()), edges


def _place(nodes, rankdir, measure):
    """Sizes and positions; returns the canvas size."""
    for n in nodes:
        widths = [measure(line) for line in n.lines]
        n.w = max(widths) + 2 * PAD
        n.h = len(n.lines) * 12 + 2 * PAD
    ranks = {}
    for n in nodes:
        ranks.setdefault(n.rank, []).append(n)
    across = rankdir in ("LR", "RL")  # ranks advance along x
    pos = MARGIN
    span = 0
    order = sorted(ranks)
    if rankdir in ("RL", "BT"):
        order.reverse()
    for r in order:
        members = ranks[r]
        depth = max((n.w if across else n.h) for n in members)
        offset = MARGIN
        for n in members:
            if across:
                n.x, n.y = pos + (depth - n.w) // 2, offset
                offset += n.h + GAP_NODE
            else:
                n.x, n.y = offset, pos + (depth - n.h) // 2
                offset += n.w + GAP_NODE
        span = max(span, offset)
        pos += depth + GAP_RANK
    size = (pos, span + MARGIN) if across else (span + MARGIN, pos)
    return max(size[0], 1), max(size[1], 1)


def _anchor(node, towards):
    """Where an edge leaves ``node`` heading for ``towards`` (the middle of a side)."""
    cx, cy = node.x + node.w / 2, node.y + node.h / 2
    tx, ty = towards.x + towards.w / 2, towards.y + towards.h / 2
    if abs(tx - cx) * node.h >= abs(ty - cy) * node.w:
        return (node.x + node.w if tx > cx else node.x), cy
    return cx, (node.y + node.h if ty > cy else node.y)


def render_image(param, fmt, rankdir="LR", phase=None, display_lrm=False, shapes=None):
    """The drawing of NetParameter ``param`` as image bytes in ``fmt`` (see FORMATS)."""
    from .draw import BLOB_COLOR, LAYER_COLOR, NEURON_COLOR, TYPE_COLORS

    def colors(layer, in_place):
        return NEURON_COLOR if in_place else TYPE_COLORS.get(layer.type, LAYER_COLOR)

    font = ImageFont.load_default()
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    nodes, edges = _layout_nodes(param, phase, display_lrm, colors, shapes)
    size = _place(nodes, rankdir if rankdir in ("LR", "RL", "TB", "BT") else "LR",
                  lambda text: int(scratch.textlength(text, font=font)) + 1)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    by_key = {n.key: n for n in nodes}
    for a, b, label in edges:
        src, dst = by_key[a], by_key[b]
        p0, p1 = _anchor(src, dst), _anchor(dst, src)
        draw.line([p0, p1], fill="black", width=1)
        draw.ellipse([p1[0] - 2, p1[1] - 2, p1[0] + 2, p1[1] + 2], fill="black")
        if label:
            draw.text(((p0[0] + p1[0]) / 2 + 2, (p0[1] + p1[1]) / 2 - 11), label, fill="black",
                      font=font)
    for n in nodes:
        box = [n.x, n.y, n.x + n.w, n.y + n.h]
        if n.shape == "blob":
            draw.rounded_rectangle(box, radius=6, fill=BLOB_COLOR, outline="black")
        else:
            draw.rectangle(box, fill=n.color, outline="black")
        for k, line in enumerate(n.lines):
            draw.text((n.x + PAD, n.y + PAD + 12 * k), line, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, format=FORMATS[fmt.lower()])
    return out.getvalue()
