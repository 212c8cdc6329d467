"""The rest of what Caffe users rely on while training: several test nets chosen by state,
train_state, test_compute_loss, test_initialization, average_loss, weights to start from,
debug_info, the NaN/inf guard, display lines and pycaffe's callbacks."""

import os
import re

import numpy as np
import pytest
from google.protobuf import text_format

from netdef.errors import SolverError
from netdef.proto import caffe_pb2
from netdef.solvers import Solver
from netdef.weights import save_caffemodel
from tests.solvers.tiny import (
    DUMMY_NET,
    capture_log,
    netdef_cli,
    prevent_snapshots,
    solver_param,
)


@pytest.fixture
def log():
    handler, done = capture_log()
    yield handler
    done()


def constant_source(value, rule):
    return (f'layer {{ name: "data" type: "DummyData" top: "x" {rule} dummy_data_param {{ '
            f'shape {{ dim: 2 dim: 3 }} data_filler {{ type: "constant" value: {value} }} }} }}')


# x (constant per state) -> ip (weights 1, bias 0) -> sum over everything, as the loss.
BODY = """
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y"
  inner_product_param { num_output: 1 weight_filler { type: "constant" value: 1 } } }
layer { name: "r" type: "Reduction" bottom: "y" top: "r" loss_weight: 1 }
"""
STAGED = "\n".join([
    constant_source(1, "include { phase: TRAIN not_stage: 'big' max_level: 1 }"),
    constant_source(7, "include { phase: TRAIN stage: 'big' }"),
    constant_source(4, "include { phase: TRAIN min_level: 2 }"),
    constant_source(2, "include { phase: TEST stage: 'A' }"),
    constant_source(3, "include { phase: TEST stage: 'B' }"),
]) + BODY


def staged_solver(text="", **fields):
    param = solver_param("base_lr: 0 " + text, net=STAGED, **fields)
    return Solver(prevent_snapshots(param))


def test_several_test_nets_from_test_net_param_and_test_states(log):
    param = solver_param(
        "base_lr: 0 test_iter: 1 test_iter: 2 test_iter: 3 test_interval: 5 "
        "test_state { stage: 'other' } test_state { stage: 'A' } test_state { stage: 'B' }",
        net=STAGED)
    text_format.Parse(constant_source(5, "") + BODY, param.test_net_param.add())
    solver = Solver(prevent_snapshots(param))
    assert len(solver.test_nets) == 3
    scores = [solver.test(i)["r"][0] for i in range(3)]
    assert scores == [6 * 5, 6 * 2, 6 * 3]  # test_net_param first, then the generic ones
    text = log.text()
    assert "Creating test net (#0) specified by test_net_param" in text
    assert "Creating test net (#2) specified by net_param" in text
    assert re.search(r"Test net output #0: r = 18 \(\* 1 = 18 loss\)", text)
    # The test nets use the train net's weights (shared, not copied).
    solver.net.params["ip"][0].data[...] = 2
    assert solver.test(1)["r"][0] == 6 * 2 * 2


def test_test_state_count_and_test_interval_are_checked():
    with pytest.raises(SolverError, match="test_state must be unspecified or given once"):
        staged_solver("test_iter: 1 test_iter: 1 test_interval: 1 test_state { stage: 'A' }")
    with pytest.raises(SolverError, match="test_interval is not set"):
        staged_solver("test_iter: 1 test_state { stage: 'A' }")
    param = solver_param("test_iter: 1 test_interval: 1", net=None)
    text_format.Parse(STAGED, param.train_net_param)
    with pytest.raises(SolverError, match="give one test_iter per test net"):
        Solver(prevent_snapshots(param))  # a train net only: nothing to test


@pytest.mark.parametrize("state, value", [("", 1), ("train_state { stage: 'big' }", 7),
                                          ("train_state { level: 2 }", 4)])
def test_train_state_selects_the_train_layers(state, value):
    solver = staged_solver(state)
    loss = solver.net.forward_from_to()
    assert loss == 6 * value


def test_test_compute_loss_and_test_initialization(log):
    solver = staged_solver("test_iter: 2 test_interval: 2 test_state { stage: 'A' } "
                           "test_compute_loss: true", max_iter=4)
    solver.solve()
    text = log.text()
    assert text.count("Testing net (#0)") == 3  # iterations 0, 2 and the final 4
    assert "Test loss: 12" in text

    log.lines.clear()
    solver = staged_solver("test_iter: 1 test_interval: 2 test_state { stage: 'A' } "
                           "test_initialization: false", max_iter=4)
    solver.solve()
    tested = re.findall(r"Iteration (\d+), Testing net", log.text())
    assert tested == ["2", "4"]
    assert "Test loss" not in log.text()


