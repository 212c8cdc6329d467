"""The parallel-loop gate: small work runs on one thread, the caller's thread count comes
back, and the gated kernels compute the same bits on one thread and on all of them."""

import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from numba import get_thread_id, njit, prange

from netdef.kernels import conv as KC
from netdef.kernels import pooling as KP
from netdef.kernels import winograd as WG
from netdef.kernels import winograd_general as WGG
from netdef.kernels.gate import PARALLEL_MIN, one_thread_below, set_num_threads

MANY_THREADS = numba.config.NUMBA_NUM_THREADS >= 2


@njit(parallel=True)
def _highest_thread(work, n):
    saved = one_thread_below(work)
    ids = np.zeros(n, np.int64)
    for i in prange(n):
        ids[i] = get_thread_id()
    set_num_threads(saved)
    return ids.max()


def test_small_work_runs_on_the_calling_thread_and_the_count_comes_back():
    before = numba.get_num_threads()
    assert _highest_thread(PARALLEL_MIN - 1, 4096) == 0
    assert numba.get_num_threads() == before


@pytest.mark.skipif(not MANY_THREADS, reason="numba has one thread here")
def test_large_work_keeps_every_thread():
    before = numba.get_num_threads()
    seen = max(_highest_thread(PARALLEL_MIN, 4096) for _ in range(20))
    assert seen >= 1
    assert numba.get_num_threads() == before


def one_and_all(run):
    """run() on one numba thread, then on all of them; both results."""
    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        single = run()
    finally:
        numba.set_num_threads(saved)
    return single, run()


def same_bits(a, b):
    np.testing.assert_array_equal(np.asarray(a).view(np.uint32), np.asarray(b).view(np.uint32))


# Shapes whose work is above PARALLEL_MIN, so these runs take the parallel loops.
BIG = (2, 32, 128, 128)


@pytest.mark.skipif(not MANY_THREADS, reason="numba has one thread here")
def test_layout_and_im2col_kernels_above_the_gate_match_one_thread():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(BIG, dtype=np.float32)
    bias = rng.standard_normal(BIG[1], dtype=np.float32)
    N, C, H, W = BIG
    assert 2 * x.size >= PARALLEL_MIN

    def im2col():
        col = np.empty(C * 9 * N * H * W, np.float32)
        KC.im2col_2d(x, col, N * H * W, H * W, 3, 3, 1, 1, 1, 1, 1, 1, H, W)
        back = np.empty_like(x)
        KC.col2im_2d(col, back, N * H * W, H * W, 3, 3, 1, 1, 1, 1, 1, 1, H, W, bias)
        return col, back

    def layout():
        cn = np.empty((C, N * H * W), np.float32)
        sums = np.zeros(C, np.float32)
        KC.nc_to_cn(x.reshape(N, C, H * W), cn, sums)
        nc = np.empty((N, C, H * W), np.float32)
        KC.cn_to_nc(cn, nc, bias, True, 0.1)
        KC.add_channel_bias(nc, bias, True, 0.0)
        return cn, sums, nc

    for run in (im2col, layout):
        single, parallel = one_and_all(run)
        for a, b in zip(single, parallel, strict=True):
            same_bits(a, b)


@pytest.mark.skipif(not MANY_THREADS, reason="numba has one thread here")
@pytest.mark.parametrize("k,s,p", [((3, 3), (2, 2), (0, 0)), ((3, 3), (1, 1), (1, 1)),
                                   ((2, 2), (2, 2), (0, 0))])
def test_pooling_above_the_gate_matches_one_thread(k, s, p):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(BIG, dtype=np.float32)
    N, C, H, W = BIG
    PH, PW = ((H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1)
    geo = (*k, *s, *p)

    def run():
        top = np.empty((N, C, PH, PW), np.float32)
        mask = np.empty_like(top)
        KP.max_pool_forward(x, top, mask, *geo)
        values = np.empty_like(top)
        KP.max_pool_values(x, values, *geo)
        dx = np.empty_like(x)
        KP.mask_pool_backward(top, mask, dx, True)
        ave = np.empty_like(top)
        KP.ave_pool_forward(x, ave, *geo)
        dave = np.empty_like(x)
        KP.ave_pool_backward(ave, dave, *geo, True)
        return top, mask, values, dx, ave, dave

    single, parallel = one_and_all(run)
    for a, b in zip(single, parallel, strict=True):
        same_bits(a, b)


@pytest.mark.skipif(not MANY_THREADS, reason="numba has one thread here")
@pytest.mark.parametrize("general", [False, True])
def test_winograd_above_the_gate_matches_one_thread(general):
    rng = np.random.default_rng(2)
    N, C, K, H = 2, 32, 32, 48
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = rng.standard_normal((K, C, 3, 3), dtype=np.float32)
    bias = rng.standard_normal(K, dtype=np.float32)

    def run():
        y = np.empty((N, K, H, H), np.float32)
        if general:
            work = WGG.Workspace(4, 3, N, C, K, H, H)
            WGG.convolve(x, w, bias, y, 1, 1, work, relu_slope=0.0)
            dw = np.zeros_like(w)
            db = np.zeros(K, np.float32)
            WGG.weight_gradient(y, work, dw, db)
            return y, dw, db
        work = WG.Workspace(N, C, K, H, H)
        WG.conv3x3(x, w, bias, y, 1, 1, work)
        return (y,)

    single, parallel = one_and_all(run)
    for a, b in zip(single, parallel, strict=True):
        same_bits(a, b)


def test_gated_kernels_run_as_plain_python_with_the_jit_disabled():
    """NUMBA_DISABLE_JIT=1 (a debugging mode) runs the kernels as Python: the gate must too."""
    code = (
        "import numpy as np, netdef\n"
        "from netdef.kernels import conv as KC, pooling as KP\n"
        "x = np.arange(8, dtype=np.float32).reshape(1, 2, 4) - 4\n"
        "KC.add_channel_bias(x, np.ones(2, np.float32), True, 0.0)\n"
        "p = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)\n"
        "t = np.empty_like(p)\n"
        "KP.max_pool_values(p, t, 3, 3, 1, 1, 1, 1)\n"
        "print(x.min(), x.max(), t[0, 0, 0, 0], t[0, 0, 3, 3])\n")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.0", "4.0", "5.0", "15.0"]
