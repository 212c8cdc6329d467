"""The batch-1 GEMV (netdef/kernels/gemv.py) against a float64 reference, and the
InnerProduct layer taking it for one row through a large W."""

import numpy as np
import pytest

from netdef.kernels.gemv import GEMV_MIN, gemv_rows
from tests.layers.test_inner_product import ip_layer, setup


@pytest.mark.parametrize("rows,k,bias", [(5, 7, True), (8, 3, False), (1, 1, True),
                                         (1031, 1023, True), (1030, 1100, False)])
def test_gemv_rows_matches_float64(rows, k, bias):
    """Row counts that are and are not multiples of the four rows in flight; the large
    cases (over GEMV_MIN floats) run on all threads."""
    rng = np.random.default_rng(rows + k)
    w = rng.standard_normal((rows, k)).astype(np.float32)
    x = rng.standard_normal(k).astype(np.float32)
    b = rng.standard_normal(rows).astype(np.float32) if bias else np.zeros(0, np.float32)
    y = np.full(rows, np.nan, np.float32)
    gemv_rows(w, x, b, y)
    want = w.astype(np.float64) @ x
    if bias:
        want += b
    scale = np.abs(w).astype(np.float64) @ np.abs(x) + 1.0     # float32 round-off bound
    assert np.all(np.abs(y - want) <= 1e-5 * scale)


@pytest.mark.parametrize("bias_term", ["true", "false"])
def test_one_row_through_a_large_weight_matrix(bias_term):
    """m = 1 and W of GEMV_MIN floats or more: the same top as the GEMM of two rows."""
    k, n = 1024, GEMV_MIN // 1024 + 3
    layer = ip_layer(f"num_output: {n} bias_term: {bias_term}")
    x = np.random.default_rng(7).standard_normal((1, k)).astype(np.float32)
    bottom, top = setup(layer, x)
    layer.forward(bottom, top)
    w = layer.blobs[0].data.astype(np.float64)
    want = x.astype(np.float64) @ w.T
    if bias_term == "true":
        want += layer.blobs[1].data
    np.testing.assert_allclose(top[0].data, want, rtol=1e-4, atol=1e-4)
