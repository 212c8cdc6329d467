"""The thread policy: every core by default, one BLAS thread on a shared machine, user wins."""

import os
import subprocess
import sys

import pytest

from netdef.threads import available_cpus, configure_environment, default_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_policy():
    assert default_threads(2) == (2, 2)
    assert default_threads(2, shared=True) == (1, 2)
    assert default_threads(0) == (1, 1)


def test_environment_defaults_never_override_the_user():
    env = {"OPENBLAS_NUM_THREADS": "3", "NUMBA_THREADING_LAYER": "workqueue"}
    set_here = configure_environment(env)
    assert env["OPENBLAS_NUM_THREADS"] == "3"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["OPENBLAS_THREAD_TIMEOUT"] == "20"
    assert "OPENBLAS_NUM_THREADS" not in set_here and "OPENBLAS_THREAD_TIMEOUT" in set_here
    shared = {"NETDEF_SHARED_CPU": "1", "NUMBA_THREADING_LAYER": "workqueue"}
    configure_environment(shared)
    assert shared["OPENBLAS_NUM_THREADS"] == "1"


# numpy first, then netdef (what most pycaffe scripts do): prints OpenBLAS's thread timeout
# setting and thread count as netdef left them, and checks BLAS still multiplies
NUMPY_FIRST = """
import ctypes
import numpy as np
import netdef.threads as T
found = T.numpy_openblas()
if found is None:
    print("no-openblas")
    raise SystemExit
lib, get, _ = found
lib.openblas_thread_timeout.restype = ctypes.c_int
a = np.ones((256, 256), np.float32)
assert (a @ a == 256).all()
print(lib.openblas_thread_timeout(), get())
"""

# the same start; then how much CPU the process burns while it sleeps after a GEMM
IDLE_CPU = """
import time
import numpy as np
import netdef  # noqa: F401
a = np.ones((512, 512), np.float32)
for _ in range(3):
    a @ a
cpu = time.process_time()
time.sleep(0.25)
print(time.process_time() - cpu)
"""


def _run(code, **env):
    clean = {k: v for k, v in os.environ.items() if k not in (
        "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
        "NETDEF_SHARED_CPU")}
    clean.update(env)
    done = subprocess.run([sys.executable, "-c", code], env=clean, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout.split()
    if out == ["no-openblas"]:
        pytest.skip("numpy's BLAS here is not its bundled OpenBLAS")
    return out


def test_policy_reaches_an_openblas_numpy_loaded_first():
    timeout, threads = _run(NUMPY_FIRST)
    assert timeout == "20"
    assert int(threads) == default_threads(available_cpus())[0]
    timeout, threads = _run(NUMPY_FIRST, NETDEF_SHARED_CPU="1")
    assert (timeout, threads) == ("20", "1")


def test_a_user_setting_wins_over_the_policy_after_numpy_too():
    timeout, threads = _run(NUMPY_FIRST, OPENBLAS_THREAD_TIMEOUT="7", OPENBLAS_NUM_THREADS="1")
    assert (timeout, threads) == ("7", "1")


@pytest.mark.skipif(available_cpus() < 2, reason="OpenBLAS has no worker thread on one core")
def test_openblas_worker_sleeps_between_gemms_after_numpy_first():
    # OpenBLAS's own wait, 2^28 cycles, would burn ~0.07-0.13 s of the 0.25 s sleep
    assert float(_run(IDLE_CPU)[0]) < 0.04
