"""Training through Python layers as pycaffe scripts write them: a data layer keeping its
own RandomState in ``self.rng`` must not break steps, snapshots or restores."""

import os

import numpy as np

import netdef
from netdef import layers as L


def _solver_file(tmp_path):
    n = netdef.NetSpec()
    n.x, n.y = L.Python(module="tests.pycaffe.pylayers", layer="OwnRandomData", ntop=2,
                        param_str="3")
    n.ip = L.InnerProduct(n.x, num_output=2, weight_filler=dict(type="gaussian", std=0.1))
    n.loss = L.EuclideanLoss(n.ip, n.y)
    (tmp_path / "net.prototxt").write_text(str(n.to_proto()))
    path = tmp_path / "solver.prototxt"
    path.write_text(f'net: "{tmp_path}/net.prototxt" base_lr: 0.1 lr_policy: "fixed" '
                    f'max_iter: 10 snapshot_prefix: "{tmp_path}/snap" display: 0')
    return str(path)


def test_steps_snapshot_and_restore_with_a_users_random_state(tmp_path):
    solver = netdef.SGDSolver(_solver_file(tmp_path))
    solver.step(3)
    assert solver.iter == 3
    solver.snapshot()
    state = str(tmp_path / "snap_iter_3.solverstate")
    assert os.path.exists(state)
    weights = solver.net.params["ip"][0].data.copy()
    again = netdef.SGDSolver(_solver_file(tmp_path))
    again.restore(state)
    assert again.iter == 3
    np.testing.assert_array_equal(again.net.params["ip"][0].data, weights)
    again.step(1)
    assert isinstance(again.net.layer_dict["x"].rng, np.random.RandomState)
