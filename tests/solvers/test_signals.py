"""Signals as Caffe's tool handles them: --sigint_effect / --sighup_effect (stop, snapshot,
none; defaults stop and snapshot); SIGTERM does what SIGINT does."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from netdef.errors import UsageError
from netdef.solvers import SignalHandler, Solver
from netdef.weights import load_weights
from tests.solvers.tiny import DUMMY_NET, capture_log, netdef_cli, solver_param

SOLVER = ('net: "net.prototxt"\nbase_lr: 0.01\nmomentum: 0.9\nlr_policy: "fixed"\n'
          'display: 20\nmax_iter: 100000000\nsnapshot_prefix: "run"\nrandom_seed: 4\n')


class Training:
    """`netdef train` in the background, its log in a file we can wait on."""

    def __init__(self, folder, *flags):
        (folder / "net.prototxt").write_text(DUMMY_NET)
        (folder / "solver.prototxt").write_text(SOLVER)
        self.log_path = folder / "train.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "netdef.tools.main", "train",
                                      "--solver=solver.prototxt", *flags], cwd=folder,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def text(self):
        return self.log_path.read_text()

    def wait_for(self, pattern, after=0, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.compile(pattern, re.M).search(self.text(), after)
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"never saw {pattern!r}; log:\n{self.text()[-3000:]}")

    def send(self, sig):
        self.proc.send_signal(sig)

    def finish(self, timeout=60):
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


@pytest.mark.slow
def test_sigint_snapshots_exits_zero_and_the_snapshot_resumes(tmp_path):
    run = Training(tmp_path)
    run.wait_for(r"Iteration 40 ")
    run.send(signal.SIGINT)
    assert run.finish() == 0, run.text()[-3000:]
    log = run.text()
    assert "SIGINT received: stopping" in log
    assert "Optimization stopped early." in log
    stopped_at = int(re.search(r"Snapshotting to binary proto file run_iter_(\d+)\.caffemodel",
                               log).group(1))
    assert stopped_at >= 40
    for ext in (".caffemodel", ".solverstate", ".solverstate.netdef"):
        assert (tmp_path / f"run_iter_{stopped_at}{ext}").exists()

    end = stopped_at + 3
    out = netdef_cli("train", "--solver=solver.prototxt",
                     f"--snapshot=run_iter_{stopped_at}.solverstate", f"--iterations={end}",
                     cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Resuming from run_iter_{stopped_at}.solverstate" in out.stderr
    assert "Restored data cursors and random streams" in out.stderr
    assert re.search(rf"Snapshotting to binary proto file run_iter_{end}\.caffemodel",
                     out.stderr)
    assert "Iteration 0 " not in out.stderr
    assert "Optimization Done." in out.stderr

    # The same number of iterations without the interruption: the very same weights.
    (tmp_path / "ref.prototxt").write_text(SOLVER.replace('"run"', '"ref"'))
    out = netdef_cli("train", "--solver=ref.prototxt", f"--iterations={end}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = dict(load_weights(str(tmp_path / f"run_iter_{end}.caffemodel")))
    straight = dict(load_weights(str(tmp_path / f"ref_iter_{end}.caffemodel")))
    for name in ("ip1", "ip2"):
        for a, b in zip(resumed[name], straight[name]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_sighup_snapshots_and_goes_on_then_sigterm_stops(tmp_path):
    run = Training(tmp_path)
    run.wait_for(r"Iteration 20 ")
    run.send(signal.SIGHUP)
    hup = run.wait_for(r"Snapshotting to binary proto file run_iter_(\d+)\.caffemodel")
    first = int(hup.group(1))
    run.wait_for(rf"Iteration {(first // 20 + 2) * 20} ", after=hup.end())  # still training
    run.send(signal.SIGTERM)
    assert run.finish() == 0, run.text()[-3000:]
    log = run.text()
    assert "SIGHUP received: taking a snapshot" in log
    assert "SIGTERM received: stopping" in log
    assert "Optimization stopped early." in log
    snaps = [int(n) for n in re.findall(r"run_iter_(\d+)\.caffemodel", log)]
    assert snaps[0] == first and snaps[-1] > first


@pytest.mark.slow
def test_effects_can_be_swapped_or_disabled(tmp_path):
    run = Training(tmp_path, "--sigint_effect=none", "--sighup_effect=stop")
    run.wait_for(r"Iteration 20 ")
    run.send(signal.SIGINT)
    ignored = run.wait_for(r"SIGINT received: ignored")
    run.wait_for(r"Iteration \d+ ", after=ignored.end())
    assert run.proc.poll() is None
    run.send(signal.SIGHUP)
    assert run.finish() == 0, run.text()[-3000:]
    assert "SIGHUP received: stopping" in run.text()
    assert "Optimization stopped early." in run.text()


def test_bad_effect_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="--sigint_effect must be one of"):
        SignalHandler("halt", "snapshot")
    (tmp_path / "net.prototxt").write_text(DUMMY_NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    out = netdef_cli("train", "--solver=solver.prototxt", "--sighup_effect=explode",
                     cwd=tmp_path)
    assert out.returncode == 2 and "invalid choice: 'explode'" in out.stderr


def test_in_process_signals_drive_the_solver(tmp_path):
    """The handler is polled once per iteration: a snapshot request writes a snapshot and
    training goes on; a stop request ends the step loop after that iteration; the
    handlers that were there before come back (SIG_IGN where the shell started the
    tests in the background)."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGHUP)
    param = solver_param("base_lr: 0.01 random_seed: 2", net=DUMMY_NET)
    param.snapshot_prefix = str(tmp_path / "p")
    solver = Solver(param)
    with SignalHandler("snapshot", "stop") as signals:
        solver.action_request = signals
        solver.step(2)
        os.kill(os.getpid(), signal.SIGINT)
        solver.step(3)
        assert solver.iter == 5 and (tmp_path / "p_iter_3.caffemodel").exists()
        os.kill(os.getpid(), signal.SIGHUP)
        solver.step(10)
        assert solver.iter == 6 and solver.requested_early_exit
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGHUP)) == before


def test_stop_requested_during_testing_interrupts_the_test(tmp_path):
    param = solver_param("base_lr: 0.01 test_iter: 50 test_interval: 2", net=DUMMY_NET)
    param.snapshot_prefix = str(tmp_path / "p")
    solver = Solver(param)
    requests = iter(["none", "none", "stop"])
    solver.action_request = lambda: next(requests, "none")
    handler, done = capture_log()
    try:
        solver.solve()
    finally:
        done()
    assert "Test interrupted." in handler.text()
    assert solver.iter == 0 and solver.requested_early_exit
    assert (tmp_path / "p_iter_0.caffemodel").exists()  # snapshot_after_train
    assert np.isfinite(solver.net.flat_data).all()
