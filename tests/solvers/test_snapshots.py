"""Snapshots: Caffe's BINARYPROTO and HDF5 files round-trip, snapshot_diff and
snapshot_after_train behave as in Caffe, every file lands atomically -- also when the
process is SIGKILLed the moment a snapshot file appears."""

import os
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import netdef.atomic
from netdef.proto import caffe_pb2
from netdef.solvers import Solver, resume, state_io
from netdef.weights import load_weights
from tests.solvers.tiny import DUMMY_NET, solver_param

ADAM = ('type: "Adam" momentum: 0.9 momentum2: 0.99 lr_policy: "multistep" gamma: 0.5 '
        "stepvalue: 1 stepvalue: 2 stepvalue: 9 base_lr: 0.01 random_seed: 5 weight_decay: 0.01")
EXT = {"BINARYPROTO": (".caffemodel", ".solverstate"),
       "HDF5": (".caffemodel.h5", ".solverstate.h5")}


def make(tmp_path, fmt="BINARYPROTO", text=ADAM, prefix="snap", **fields):
    param = solver_param(f"{text} snapshot_format: {fmt}", net=DUMMY_NET, **fields)
    param.snapshot_prefix = str(tmp_path / prefix)
    return Solver(param)


@pytest.mark.parametrize("fmt", list(EXT))
def test_round_trip_restores_weights_history_iter_and_step(fmt, tmp_path):
    solver = make(tmp_path, fmt)
    solver.step(3)
    model, state = solver.snapshot()
    assert (model, state) == tuple(str(tmp_path / f"snap_iter_3{e}") for e in EXT[fmt])
    assert os.path.exists(resume.sidecar_path(state))
    other = make(tmp_path, fmt, random_seed=99)  # different initial weights
    assert not np.array_equal(other.net.flat_data, solver.net.flat_data)
    other.restore(state)
    assert other.iter == 3
    assert other.lr.current_step == solver.lr.current_step == 2
    np.testing.assert_array_equal(other.net.flat_data, solver.net.flat_data)
    for a, b in zip(other.history_blobs(), solver.history_blobs()):
        np.testing.assert_array_equal(a, b)
    assert len(other.history_blobs()) == 2 * len(solver.net.learnable_params)
    # The weights file is an ordinary caffemodel for any reader.
    layers = dict(load_weights(model))
    np.testing.assert_array_equal(layers["ip2"][0], solver.net.params["ip2"][0].data)


def test_state_files_have_caffes_layout(tmp_path):
    solver = make(tmp_path, "BINARYPROTO")
    solver.step(2)
    _, state = solver.snapshot()
    st = caffe_pb2.SolverState()
    st.ParseFromString(open(state, "rb").read())
    assert (st.iter, st.current_step) == (2, 1)  # iteration 1 passed stepvalue 1
    assert st.learned_net == str(tmp_path / "snap_iter_2.caffemodel")
    assert len(st.history) == 8 and list(st.history[0].shape.dim) == [6, 5]

    solver = make(tmp_path, "HDF5", prefix="h")
    solver.step(2)
    model, state = solver.snapshot()
    with h5py.File(state) as h:
        assert h["iter"].shape == (1,) and h["iter"][0] == 2
        assert h["learned_net"][()].decode() == model
        assert sorted(h["history"], key=int) == [str(i) for i in range(8)]
        assert h["history"]["0"].shape == (6, 5)
    with h5py.File(model) as h:
        assert h["data"]["ip1"]["0"].shape == (6, 5)


