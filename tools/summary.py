"""``netdef summary NET``: per-layer shapes, parameters, activation memory, multiply-adds
and receptive fields, with totals (text, CSV or JSON)."""

HELP = "per-layer shapes, parameters, memory, multiply-adds and receptive fields of a net"


def add_arguments(p):
    p.add_argument("net", help="the net definition (.prototxt)")
    p.add_argument("--input-shape", "--input_shape", dest="input_shape", action="append",
                   default=[], metavar="[NAME=]N,C,H,W",
                   help="shape of the first input (or of input NAME); repeat for several")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size for per-batch figures (default: the input's)")
    p.add_argument("--phase", default="TEST", choices=["TRAIN", "TEST"])
    p.add_argument("--format", default="text", choices=["text", "csv", "json"])
    p.add_argument("--output", "-o", default=None, help="write here instead of stdout")


def run(args):
    from netdef.atomic import atomic_write
    from netdef.errors import UsageError
    from netdef.proto import caffe_pb2
    from netdef.summary import FORMATS, parse_shape, summarize

    shapes = dict(parse_shape(s) for s in args.input_shape)
    if args.batch is not None and args.batch <= 0:
        raise UsageError("--batch must be positive")
    batch = args.batch
    if batch is None and shapes:
        batch = next(iter(shapes.values()))[0]
    phase = caffe_pb2.TRAIN if args.phase == "TRAIN" else caffe_pb2.TEST
    summary = summarize(args.net, shapes, phase=phase, batch=batch)
    text = FORMATS[args.format](summary)
    if args.output:
        with atomic_write(args.output, "w") as f:
            f.write(text)
    else:
        print(text, end="")
    return 0
