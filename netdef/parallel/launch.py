"""``netdef train --procs N``: start ``mpiexec -n N`` on this netdef for the user.

The mpiexec used is the one next to this Python (the ``mpich`` wheel installs it in the
virtual environment's bin), else the first on PATH.  The machine's cores are split
between the processes (BLAS and numba threads), unless the user set those counts.
The launcher passes the ranks' output through and, when the MPI runtime reports that a
process died, says which rank it was (rank 0 logs every rank's pid at the start).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading

from ..errors import NetdefError
from ..threads import available_cpus

_ROLL_CALL = re.compile(r"rank (\d+) pid (\d+) on (\S+?)(?:,|$)")
_DEAD_PID = re.compile(r"PID (\d+) RUNNING AT (\S+)")
_EXIT_STRING = re.compile(r"EXIT STRING: (.+?)(?: \(signal (\d+)\))?\s*$")
_EXIT_CODE = re.compile(r"EXIT CODE: (\d+)")


def find_mpiexec():
    """The mpiexec to use; NetdefError naming the fix when there is none."""
    here = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "mpiexec")
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    for name in ("mpiexec", "mpirun"):
        found = shutil.which(name)
        if found:
            return found
    raise NetdefError("--procs needs an MPI launcher (mpiexec) and none was found next to "
                      f"{sys.executable} or on PATH: pip install 'netdef[mpi]' (the mpich "
                      "wheel brings one), or install an MPI and put its mpiexec on PATH")


def thread_environment(procs, environ=None, cpus=None):
    """The environment for ``procs`` ranks on this machine: each gets cpus / procs BLAS
    and numba threads (at least one), unless the user chose the counts."""
    env = dict(os.environ if environ is None else environ)
    share = max(1, (cpus or available_cpus()) // max(1, int(procs)))
    if "OMP_NUM_THREADS" not in env:
        env.setdefault("OPENBLAS_NUM_THREADS", str(share))
    env.setdefault("NUMBA_NUM_THREADS", str(share))
    return env


def command(procs, tool_args, hostfile=None, mpiexec=None):
    """The mpiexec command line running ``netdef <tool_args>`` on ``procs`` ranks."""
    cmd = [mpiexec or find_mpiexec(), "-n", str(int(procs))]
    if hostfile:
        if not os.path.isfile(hostfile):
            raise NetdefError(f"hostfile {hostfile!r} does not exist")
        cmd += ["-hostfile", hostfile]
    return cmd + [sys.executable, "-m", "netdef.tools.main"] + list(tool_args)


class _Watch:
    """What the launcher learns from the output: each rank's pid, the dead process."""

    def __init__(self):
        self.ranks = {}  # pid -> (rank, host)
        self.dead_pid = None
        self.exit_string = None
        self.signal = None
        self.exit_code = None

    def scan(self, line):
        if "Ranks: rank " in line:
            for rank, pid, host in _ROLL_CALL.findall(line):
                self.ranks[int(pid)] = (int(rank), host)
        m = _DEAD_PID.search(line)
        if m and self.dead_pid is None:
            self.dead_pid = int(m.group(1))
        m = _EXIT_STRING.search(line)
        if m and self.exit_string is None:
            self.exit_string, self.signal = m.group(1), m.group(2)
        m = _EXIT_CODE.search(line)
        if m and self.exit_code is None:
            self.exit_code = int(m.group(1))

    def verdict(self, procs):
        if self.dead_pid is None:
            return None
        rank, host = self.ranks.get(self.dead_pid, (None, None))
        who = (f"rank {rank} of {procs} (pid {self.dead_pid} on {host})" if rank is not None
               else f"the process with pid {self.dead_pid}")
        cause = self.exit_string or (f"exit code {self.exit_code}" if self.exit_code
                                     is not None else "it ended")
        if self.signal:
            cause = f"{cause}: signal {self.signal}"
        return (f"netdef: error: {who} died ({cause}); mpiexec stopped the other ranks. "
                "Snapshots written before are intact: resume with --snapshot")


def _pump(stream, out, watch, lock):
    for line in iter(stream.readline, ""):
        with lock:
            watch.scan(line)
            out.write(line)
            out.flush()
    stream.close()


def launch(procs, tool_args, hostfile=None):
    """Run ``netdef <tool_args>`` under mpiexec on ``procs`` ranks; its exit status."""
    cmd = command(procs, tool_args, hostfile)
    env = thread_environment(procs) if not hostfile else dict(os.environ)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace")
    watch, lock = _Watch(), threading.Lock()
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, sys.stdout, watch, lock),
                              daemon=True),
             threading.Thread(target=_pump, args=(proc.stderr, sys.stderr, watch, lock),
                              daemon=True)]
    for t in pumps:
        t.start()
    # Ctrl-C reaches mpiexec too, which hands it to the ranks: they stop together.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        rc = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    for t in pumps:
        t.join(5)
    message = watch.verdict(procs) if rc else None
    if message:
        print(message, file=sys.stderr)
    return rc
