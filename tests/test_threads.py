"""The thread policy: every core by default, one BLAS thread on a shared machine, user wins."""

from netdef.threads import configure_environment, default_threads


def test_policy():
    assert default_threads(2) == (2, 2)
    assert default_threads(2, shared=True) == (1, 2)
    assert default_threads(0) == (1, 1)


def test_environment_defaults_never_override_the_user():
    env = {"OPENBLAS_NUM_THREADS": "3", "NUMBA_THREADING_LAYER": "workqueue"}
    configure_environment(env)
    assert env["OPENBLAS_NUM_THREADS"] == "3"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["OPENBLAS_THREAD_TIMEOUT"] == "20"
    shared = {"NETDEF_SHARED_CPU": "1", "NUMBA_THREADING_LAYER": "workqueue"}
    configure_environment(shared)
    assert shared["OPENBLAS_NUM_THREADS"] == "1"
