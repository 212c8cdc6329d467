"""Without Graphviz, raster drawings (pycaffe's ``draw_net(net, 'LR')`` default: png) come
from the built-in Pillow layout; vector formats still ask for Graphviz."""

import io
import os

import pytest
from PIL import Image

from netdef import draw
from netdef.draw import DrawError, GraphvizMissing
from netdef.prototxt import parse_net_text

NET = parse_net_text("""
name: "small"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { kernel_size: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
        inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "data" top: "loss"
        include { phase: TRAIN } }
""")


@pytest.fixture
def no_graphviz(monkeypatch):
    def missing(dot_text, fmt):
        if fmt in ("dot", "gv", "raw"):
            return dot_text.encode()
        raise GraphvizMissing(f"cannot draw a .{fmt} image: no Graphviz")

    monkeypatch.setattr(draw, "render", missing)


def _image(data):
    return Image.open(io.BytesIO(data))


def test_png_without_graphviz(no_graphviz):
    data = draw.draw_net(NET, "LR")
    assert data.startswith(b"\x89PNG")
    wide = _image(data).size
    tall = _image(draw.draw_net(NET, "TB")).size
    assert wide[0] > wide[1] and tall[1] > tall[0]


def test_phase_filter_and_other_raster_formats(no_graphviz, tmp_path):
    all_layers = _image(draw.draw_net(NET, "LR")).size
    test_only = _image(draw.draw_net(NET, "LR", phase=1)).size
    assert test_only[0] < all_layers[0]  # the loss layer and its top are left out
    path = draw.draw_net_to_file(NET, str(tmp_path / "net.jpg"), "BT", display_lrm=True)
    assert _image(open(path, "rb").read()).format == "JPEG"


def test_vector_formats_still_need_graphviz(no_graphviz, tmp_path):
    with pytest.raises(DrawError, match="svg"):
        draw.draw_net_to_file(NET, str(tmp_path / "net.svg"))
    assert not os.path.exists(tmp_path / "net.svg")
    assert draw.draw_net(NET, ext="dot").startswith(b"digraph")


def test_blob_shapes_make_blob_boxes_taller(no_graphviz, tmp_path):
    plain = _image(draw.draw_net(NET, "LR")).size
    path = draw.draw_net_to_file(NET, str(tmp_path / "net.png"), "LR",
                                 shapes={"data": (1, 3, 8, 8), "conv": (1, 4, 6, 6)})
    assert _image(open(path, "rb").read()).size[1] > plain[1]