def test_average_loss_smooths_over_the_last_n_iterations():
    solver = Solver(prevent_snapshots(solver_param("base_lr: 0 average_loss: 3")))
    losses = [4.0, 2.0, 9.0, 1.0, 5.0, 0.5]
    feed = iter(losses)
    solver.net.forward_backward = lambda: next(feed)
    seen = []
    solver.add_callback(lambda: None, lambda: seen.append(solver.smoothed_loss))
    solver.step(len(losses))
    want = [np.mean(losses[max(0, i - 2):i + 1]) for i in range(len(losses))]
    np.testing.assert_allclose(seen, want, rtol=1e-6)


# -- weights to start from -----------------------------------------------------------------
PROBE_NET = DUMMY_NET + """
layer { name: "probe" type: "InnerProduct" bottom: "ip2" top: "probe" include { phase: TEST }
  inner_product_param { num_output: 2 } }
"""


def partial_model(path, solver, names, value):
    """A caffemodel holding only layers ``names`` (other layers: no blobs)."""
    proto = solver.net.to_proto()
    for lp in proto.layer:
        if lp.name not in names:
            del lp.blobs[:]
        for b in lp.blobs:
            b.data[:] = [value] * len(b.data)
    save_caffemodel(str(path), proto)
    return str(path)


def model_with_probe(path, value):
    net = caffe_pb2.NetParameter()
    lp = net.layer.add(name="probe", type="InnerProduct")
    lp.blobs.add(shape=caffe_pb2.BlobShape(dim=[2, 3]), data=[value] * 6)
    lp.blobs.add(shape=caffe_pb2.BlobShape(dim=[2]), data=[value] * 2)
    save_caffemodel(str(path), net)
    return str(path)


def test_solver_weights_and_comma_lists_load_into_train_and_test_nets(tmp_path):
    base = Solver(prevent_snapshots(solver_param("base_lr: 0.1", net=DUMMY_NET)))
    a = partial_model(tmp_path / "a.caffemodel", base, {"ip1"}, 0.5)
    b = partial_model(tmp_path / "b.caffemodel", base, {"ip2"}, -0.25)
    c = model_with_probe(tmp_path / "c.caffemodel", 3.0)
    param = solver_param(f'base_lr: 0.1 weights: "{a}" weights: "{b},{c}" test_iter: 1 '
                         "test_interval: 10", net=PROBE_NET)
    solver = Solver(prevent_snapshots(param))
    assert (solver.net.params["ip1"][0].data == 0.5).all()
    assert (solver.net.params["ip2"][1].data == -0.25).all()
    test = solver.test_nets[0]
    assert (test.params["probe"][0].data == 3.0).all()
    assert (test.params["ip1"][0].data == 0.5).all()


