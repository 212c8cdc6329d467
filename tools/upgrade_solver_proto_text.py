"""``netdef upgrade_solver_proto_text IN OUT``: Caffe's tool of that name.

Replaces the deprecated ``solver_type: NESTEROV`` enum with ``type: "Nesterov"``.
"""

HELP = "upgrade a solver prototxt (solver_type enum -> type string)"


def add_arguments(p):
    p.add_argument("input", metavar="IN", help="solver prototxt")
    p.add_argument("output", metavar="OUT", help="where to write the upgraded prototxt")


def run(args):
    from netdef import prototxt, upgrade
    from netdef.errors import PrototxtError
    from netdef.log import logger, setup_logging
    from netdef.proto import caffe_pb2

    setup_logging()
    solver = caffe_pb2.SolverParameter()
    try:
        prototxt.read_text_proto(args.input, solver)
    except PrototxtError as exc:
        exc.exit_code = 2  # Caffe's tool: 2 when the input does not parse
        raise
    if upgrade.solver_needs_upgrade(solver):
        upgrade.upgrade_solver_param(solver, args.input)
    else:
        logger.error("File already in latest proto format: %s", args.input)
    prototxt.write_text(solver, args.output)
    logger.info("Wrote upgraded SolverParameter text proto to %s", args.output)
    return 0
