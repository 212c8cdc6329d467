"""Data-parallel training under mpiexec: Caffe's multi-GPU semantics, resume and faults.

Each test starts a real ``mpiexec -n N netdef train`` on a tiny net (milliseconds per
iteration) and is skipped when no mpiexec is installed.  Every run has a time limit.
"""

import glob
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from netdef.prototxt import read_solver_param
from netdef.solvers import Solver
from netdef.solvers.state_io import read_state
from netdef.weights import load_weights
from tests.parallel.fixtures import (
    environment,
    mpiexec,
    netdef_command,
    run_mpi,
    write_records,
    write_solver,
)

pytestmark = pytest.mark.slow


def weights(path):
    return {name: [a.copy() for a in arrays] for name, arrays in load_weights(path)}


def max_difference(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(x - y).max()) for k in a for x, y in zip(a[k], b[k]))


def train_here(solver_path, snapshot=None):
    solver = Solver(read_solver_param(solver_path), solver_path=solver_path)
    solver.solve(snapshot)
    return solver


def test_two_ranks_equal_one_process_with_twice_the_batch(tmp_path):
    """2 ranks x batch 3 == 1 process x batch 6, with iter_size 2, momentum, weight decay
    and active gradient clipping (which must see the averaged gradient)."""
    mpiexec()
    db = write_records(tmp_path / "db", 48)
    two, two_prefix = write_solver(tmp_path, db, batch=3, iters=4, iter_size=2, clip=0.5,
                                   name="two")
    one, one_prefix = write_solver(tmp_path, db, batch=6, iters=4, iter_size=2, clip=0.5,
                                   name="one")
    done = run_mpi(2, ["train", "--solver", two], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stderr
    assert "Data-parallel training on 2 processes (MPI): batch_size 3 per process x 2 = " \
           "effective batch 6 (x iter_size 2 = 12 per update)" in log
    assert "Gradient clipping" in log
    assert "ranks hold different weights" not in log
    assert len(re.findall(r"Iteration 1, lr", log)) == 1  # rank 0 alone logs
    train_here(one)
    diff = max_difference(weights(f"{two_prefix}_iter_4.caffemodel"),
                          weights(f"{one_prefix}_iter_4.caffemodel"))
    assert diff < 1e-6
    two_losses = re.findall(r"Iteration (\d+) \(.*loss = (\S+)", log)
    assert two_losses and all(float(v) > 0 for _, v in two_losses)


def test_resume_with_the_same_and_a_different_number_of_ranks(tmp_path):
    mpiexec()
    db = write_records(tmp_path / "db", 40)
    full, prefix = write_solver(tmp_path, db, batch=2, iters=4, snapshot=2, name="full")
    done = run_mpi(2, ["train", "--solver", full], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    straight = weights(f"{prefix}_iter_4.caffemodel")
    again, again_prefix = write_solver(tmp_path, db, batch=2, iters=4, snapshot=2,
                                       name="again")
    done = run_mpi(2, ["train", "--solver", again, "--snapshot",
                       f"{prefix}_iter_2.solverstate"], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Restored data cursors" in done.stderr
    assert max_difference(weights(f"{again_prefix}_iter_4.caffemodel"), straight) < 1e-7
    # A different number of ranks (here one process): the data layers continue at the
    # same batch index of the new layout; weights, history and iteration carry over.
    one, one_prefix = write_solver(tmp_path, db, batch=2, iters=4, name="one")
    solver = train_here(one, f"{prefix}_iter_2.solverstate")
    # batches 2, 3 trained, batch 4 shown by solve()'s closing forward pass
    assert solver.iter == 4 and solver.net.layers[0].batches_consumed == 5
    assert read_state(f"{one_prefix}_iter_4.solverstate")[0] == 4
    assert max_difference(weights(f"{one_prefix}_iter_4.caffemodel"), straight) < 0.5


def test_bad_data_on_one_rank_stops_all_with_its_rank_and_cause(tmp_path):
    mpiexec()
    db = write_records(tmp_path / "db", 40, bad=(5,))  # record 5: rank 1's, batch 1
    solver, _ = write_solver(tmp_path, db, batch=2, iters=1000, name="bad")
    t = time.monotonic()
    done = run_mpi(2, ["train", "--solver", solver], timeout=60)
    assert time.monotonic() - t < 30
    assert done.returncode != 0
    assert re.search(r"netdef: error: rank 1 of 2 \(pid \d+ on .*\): failed at iteration 1: "
                     r"layer 'data' \(Data\): record '00000005'", done.stderr), \
        done.stderr[-3000:]


def test_divergence_stops_every_rank_and_keeps_the_last_good_state(tmp_path):
    mpiexec()
    db = write_records(tmp_path / "db", 40)
    solver, prefix = write_solver(tmp_path, db, batch=2, iters=50, name="div")
    text = open(solver).read().replace("base_lr: 0.5", "base_lr: 1e38")
    open(solver, "w").write(text)
    done = run_mpi(2, ["train", "--solver", solver], timeout=60)
    assert done.returncode == 1
    assert "training diverged at iteration 1" in done.stderr
    assert done.stderr.count("netdef: error:") == 1  # rank 0 reports it, once
    assert read_state(f"{prefix}_iter_1.solverstate")[0] == 1


def _wait_for(path, pattern, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(path, errors="replace") as f:
            m = re.search(pattern, f.read())
        if m:
            return m
        time.sleep(0.2)
    with open(path, errors="replace") as f:
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{f.read()[-3000:]}")


def test_killing_one_rank_ends_the_job_with_a_clear_message(tmp_path):
    mpiexec()
    db = write_records(tmp_path / "db", 40)
    solver, prefix = write_solver(tmp_path, db, batch=2, iters=10 ** 6, snapshot=10,
                                  name="long")
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        job = subprocess.Popen(netdef_command("train", "--procs", "2", "--solver", solver),
                               stdout=f, stderr=subprocess.STDOUT, env=environment())
    try:
        ranks = _wait_for(out, r"Ranks: rank 0 pid (\d+) on \S+, rank 1 pid (\d+) on", 60)
        _wait_for(out, r"Iteration 2\d \(", 60)
        os.kill(int(ranks.group(2)), signal.SIGKILL)
        t = time.monotonic()
        rc = job.wait(timeout=30)
        assert time.monotonic() - t < 30
    finally:
        if job.poll() is None:
            job.kill()
    text = out.read_text(errors="replace")
    assert rc != 0
    assert re.search(rf"netdef: error: rank 1 of 2 \(pid {ranks.group(2)} on \S+\) died "
                     r"\(Killed: signal 9\)", text), text[-3000:]
    with pytest.raises(ProcessLookupError):  # rank 0 did not outlive the job
        for _ in range(50):
            os.kill(int(ranks.group(1)), 0)
            time.sleep(0.1)
    last = max(glob.glob(f"{prefix}_iter_*.solverstate"),
               key=lambda p: int(re.search(r"_iter_(\d+)", p).group(1)))
    it = read_state(last)[0]
    assert it >= 20 and weights(f"{prefix}_iter_{it}.caffemodel")  # intact, readable


def test_netdef_without_the_mpi_extra_never_imports_mpi4py(tmp_path):
    code = ("import sys\n"
            "sys.modules['mpi4py'] = None\n"  # as if not installed
            "from tests.solvers.tiny import solver_param, prevent_snapshots\n"
            "from netdef.solvers import Solver\n"
            "from netdef import parallel\n"
            "s = Solver(prevent_snapshots(solver_param(max_iter=2)))\n"
            "s.solve()\n"
            "assert parallel.current() is None and s.world is None\n"
            "import os\n"
            "os.environ['PMI_SIZE'] = '2'\n"
            "try:\n"
            "    parallel.init()\n"
            "except Exception as exc:\n"
            "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=environment(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pip install 'netdef[mpi]'" in done.stdout


def test_ctrl_c_stops_every_rank_at_the_same_iteration_after_a_snapshot(tmp_path):
    db = write_records(tmp_path / "db", 40)
    solver, prefix = write_solver(tmp_path, db, batch=2, iters=10 ** 6, name="sig")
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        job = subprocess.Popen([mpiexec(), "-n", "2",
                                *netdef_command("train", "--solver", solver)],
                               stdout=f, stderr=subprocess.STDOUT, env=environment())
    try:
        _wait_for(out, r"Iteration 1\d \(", 60)
        job.send_signal(signal.SIGINT)  # mpiexec hands it to both ranks
        rc = job.wait(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
    text = out.read_text(errors="replace")
    assert rc == 0, text[-3000:]
    assert "Optimization stopped early" in text
    it = int(re.search(r"Snapshotting to binary proto file \S+_iter_(\d+)\.caffemodel",
                       text).group(1))
    assert read_state(f"{prefix}_iter_{it}.solverstate")[0] == it
