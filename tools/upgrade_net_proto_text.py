"""``netdef upgrade_net_proto_text IN OUT``: Caffe's tool of that name.

Reads a net prototxt in any old format (V0, V1, input fields, old BatchNorm params),
upgrades it as Caffe does, and writes the current format.  The output is written even
when the input was already current; the exit status is 1 when some old field could
not be carried over.
"""

HELP = "upgrade a net prototxt from Caffe's older formats to the current one"


def add_arguments(p):
    p.add_argument("input", metavar="IN", help="net prototxt in an old (or current) format")
    p.add_argument("output", metavar="OUT", help="where to write the upgraded prototxt")


def run(args):
    from netdef.log import setup_logging
    from netdef.prototxt import upgrade_net_file

    setup_logging()
    return 0 if upgrade_net_file(args.input, args.output, binary=False) else 1
