"""``netdef train``: Caffe's ``caffe train`` (solver, weights, snapshot, signal effects)."""

from netdef.errors import UsageError

HELP = "train or fine-tune a model from a solver prototxt"


def add_arguments(p):
    p.add_argument("--solver", required=True, help="the solver definition (.prototxt)")
    p.add_argument("--weights", default="",
                   help="comma-separated caffemodels to initialise from (fine-tuning)")
    p.add_argument("--snapshot", default="", help="a .solverstate to resume training from")
    p.add_argument("--sigint_effect", default="stop", choices=["stop", "snapshot", "none"],
                   help="what Ctrl-C does (default: stop, after a final snapshot)")
    p.add_argument("--sighup_effect", default="snapshot", choices=["stop", "snapshot", "none"],
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
        raise UsageError("give either --weights (fine-tune) or --snapshot (resume), not both")
    if args.gpu is not None:
        logger.info("--gpu %s ignored: netdef computes on the CPU", args.gpu)
    param = read_solver_param(args.solver)
    if args.level is not None:
        param.train_state.level = args.level
    if args.stage:
        param.train_state.stage.extend(s for s in args.stage.split(",") if s)
    if args.iterations is not None:
        param.max_iter = args.iterations
    weights = [w for w in args.weights.split(",") if w]
    logger.info("Using solver %s", args.solver)
    solver = Solver(param, solver_path=args.solver, weights=weights)
    with SignalHandler(args.sigint_effect, args.sighup_effect) as signals:
        solver.action_request = signals
        solver.solve(args.snapshot or None)
    return 0
