"""``netdef draw NET OUT``: pycaffe's draw_net.py -- the net as a graph.

OUT's extension picks the format: .dot/.gv write Graphviz text (nothing to install);
.png, .svg, .pdf... need Graphviz (and pydot, ``pip install 'netdef[draw]'``).
"""

HELP = "draw a net as a graph (.dot always; .png/.svg with Graphviz)"


def add_arguments(p):
    p.add_argument("net", help="the net definition (.prototxt)")
    p.add_argument("output", help="the drawing: .dot, .png, .svg, .pdf ...")
    p.add_argument("--rankdir", default="LR", choices=["LR", "TB", "BT", "RL"],
                   help="direction of the graph layout (default LR: left to right)")
    p.add_argument("--phase", default="ALL", choices=["TRAIN", "TEST", "ALL"],
                   help="draw only the layers of this phase (default: all)")
    p.add_argument("--display-lrm", "--display_lrm", dest="display_lrm", action="store_true",
                   help="show each layer's lr and decay multipliers")
    p.add_argument("--shapes", action="store_true",
                   help="label blobs with their shapes (builds the net's shapes)")


def run(args):
    from netdef.draw import draw_net_to_file
    from netdef.proto import caffe_pb2
    from netdef.prototxt import read_net_param

    phase = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST, "ALL": None}[args.phase]
    param = read_net_param(args.net)
    shapes = None
    if args.shapes:
        from netdef.summary import summarize

        summary = summarize(param, phase=caffe_pb2.TRAIN if phase == caffe_pb2.TRAIN
                            else caffe_pb2.TEST)
        shapes = {name: shape for row in summary.rows for name, shape in row.tops}
    draw_net_to_file(param, args.output, args.rankdir, phase, args.display_lrm, shapes)
    print(f"Drawing net to {args.output}")
    return 0
