"""Synchronous data-parallel training over MPI, with Caffe's multi-GPU semantics.

``mpiexec -n N netdef train --solver S`` (or ``netdef train --procs N --solver S``) trains
one model on N processes, on one machine or several:

- rank 0's parameters are broadcast at the start (its ``random_seed`` fills them; rank r
  seeds its own random streams -- Dropout and the like -- with random_seed + r, as Caffe);
- each rank runs its own ``batch_size``, so the effective batch is batch_size x N;
- after the iter_size forward/backward passes, the gradients are averaged with one
  all-reduce, before clipping, iter_size normalisation and regularisation;
- Data, ImageData and HDF5Data deal record i of an epoch to rank i mod N
  (``netdef.data.shard``); test nets never shard;
- rank 0 alone builds and runs the test nets, logs and writes snapshots; the displayed
  loss is the mean of the ranks' losses (the loss of the whole effective batch);
- an error on one rank stops every rank with a message naming that rank and the cause.

Nothing here imports mpi4py unless the process was started by an MPI launcher with more
than one process (or ``init(force=True)`` is called); plain netdef stays single-process.
"""

import os
import sys
import traceback
from contextlib import contextmanager

from ..errors import NetdefError
from ..log import logger

__all__ = ["current", "init", "launched_size", "guard", "prepare_solver", "reset"]

# Variables MPI launchers set in every process they start (MPICH/Intel MPI's hydra and
# Slurm's PMI, Open MPI, MVAPICH).
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")

_world = None


def launched_size(environ=None):
    """How many processes the MPI launcher started (1 when not under one)."""
    env = os.environ if environ is None else environ
    for name in _SIZE_VARS:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 1


def current():
    """The active ``World`` of a data-parallel run, or None (single process)."""
    return _world


def init(force=False):
    """Join the data-parallel run this process was launched into; None when it runs
    alone.  ``force``: use MPI even for a single process (tests)."""
    global _world
    if _world is not None:
        return _world
    launched = launched_size()
    if launched <= 1 and not force:
        return None
    from .mpi import World

    world = World()
    if world.size != launched and not force:
        # e.g. Open MPI's mpiexec starting processes whose mpi4py uses MPICH: each would
        # train alone and they would overwrite each other's snapshots
        raise NetdefError(f"the MPI launcher started {launched} processes but mpi4py's MPI "
                          f"sees {world.size}: the launcher and mpi4py come from different "
                          "MPI installations; use the mpiexec of the MPI mpi4py was built "
                          f"for (with the mpich wheel: the one next to {sys.executable})")
    if world.size <= 1 and not force:
        return None
    _world = world
    return world


def reset():
    """Forget the world and the data shard (tests)."""
    global _world
    from ..data.shard import clear_shard

    _world = None
    clear_shard()


def prepare_solver(world, param):
    """Before a Solver builds its nets: shard the TRAIN data (every rank draws the same
    shuffle order), quieten the logs of ranks other than 0; return this rank's seed for
    its nets (``random_seed`` + rank) or None when the solver sets no seed."""
    from ..data.shard import set_shard

    set_shard(world.rank, world.size, world.shared_seed(param.random_seed))
    if not world.is_root:
        logger.setLevel(max(logger.level, 30))  # warnings and errors only
    if param.random_seed >= 0:
        return int(param.random_seed) + world.rank
    return None


@contextmanager
def guard(world):
    """Turn an error on one rank into a stop of every rank, with a message naming it.

    An error all ranks raise at the same point (the solver marks it ``collective``:
    divergence, which rank 0 has already saved a snapshot for) ends every rank after a
    barrier, rank 0 reporting it; any other error aborts the whole job at once, so the
    other ranks never wait for this one.
    """
    if world is None:
        yield
        return
    try:
        yield
    except SystemExit:
        raise
    except BaseException as exc:
        if getattr(exc, "collective", False):
            world.barrier()
            if world.is_root:
                raise
            raise SystemExit(getattr(exc, "exit_code", 1)) from None
        if os.environ.get("NETDEF_DEBUG"):
            traceback.print_exc(file=sys.stderr)
        if isinstance(exc, NetdefError):
            cause = str(exc)
        elif isinstance(exc, KeyboardInterrupt):
            cause = "interrupted"
        else:
            cause = f"{type(exc).__name__}: {exc}"
        when = "while starting" if world.iteration is None else \
            f"at iteration {world.iteration}"
        world.abort(f"failed {when}: {cause}")
