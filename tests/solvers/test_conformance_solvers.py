"""Golden training trajectories from the reference Caffe, replayed step by step."""

import glob
import os

import numpy as np
import pytest
from google.protobuf import text_format

from netdef.proto import caffe_pb2
from netdef.solvers import Solver
from tests.shared import CONFORMANCE

CASES = sorted(glob.glob(os.path.join(CONFORMANCE, "solvers", "*.npz")))


def build(z, tmp_path):
    param = caffe_pb2.SolverParameter()
    text_format.Parse(str(z["solver"][()]), param)
    text_format.Parse(str(z["net"][()]), param.net_param)
    param.snapshot_prefix = str(tmp_path / "snap")
    param.snapshot_after_train = False
    solver = Solver(param)
    for key in z.files:
        if key.startswith("init_param/"):
            _, layer, i = key.split("/")
            solver.net.params[layer][int(i)].data[...] = z[key]
    return solver


def feed_steps(solver, z):
    """Write step t's inputs (and, with iter_size k, pass j's) before each pass."""
    inputs = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("step_input/")}
    k = int(z["iter_size"]) if "iter_size" in z.files else 1
    net = solver.net
    original = net.forward_backward
    state = {"pass": 0}

    def forward_backward():
        t, j = divmod(state["pass"], k)
        for name, arr in inputs.items():
            net.blobs[name].data[...] = arr[t, j] if k > 1 else arr[t]
        state["pass"] += 1
        return original()

    net.forward_backward = forward_backward
    return state


def check_params(solver, z, t, rtol):
    for key in z.files:
        if key.startswith("param_after/"):
            _, layer, i = key.split("/")
            got = solver.net.params[layer][int(i)].data
            want = z[key][t]
            scale = max(1.0, float(np.abs(want).max()))
            err = float(np.abs(got - want).max())
            assert err <= rtol * scale, f"step {t} {layer}/{i}: max err {err:.3g}"


@pytest.mark.skipif(not CASES, reason="shared conformance cases not present")
@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-4] for p in CASES])
def test_trajectory(path, tmp_path):
    z = np.load(path)
    solver = build(z, tmp_path)
    feed_steps(solver, z)
    T = z["loss"].shape[0]
    rtol = 2e-5 * 10
    for t in range(T):
        rate = solver.lr.rate(solver.iter)
        assert rate == pytest.approx(float(z["lr"][t]), rel=1e-5)
        solver.step(1)
        assert solver.smoothed_loss == pytest.approx(float(z["loss"][t]), rel=1e-4, abs=1e-6)
        check_params(solver, z, t, rtol * (t + 1))
    hist = solver.history_blobs()
    for j in range(len(hist)):
        want = z[f"history/{j}"]
        scale = max(1.0, float(np.abs(want).max()))
        assert float(np.abs(hist[j] - want.reshape(hist[j].shape)).max()) <= 1e-4 * scale
    assert solver.lr.current_step == int(z["history_current_step"])


RESUME = [p for p in CASES if "resume" in os.path.basename(p)]


@pytest.mark.parametrize("path", RESUME, ids=[os.path.basename(p)[:-4] for p in RESUME])
def test_resume_from_caffe_snapshot(path, tmp_path, monkeypatch):
    """Restore the reference Caffe's own snapshot files, run on, land on its trajectory."""
    z = np.load(path)
    R = int(z["resume_at"])
    hdf5 = "snapshot_format: HDF5" in str(z["solver"][()])
    ext = (".caffemodel.h5", ".solverstate.h5") if hdf5 else (".caffemodel", ".solverstate")
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"snap_iter_{R}{ext[0]}").write_bytes(z["resume_caffemodel_bytes"].tobytes())
    state = tmp_path / f"snap_iter_{R}{ext[1]}"
    state.write_bytes(z["resume_solverstate_bytes"].tobytes())
    solver = build(z, tmp_path)
    solver.restore(str(state))
    assert solver.iter == R
    steps = feed_steps(solver, z)
    k = int(z["iter_size"]) if "iter_size" in z.files else 1
    steps["pass"] = R * k
    for t in range(R, z["loss"].shape[0]):
        solver.step(1)
        check_params(solver, z, t, 2e-4)