def test_cli_weights_replace_the_solvers_and_snapshot_ignores_them(tmp_path):
    base = Solver(prevent_snapshots(solver_param("base_lr: 0.1", net=DUMMY_NET)))
    a = partial_model(tmp_path / "a.caffemodel", base, {"ip1"}, 0.5)
    b = partial_model(tmp_path / "b.caffemodel", base, {"ip2"}, -0.25)
    (tmp_path / "net.prototxt").write_text(DUMMY_NET)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0\nlr_policy: "fixed"\nmax_iter: 0\n'
        'snapshot_prefix: "w"\nweights: "missing.caffemodel"\n')
    out = netdef_cli("train", "-solver", "solver.prototxt", "-weights", "a.caffemodel,"
                     "b.caffemodel", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    layers = dict(__import__("netdef.weights").weights.load_weights(
        str(tmp_path / "w_iter_0.caffemodel")))
    assert (layers["ip1"][0] == 0.5).all() and (layers["ip2"][0] == -0.25).all()
    assert a and b

    out = netdef_cli("train", "-solver", "solver.prototxt", cwd=tmp_path)
    assert out.returncode != 0 and "missing.caffemodel" in out.stderr

    out = netdef_cli("train", "-solver", "solver.prototxt", "-snapshot", "w_iter_0.solverstate",
                     cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]

    out = netdef_cli("train", "-solver", "solver.prototxt", "-snapshot", "w_iter_0.solverstate",
                     "-weights", "a.caffemodel", cwd=tmp_path)
    assert out.returncode == 2 and "not both" in out.stderr


# -- debug_info, display, divergence -------------------------------------------------------
def test_debug_info_logs_per_layer_magnitudes_on_display_iterations(log):
    param = solver_param("base_lr: 0.1 display: 2 debug_info: true random_seed: 1",
                         net=DUMMY_NET)
    solver = Solver(prevent_snapshots(param))
    solver.step(3)
    text = log.text()
    fwd = re.findall(r"\[Forward\] Layer ip1, top blob ip1 data: ([\d.e+-]+)", text)
    assert len(fwd) == 2  # iterations 0 and 2 only
    assert re.search(r"\[Forward\] Layer ip1, param blob 0 data: [\d.e+-]+", text)
    assert re.search(r"\[Backward\] Layer ip2, bottom blob ip1 diff: [\d.e+-]+", text)
    assert re.search(r"\[Backward\] Layer ip1, param blob 1 diff: [\d.e+-]+", text)
    assert re.search(r"\[Backward\] All net params \(data, diff\): L1 norm = \(\S+, \S+\); "
                     r"L2 norm = \(\S+, \S+\)", text)
    assert re.search(r"\[Update\] Layer ip2, param 0 data: \S+; diff: \S+", text)
    assert float(fwd[0]) > 0


def test_display_line_has_rates_and_time_left(log):
    param = solver_param("base_lr: 0.1 display: 2 random_seed: 1", net=DUMMY_NET,
                         max_iter=100)
    solver = Solver(prevent_snapshots(param))
    solver.step(5)
    lines = [ln for ln in log.lines if re.match(r"Iteration \d+ \(", ln)]
    assert [int(ln.split()[1]) for ln in lines] == [0, 2, 4]
    m = re.match(r"Iteration 4 \(([\d.e+]+) iter/s, ([\d.e+-]+)s/2 iters, ([\d.]+) images/s, "
                 r"(\d+):(\d\d):(\d\d) left\), loss = ([\d.e+-]+)$", lines[-1])
    assert m, lines[-1]
    rate, images = float(m.group(1)), float(m.group(3))
    assert rate > 0 and images == pytest.approx(rate * 4, rel=0.01)  # batch of 4
    assert re.search(r"Train net output #0: loss = \S+ \(\* 1 = \S+ loss\)", log.text())
    assert "Iteration 4, lr = 0.1" in log.text()


def test_nan_guard_names_iteration_and_layer_and_keeps_the_last_good_state(tmp_path):
    param = solver_param("base_lr: 2000 random_seed: 3", max_iter=100)
    param.snapshot_prefix = str(tmp_path / "guard")
    solver = Solver(param)
    solver.net.blobs["x"].data[...] = np.linspace(-2, 2, 12).reshape(4, 3)
    solver.net.blobs["t"].data[...] = 1
    with pytest.raises(SolverError) as err:
        solver.solve()
    msg = str(err.value)
    m = re.match(r"training diverged at iteration (\d+): loss = (inf|nan); the output of "
                 r"layer '(\w+)' \((\w+)\) is the first to contain NaN or inf", msg)
    assert m, msg
    it = int(m.group(1))
    assert it > 0 and it == solver.iter
    assert m.group(3) in ("ip", "loss")
    model = tmp_path / f"guard_iter_{it}.caffemodel"
    assert str(model) in msg and "lower base_lr" in msg
    weights = dict(__import__("netdef.weights").weights.load_weights(str(model)))
    assert np.isfinite(weights["ip"][0]).all()
    np.testing.assert_array_equal(weights["ip"][0], solver.net.params["ip"][0].data)
    assert (tmp_path / f"guard_iter_{it}.solverstate").exists()
    assert (tmp_path / f"guard_iter_{it}.solverstate.netdef").exists()


def test_nan_in_the_data_names_the_data_layer(tmp_path):
    param = solver_param("base_lr: 0.1")
    param.snapshot_prefix = str(tmp_path / "g")
    solver = Solver(param)
    solver.net.blobs["x"].data[0, 0] = np.nan
    with pytest.raises(SolverError, match=r"iteration 0: loss = nan; the output of layer 'in' "
                                          r"\(Input\)"):
        solver.step(1)


def test_an_update_that_overflows_is_caught(tmp_path):
    param = solver_param("base_lr: 1e37")
    param.snapshot_prefix = str(tmp_path / "g")
    solver = Solver(param)
    solver.net.blobs["x"].data[...] = 100
    with pytest.raises(SolverError, match=r"iteration 0: the update made parameters NaN or inf "
                                          r"\(first: param 0 of layer 'ip'\)"):
        solver.step(1)


def test_callbacks_run_before_forward_and_before_update():
    solver = Solver(prevent_snapshots(solver_param("base_lr: 0.1")))
    calls = []
    inner = solver.net.forward_backward
    solver.net.forward_backward = lambda: (calls.append("fb"), inner())[1]
    solver.add_callback(lambda: calls.append("start"), lambda: calls.append("ready"))
    solver.step(2)
    assert calls == ["start", "fb", "ready"] * 2


def test_solve_runs_a_final_forward_display_and_test(log, tmp_path):
    param = solver_param("base_lr: 0.1 display: 3 test_iter: 1 test_interval: 3 random_seed: 1",
                         net=DUMMY_NET, max_iter=3)
    param.snapshot_prefix = str(tmp_path / "s")
    Solver(param).solve()
    text = log.text()
    assert re.search(r"^Iteration 3, loss = \S+$", text, re.M)
    assert "Iteration 3, Testing net (#0)" in text
    assert text.rstrip().endswith("Optimization Done.")
    assert os.path.exists(tmp_path / "s_iter_3.caffemodel")