@pytest.mark.parametrize("fmt", list(EXT))
def test_snapshot_diff_writes_the_last_update(fmt, tmp_path):
    solver = make(tmp_path, fmt, snapshot_diff=True)
    solver.step(2)
    model, _ = solver.snapshot()
    want = solver.net.params["ip1"][0].diff
    assert np.abs(want).sum() > 0
    if fmt == "HDF5":
        with h5py.File(model) as h:
            got = h["diff"]["ip1"]["0"][()]
    else:
        net = caffe_pb2.NetParameter()
        net.ParseFromString(open(model, "rb").read())
        blob = next(lp for lp in net.layer if lp.name == "ip1").blobs[0]
        got = np.asarray(blob.diff, np.float32).reshape(want.shape)
    np.testing.assert_array_equal(got, want)
    # Without snapshot_diff no diff is stored.
    plain = make(tmp_path, fmt, prefix="plain")
    plain.step(1)
    model, _ = plain.snapshot()
    if fmt == "HDF5":
        with h5py.File(model) as h:
            assert "diff" not in h
    else:
        net = caffe_pb2.NetParameter()
        net.ParseFromString(open(model, "rb").read())
        assert all(len(b.diff) == 0 for lp in net.layer for b in lp.blobs)


@pytest.mark.parametrize("after, every, want", [
    (True, 0, [4]),        # only the final snapshot
    (False, 0, []),        # nothing
    (True, 2, [2, 4]),     # 4 is a multiple of `snapshot`: no second copy
    (True, 3, [3, 4]),     # the final one comes in addition
    (False, 3, [3]),
])
def test_snapshot_after_train_and_interval(after, every, want, tmp_path):
    solver = make(tmp_path, max_iter=4, snapshot=every, snapshot_after_train=after)
    solver.solve()
    got = sorted(int(n.split("_iter_")[1].split(".")[0]) for n in os.listdir(tmp_path)
                 if n.endswith(".caffemodel"))
    assert got == want
    for it in want:
        for ext in (".caffemodel", ".solverstate", ".solverstate.netdef"):
            assert (tmp_path / f"snap_iter_{it}{ext}").exists()


@pytest.mark.parametrize("fmt", list(EXT))
def test_every_snapshot_file_is_written_atomically(fmt, tmp_path, monkeypatch):
    renamed = []
    real = os.replace

    def recording_replace(src, dst):
        assert os.path.basename(src).startswith(".") and src.endswith(".tmp")
        renamed.append(os.path.basename(dst))
        return real(src, dst)

    monkeypatch.setattr(netdef.atomic.os, "replace", recording_replace)
    solver = make(tmp_path, fmt)
    solver.step(1)
    solver.snapshot()
    model, state = (f"snap_iter_1{e}" for e in EXT[fmt])
    sidecar = "snap_iter_1.solverstate.netdef"
    assert renamed == [model, sidecar, state]  # the sidecar lands before the state
    assert sorted(os.listdir(tmp_path)) == sorted([model, sidecar, state])


def test_a_failing_write_leaves_no_final_file(tmp_path, monkeypatch):
    solver = make(tmp_path)
    solver.step(1)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(state_io.caffe_pb2, "SolverState", broken)
    with pytest.raises(OSError, match="disk full"):
        solver.snapshot()
    names = os.listdir(tmp_path)
    assert "snap_iter_1.solverstate" not in names
    assert not [n for n in names if n.endswith(".tmp")]


def test_snapshot_prefix_defaults_follow_caffe(tmp_path):
    path = tmp_path / "my_solver.prototxt"
    path.write_text('net: "net.prototxt"\nlr_policy: "fixed"\nbase_lr: 0.1\n')
    (tmp_path / "net.prototxt").write_text(DUMMY_NET)
    (tmp_path / "folder").mkdir()
    from netdef.prototxt import read_solver_param

    solver = Solver(read_solver_param(str(path)), solver_path=str(path))
    assert solver.param.snapshot_prefix == str(tmp_path / "my_solver")
    param = read_solver_param(str(path))
    param.snapshot_prefix = str(tmp_path / "folder")
    solver = Solver(param, solver_path=str(path))
    assert solver.param.snapshot_prefix == str(tmp_path / "folder" / "my_solver")


