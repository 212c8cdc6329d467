"""MPI for data-parallel training: the world, the start broadcast, the gradient all-reduce.

mpi4py is imported only here, and only when a run is launched under ``mpiexec`` with more
than one process; without the ``mpi`` extra netdef stays single-process.

One iteration costs two collectives:

1. a tiny all-gather of (loss, "my gradients are finite", signal request) from every
   rank.  It is where ranks wait for each other (rank 0's tests and snapshots included),
   so it is polled with short sleeps rather than MPICH's busy wait, which would take a
   core from the rank doing the work; it names any rank whose batch went NaN/inf, makes
   every rank act on a Ctrl-C or SIGHUP in the same iteration, and gives the mean loss;
2. one all-reduce (SUM, in place) of the train net's flat float32 gradient buffer, then a
   scale by 1/N: the averaged gradient, before clipping, iter_size normalisation and
   regularisation, as Caffe's multi-GPU solvers do.  All ranks then apply the same
   update to the same weights, so the weights stay identical without being sent again.
"""

import hashlib
import os
import socket
import sys
import time

import numpy as np

from ..errors import NetdefError, SolverError
from ..log import logger

HINT = ("data-parallel training needs mpi4py and an MPI runtime: "
        "pip install 'netdef[mpi]' (mpi4py + the mpich wheel), or mpi4py built against "
        "the system's MPI")

#: signal requests, ordered so that the strongest wins when ranks disagree
REQUESTS = ("none", "snapshot", "stop")

#: seconds a rank waits for the others in one iteration before it gives up (0: forever);
#: the iterations in which rank 0 runs its test nets or has written a snapshot wait forever
DEFAULT_TIMEOUT = 600.0

#: seconds a rank polls for the others before it starts to nap between polls
SPIN = 0.01

#: seconds a failing rank waits between writing its message and MPI_Abort: the abort tears
#: the job down at once, and under load mpiexec had not yet passed the message on
ABORT_GRACE = 1.0


