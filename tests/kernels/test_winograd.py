"""Winograd F(2x2, 3x3) against a plain NumPy direct convolution."""

import numpy as np
import pytest

from netdef.kernels import winograd as WG
from netdef.kernels.winograd_general import flip_filters


def direct_conv(x, w, bias, pad):
    N, C, H, W = x.shape
    K = w.shape[0]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    OH, OW = H + 2 * pad - 2, W + 2 * pad - 2
    y = np.zeros((N, K, OH, OW))
    for i in range(3):
        for j in range(3):
            y += np.einsum("nchw,kc->nkhw", xp[:, :, i:i + OH, j:j + OW], w[:, :, i, j])
    return y + bias.reshape(1, -1, 1, 1)


@pytest.mark.parametrize("shape,K,pad", [((2, 3, 6, 6), 4, 1), ((1, 2, 5, 7), 3, 0),
                                         ((3, 1, 4, 5), 2, 2), ((1, 4, 3, 3), 5, 1)])
def test_conv3x3_matches_direct(shape, K, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((K, shape[1], 3, 3)).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32)
    OH, OW = shape[2] + 2 * pad - 2, shape[3] + 2 * pad - 2
    y = np.full((shape[0], K, OH, OW), np.nan, np.float32)
    work = WG.Workspace(shape[0], shape[1], K, OH, OW)
    WG.conv3x3(x, w, bias, y, pad, pad, work)
    np.testing.assert_allclose(y, direct_conv(x, w, bias, pad), rtol=1e-4, atol=1e-4)


def test_data_gradient_is_forward_with_flipped_filters():
    """dx = conv(dy, flip(w), pad 2 - pad) for a stride-1 3x3 convolution."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    pad = 1
    dy = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    # The adjoint, from the definition: <conv(x), dy> = <x, dx> for every x.
    dx_ref = np.zeros(x.shape)
    xp_shape = (2, 3, 5 + 2 * pad, 6 + 2 * pad)
    dxp = np.zeros(xp_shape)
    for i in range(3):
        for j in range(3):
            dxp[:, :, i:i + 5, j:j + 6] += np.einsum("nkhw,kc->nchw", dy, w[:, :, i, j])
    dx_ref = dxp[:, :, pad:pad + 5, pad:pad + 6]
    dx = np.empty(x.shape, np.float32)
    work = WG.Workspace(2, 4, 3, 5, 6)
    WG.conv3x3(dy, flip_filters(w), np.zeros(0, np.float32), dx, 2 - pad, 2 - pad, work)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
