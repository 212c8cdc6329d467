"""``netdef train``: Caffe's ``caffe train`` (solver, weights, snapshot, signal effects).

As Caffe's tool: ``--weights a,b`` replaces the solver's own ``weights`` (fine-tuning);
``--snapshot`` resumes from a ``.solverstate`` (and ignores the solver's ``weights``);
SIGINT (and SIGTERM) stops after a snapshot by default, SIGHUP takes a snapshot and goes on.
"""

from netdef.errors import UsageError

HELP = "train or fine-tune a model from a solver prototxt"
EFFECTS = ["stop", "snapshot", "none"]


def add_arguments(p):
    p.add_argument("--solver", required=True, help="the solver definition (.prototxt)")
    p.add_argument("--weights", default="",
                   help="comma-separated caffemodels to initialise from (fine-tuning); "
                        "replaces the solver's `weights`")
    p.add_argument("--snapshot", default="",
                   help="a .solverstate (.solverstate.h5) to resume training from; the "
                        ".solverstate.netdef written beside it (if any) also restores the data "
                        "cursors and random streams, so the run continues exactly")
    p.add_argument("--sigint_effect", default="stop", choices=EFFECTS,
                   help="what SIGINT (Ctrl-C) and SIGTERM do: stop (after a snapshot, when "
                        "snapshot_after_train), snapshot, or none (default: stop)")
    p.add_argument("--sighup_effect", default="snapshot", choices=EFFECTS,
                   help="what SIGHUP does (default: snapshot)")
    p.add_argument("--level", type=int, default=None, help="train net state level")
    p.add_argument("--stage", default="", help="comma-separated train net stages")
    p.add_argument("--gpu", default=None, help="accepted for compatibility; netdef runs on the CPU")
    p.add_argument("--iterations", type=int, default=None, help="override max_iter")


def run(args):
    from netdef.log import logger, setup_logging
    from netdef.prototxt import read_solver_param
    from netdef.solvers import SignalHandler, Solver

    setup_logging()
    if args.weights and args.snapshot:
        raise UsageError("give a snapshot to resume training or weights to fine-tune, "
                         "not both")
    if args.gpu is not None:
        logger.info("--gpu %s ignored: netdef computes on the CPU", args.gpu)
    param = read_solver_param(args.solver)
    if args.level is not None:
        param.train_state.level = args.level
    if args.stage:
        param.train_state.stage.extend(s for s in args.stage.split(",") if s)
    if args.iterations is not None:
        param.max_iter = args.iterations
    if args.snapshot:
        param.ClearField("weights")
    elif args.weights:
        param.ClearField("weights")
        param.weights.append(args.weights)
    logger.info("Using solver %s", args.solver)
    # Handlers first: a signal while the nets are built is acted on at the first step.
    with SignalHandler(args.sigint_effect, args.sighup_effect) as signals:
        solver = Solver(param, solver_path=args.solver)
        solver.action_request = signals
        if args.snapshot:
            logger.info("Resuming from %s", args.snapshot)
        solver.solve(args.snapshot or None)
    return 0