def import_mpi():
    """mpi4py's MPI module, or NetdefError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise NetdefError(f"{HINT} ({exc})") from None
    except RuntimeError as exc:  # mpi4py found but no MPI library loads
        raise NetdefError(f"{HINT}: the MPI library did not load ({exc})") from None
    return MPI


def _timeout_from_env():
    text = os.environ.get("NETDEF_MPI_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        return max(0.0, float(text))
    except ValueError:
        raise NetdefError(f"NETDEF_MPI_TIMEOUT must be a number of seconds, not {text!r}") \
            from None


class World:
    """This process's place in a data-parallel run over ``comm`` (MPI.COMM_WORLD)."""

    def __init__(self, comm=None, timeout=None):
        self.MPI = import_mpi()
        self.comm = comm if comm is not None else self.MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.host = socket.gethostname()
        self.timeout = _timeout_from_env() if timeout is None else float(timeout)
        self._mine = np.zeros(3, np.float64)
        self._all = np.zeros((self.size, 3), np.float64)
        self.allreduce_seconds = 0.0
        self.allreduce_calls = 0
        self.iteration = None  # the solver's, once it steps (for error messages)

    @property
    def is_root(self):
        return self.rank == 0

    def describe(self):
        return f"rank {self.rank} of {self.size} (pid {os.getpid()} on {self.host})"

    # -------------------------------------------------------------- start
    def shared_seed(self, random_seed):
        """``random_seed`` when set, else rank 0's fresh entropy: the same on all ranks."""
        seed = int(random_seed) if random_seed >= 0 else \
            int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
        return int(self.comm.bcast(seed, root=0))

    def roll_call(self):
        """[(rank, pid, host)] of every rank (rank 0 logs it: the pid maps a dead
        process in the MPI runtime's report back to its rank)."""
        return self.comm.allgather((self.rank, os.getpid(), self.host))

    def broadcast(self, array):
        """Rank 0's values of a float32 array on every rank (in place)."""
        if array.size:
            self.comm.Bcast(array, root=0)

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def start(self, solver, batch):
        """Rank 0's weights (and update history) on every rank; log the layout."""
        net = solver.net
        calls = self.roll_call()
        self.broadcast(net.flat_data)
        for h in solver.history:
            self.broadcast(h)
        p = solver.param
        logger.info("Data-parallel training on %d processes (MPI): batch_size %d per process "
                    "x %d = effective batch %d%s", self.size, batch, self.size,
                    batch * self.size,
                    f" (x iter_size {p.iter_size} = {batch * self.size * p.iter_size} per "
                    "update)" if p.iter_size > 1 else "")
        logger.info("Ranks: %s", ", ".join(f"rank {r} pid {pid} on {host}"
                                           for r, pid, host in calls))
        logger.info("Gradient all-reduce: %d float32 values (%.2f MB) per iteration",
                    net.flat_diff.size, net.flat_diff.nbytes / 1e6)

    def share_restored(self, solver):
        """After rank 0 restored a snapshot: the same iteration, weights, history and data
        cursors on every rank (the other ranks keep their own random streams)."""
        from ..solvers import resume

        cursors = None
        if self.is_root:
            cursors = {name: entry for name, entry in resume.collect_net(solver.net).items()
                       if "rng" not in entry["state"]}
        it, step, cursors = self.comm.bcast(
            (solver.iter, solver.lr.current_step, cursors), root=0)
        self.broadcast(solver.net.flat_data)
        for h in solver.history:
            self.broadcast(h)
        if not self.is_root:
            solver.iter, solver.lr.current_step = it, step
            resume.restore_net(solver.net, cursors, "rank 0's snapshot")

    def report(self):
        """One log line on the all-reduce cost so far (rank 0 logs it)."""
        if self.allreduce_calls:
            logger.info("Gradient all-reduce: %d calls, %.3f ms each on average",
                        self.allreduce_calls,
                        1000 * self.allreduce_seconds / self.allreduce_calls)

    # -------------------------------------------------------------- per iteration
    def sync(self, solver, loss, request, patient=False):
        """Average the gradients of ``solver.net`` over the ranks; return (mean loss,
        agreed request).  A rank whose loss or gradients are not finite stops every rank
        with a collective SolverError naming it; nothing is all-reduced then."""
        from ..kernels import update as kernels

        net = solver.net
        ok = bool(np.isfinite(loss)) and bool(kernels.all_finite(net.flat_diff))
        self._mine[0] = loss if ok else 0.0
        self._mine[1] = 0.0 if ok else 1.0
        self._mine[2] = REQUESTS.index(request) if request in REQUESTS else 0
        self._wait(self.comm.Iallgather(self._mine, self._all), solver.iter, patient)
        bad = [int(r) for r in np.flatnonzero(self._all[:, 1])]
        if bad:
            self._diverged(solver, bad, loss)
        t = time.perf_counter()
        diff = net.flat_diff
        if diff.size:
            self.comm.Allreduce(self.MPI.IN_PLACE, diff, op=self.MPI.SUM)
            diff *= np.float32(1.0 / self.size)
        self.allreduce_seconds += time.perf_counter() - t
        self.allreduce_calls += 1
        return float(self._all[:, 0].mean()), REQUESTS[int(self._all[:, 2].max())]

    def _wait(self, req, iteration, patient):
        """Wait for a non-blocking collective: poll without pause for the first
        ``SPIN`` seconds (ranks usually arrive together, and a sleeping rank would delay
        the all-reduce that follows), then with naps of up to 2 ms, which leave the core
        to the rank still working; past the timeout, abort every rank with a message."""
        t0 = time.perf_counter()
        limit = 0.0 if patient else self.timeout
        nap = 0.0
        while not req.Test():
            waited = time.perf_counter() - t0
            if limit and waited > limit:
                self.abort(f"waited {waited:.0f} s at iteration {iteration} for the other ranks "
                           "without an answer (a rank hangs, or NETDEF_MPI_TIMEOUT="
                           f"{limit:g} is too short for this net)")
            if waited > SPIN:
                nap = min(0.002, nap + 0.0001)
                time.sleep(nap)

    def _diverged(self, solver, bad, loss):
        """Every rank raises the same collective error; the first bad rank says where."""
        first = bad[0]
        where = solver._first_non_finite() if self.rank == first else None
        where = self.comm.bcast(where, root=first) or "the loss"
        names = ("rank " if len(bad) == 1 else "ranks ") + ", ".join(str(r) for r in bad)
        exc = SolverError(
            f"training diverged at iteration {solver.iter}: the loss or gradients of "
            f"{names} (of {self.size}) are NaN or inf; on rank {first} {where} is the first "
            "to contain them (bad input data on that rank's shard, or a learning rate "
            f"too large).\nhint: check that rank's records; lower base_lr (now "
            f"{solver.param.base_lr:g}) or set clip_gradients")
        exc.collective = True
        raise exc

    # -------------------------------------------------------------- end
    def weights_agree(self, flat_data):
        """True when every rank holds bit-identical weights (their hashes are compared)."""
        digest = hashlib.blake2b(np.ascontiguousarray(flat_data).tobytes(),
                                 digest_size=16).hexdigest()
        digests = self.comm.allgather(digest)
        return all(d == digests[0] for d in digests)

    def barrier(self):
        self.comm.Barrier()

    def abort(self, message, code=1):
        """Print ``message`` naming this rank, then end every rank of the job."""
        text = f"netdef: error: {self.describe()}: {message}; stopping all ranks"
        try:
            sys.stdout.flush()
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            time.sleep(ABORT_GRACE)
        finally:
            self.comm.Abort(code)