def test_restore_errors_name_the_file(tmp_path):
    solver = make(tmp_path)
    with pytest.raises(Exception, match="does not exist"):
        solver.restore(str(tmp_path / "missing.solverstate"))
    bad = tmp_path / "bad.solverstate"
    bad.write_bytes(b"\xff\xff\xff not a proto")
    with pytest.raises(Exception, match="not a Caffe solver state"):
        solver.restore(str(bad))
    sgd = make(tmp_path, text="base_lr: 0.1", prefix="sgd")
    sgd.step(1)
    _, state = sgd.snapshot()
    with pytest.raises(Exception, match="holds 4 history blobs; this Adam solver needs 8"):
        solver.restore(state)


# -- SIGKILL the moment a snapshot appears --------------------------------------------------
def _check_final_file(path):
    """Parse a snapshot file completely; a partial file fails here."""
    name = os.path.basename(path)
    if name.endswith(".solverstate.netdef"):
        doc = resume.read(path)
        assert f"_iter_{doc['iter']}." in name
    elif name.endswith((".solverstate", ".solverstate.h5")):
        it = state_io.read_state(path)[0]
        assert f"_iter_{it}." in name
    elif name.endswith((".caffemodel", ".caffemodel.h5")):
        layers = dict(load_weights(path))
        assert layers["ip1"][0].shape == (6, 5) and layers["ip2"][1].shape == (3,)
    else:
        raise AssertionError(f"unexpected file {name}")


def _train_until_killed(tmp_path, fmt, kill_at):
    """Start `netdef train` (snapshot every iteration); SIGKILL it as soon as the
    (kill_at + 1)-th snapshot file appears.  Returns {name: bytes} seen before the kill."""
    folder = tmp_path / f"snaps_{fmt}_{kill_at}"
    folder.mkdir()
    solver = tmp_path / f"solver_{fmt}_{kill_at}.prototxt"
    solver.write_text(f'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\n'
                      f"max_iter: 1000000\nsnapshot: 1\nsnapshot_format: {fmt}\n"
                      f'snapshot_prefix: "{folder}/s"\nrandom_seed: 1\n')
    log = open(tmp_path / f"log_{fmt}_{kill_at}.txt", "w")
    proc = subprocess.Popen([sys.executable, "-m", "netdef.tools.main", "train",
                             f"--solver={solver}"], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT)
    seen = {}
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            names = [n for n in os.listdir(folder) if not n.startswith(".")]
            fresh = [n for n in names if n not in seen]
            if fresh and len(seen) >= kill_at:
                proc.kill()
                break
            for n in fresh:
                seen[n] = (folder / n).read_bytes()
        else:
            raise AssertionError(f"no kill: {proc.poll()=}")
    finally:
        proc.kill()
        proc.wait()
        log.close()
    return folder, seen


@pytest.mark.slow
@pytest.mark.parametrize("fmt, kill_at", [("BINARYPROTO", 0), ("HDF5", 4),
                                          ("BINARYPROTO", 10)])
def test_sigkill_during_snapshots_never_leaves_a_partial_file(fmt, kill_at, tmp_path):
    (tmp_path / "net.prototxt").write_text(DUMMY_NET)
    folder, seen = _train_until_killed(tmp_path, fmt, kill_at)
    assert len(seen) >= kill_at
    for name, content in seen.items():
        assert (folder / name).read_bytes() == content, name
    finals = [n for n in os.listdir(folder) if not n.startswith(".")]
    for name in finals:
        _check_final_file(str(folder / name))
    leftovers = [n for n in os.listdir(folder) if n.startswith(".")]
    assert all(n.endswith(".tmp") for n in leftovers), leftovers
    # The newest complete state resumes.
    states = [n for n in finals if n.endswith(EXT[fmt][1])]
    if states:
        newest = max(states, key=lambda n: int(n.split("_iter_")[1].split(".")[0]))
        param = solver_param(f"base_lr: 0.01 snapshot_format: {fmt}", net=DUMMY_NET)
        param.snapshot_prefix = str(folder / "again")
        solver = Solver(param)
        solver.restore(str(folder / newest))
        assert solver.iter == int(newest.split("_iter_")[1].split(".")[0])
