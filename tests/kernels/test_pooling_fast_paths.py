"""The 3x3 stride-2 unpadded AVE fast path: the same bits as the general window loop."""

import numpy as np
import pytest

from netdef.kernels import pooling as K
from tests.kernels.test_pooling_kernels import pooled, ref_ave


def general_ave(x, PH, PW):
    """The general per-window rule, one window at a time (float32 sums in row-major order)."""
    N, C, H, W = x.shape
    top = np.empty((N, C, PH, PW), np.float32)
    for ph in range(PH):
        for pw in range(PW):
            hs, ws = 2 * ph, 2 * pw
            he, we = min(hs + 3, H), min(ws + 3, W)
            size = (he - hs) * (we - ws)
            total = np.zeros((N, C), np.float32)
            for h in range(hs, he):
                for w in range(ws, we):
                    total += x[:, :, h, w]
            top[:, :, ph, pw] = total / np.float32(size)
    return top


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 7, 9), (1, 1, 3, 4), (1, 1, 2, 5),
                                   (1, 1, 1, 1)])
def test_ave_3x3_stride2_is_bit_exact(shape):
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    PH, PW = pooled(shape[2], 3, 2, 0), pooled(shape[3], 3, 2, 0)
    top = np.full((shape[0], shape[1], PH, PW), np.nan, np.float32)
    K.ave_pool_forward(x, top, 3, 3, 2, 2, 0, 0)
    np.testing.assert_array_equal(top, general_ave(x, PH, PW))
    np.testing.assert_allclose(top, ref_ave(x, (3, 3), (2, 2), (0, 0), PH, PW), rtol=1e-6,
                               atol=1e-6)
