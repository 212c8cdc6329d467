"""``netdef train --procs N`` and world detection, without starting MPI."""

import sys

import pytest

from netdef import parallel
from netdef.errors import NetdefError
from netdef.parallel import launch

HYDRA_REPORT = """
===================================================================================
=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES
=   PID 4242 RUNNING AT node7
=   EXIT CODE: 9
=   CLEANING UP REMAINING PROCESSES
===================================================================================
YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)
"""


def test_launched_size_reads_the_launchers_variables():
    assert parallel.launched_size({}) == 1
    assert parallel.launched_size({"PMI_SIZE": "4"}) == 4
    assert parallel.launched_size({"OMPI_COMM_WORLD_SIZE": "8"}) == 8
    assert parallel.init() is None  # not under mpiexec: single process, no MPI


def test_the_dead_process_is_named_by_its_rank():
    watch = launch._Watch()
    watch.scan("I1123 12:00:00.000000 4241 mpi.py:120] Ranks: rank 0 pid 4241 on node7, "
               "rank 1 pid 4242 on node7\n")
    for line in HYDRA_REPORT.splitlines(True):
        watch.scan(line)
    assert watch.verdict(2).startswith("netdef: error: rank 1 of 2 (pid 4242 on node7) died "
                                       "(Killed: signal 9)")
    assert launch._Watch().verdict(2) is None


def test_command_splits_the_cores_and_passes_the_hostfile(tmp_path):
    env = launch.thread_environment(2, environ={}, cpus=8)
    assert env["OPENBLAS_NUM_THREADS"] == "4" and env["NUMBA_NUM_THREADS"] == "4"
    env = launch.thread_environment(4, environ={"NUMBA_NUM_THREADS": "3"}, cpus=2)
    assert env["NUMBA_NUM_THREADS"] == "3" and env["OPENBLAS_NUM_THREADS"] == "1"
    hosts = tmp_path / "hosts"
    hosts.write_text("a:2\nb:2\n")
    cmd = launch.command(4, ["train", "--solver", "s.prototxt"], str(hosts), mpiexec="mx")
    assert cmd == ["mx", "-n", "4", "-hostfile", str(hosts), sys.executable, "-m",
                   "netdef.tools.main", "train", "--solver", "s.prototxt"]
    with pytest.raises(NetdefError, match="hostfile"):
        launch.command(2, [], str(tmp_path / "missing"), mpiexec="mx")


def test_a_missing_mpiexec_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NetdefError, match=r"pip install 'netdef\[mpi\]'"):
        launch.find_mpiexec()


def test_train_flags_are_checked_before_anything_starts(tmp_path):
    from netdef.tools.main import main

    assert main(["train", "--solver", "x.prototxt", "--procs", "-1"]) == 2
    assert main(["train", "--solver", "x.prototxt", "--hostfile", "h"]) == 2
