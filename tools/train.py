"""``netdef train``: Caffe's ``caffe train`` (solver, weights, snapshot, signal effects).

As Caffe's tool: ``--weights a,b`` replaces the solver's own ``weights`` (fine-tuning);
``--snapshot`` resumes from a ``.solverstate`` (and ignores the solver's ``weights``);
SIGINT (and SIGTERM) stops after a snapshot by default, SIGHUP takes a snapshot and goes on.

Data-parallel (Caffe's multi-GPU semantics over MPI, see netdef/parallel): started by
``mpiexec -n N netdef train ...`` the N processes train one model together; ``--procs N``
starts that mpiexec on this machine (``--hostfile`` on several).
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
    p.add_argument("--procs", type=int, default=0,
                   help="data-parallel training on this many processes: starts `mpiexec -n "
                        "PROCS` for you (needs netdef[mpi]); the effective batch is "
                        "batch_size x PROCS")
    p.add_argument("--hostfile", default="",
                   help="with --procs: the MPI hostfile listing the machines to run on")


def run(args):
    from netdef import parallel
    from netdef.log import setup_logging

    setup_logging()
    if args.procs < 0:
        raise UsageError(f"--procs must be positive, not {args.procs}")
    if args.hostfile and args.procs <= 1:
        raise UsageError("--hostfile goes with --procs N (N > 1)")
    if args.procs > 1 and parallel.launched_size() <= 1:
        from netdef.parallel.launch import launch

        return launch(args.procs, _forwarded(args), args.hostfile or None)
    world = parallel.init()  # None unless started by mpiexec with several processes
    with parallel.guard(world):
        return _train(args, world)


def _forwarded(args):
    """The command line the ranks run: this one without --procs / --hostfile."""
    out = ["train", "--solver", args.solver]
    for flag in ("weights", "snapshot", "sigint_effect", "sighup_effect", "stage", "gpu"):
        value = getattr(args, flag)
        if value:
            out += [f"--{flag}", str(value)]
    for flag in ("level", "iterations"):
        if getattr(args, flag) is not None:
            out += [f"--{flag}", str(getattr(args, flag))]
    if getattr(args, "allow_python_layers", False):
        out.append("--allow-python-layers")
    if getattr(args, "debug", False):
        out.insert(0, "--debug")
    return out


def _train(args, world):
    from netdef.log import logger
    from netdef.prototxt import read_solver_param
    from netdef.solvers import SignalHandler, Solver

    if world is not None and args.procs > 1 and args.procs != world.size:
        logger.warning("--procs %d ignored: mpiexec started %d processes", args.procs,
                       world.size)
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
