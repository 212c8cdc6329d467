"""``netdef upgrade_net_proto_binary IN OUT``: Caffe's tool of that name.

Reads a binary NetParameter (typically an old .caffemodel with V0/V1 layers), upgrades
it as Caffe does, and writes it back in binary form, weights included.
"""

HELP = "upgrade a binary net (e.g. an old .caffemodel) to the current format"


def add_arguments(p):
    p.add_argument("input", metavar="IN", help="binary NetParameter (.caffemodel)")
    p.add_argument("output", metavar="OUT", help="where to write the upgraded binary proto")


def run(args):
    from netdef.log import setup_logging
    from netdef.prototxt import upgrade_net_file

    setup_logging()
    return 0 if upgrade_net_file(args.input, args.output, binary=True) else 1
