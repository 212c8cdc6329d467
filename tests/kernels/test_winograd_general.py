"""Winograd F(m x m, r x r) (kernels/winograd_general.py): its transform matrices, the
forward (fused ReLU included), and the weight gradient, against float64 direct sums."""

import numpy as np
import pytest

from netdef.kernels import winograd_general as WGG

# (m, r) for every tile side with interpolation points
SIZES = [(2, 3), (4, 3), (2, 5), (3, 5), (4, 5), (2, 6)]


def correlate(x, w, pad):
    """float64 y[n, k] = sum_c x[n, c] (zero-padded) correlated with w[k, c]."""
    r = w.shape[-1]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    OH, OW = xp.shape[2] - r + 1, xp.shape[3] - r + 1
    y = np.zeros((x.shape[0], w.shape[0], OH, OW))
    for i in range(r):
        for j in range(r):
            y += np.einsum("nchw,kc->nkhw", xp[:, :, i:i + OH, j:j + OW], w[:, :, i, j])
    return y


@pytest.mark.parametrize("m,r", SIZES)
def test_transforms_compute_a_correlation_exactly(m, r):
    """A^T [(G g) * (B^T d)] = the correlation of d with g, for unit d and g (so for all),
    up to the float32 rounding of entries such as 1/6."""
    at, g, bt = (t.astype(np.float64) for t in WGG.transforms(m, r))
    a = m + r - 1
    assert at.shape == (m, a) and g.shape == (a, r) and bt.shape == (a, a)
    for k in range(r):
        for l in range(a):
            got = at @ ((g @ np.eye(r)[k]) * (bt @ np.eye(a)[l]))
            want = [float(l == i + k) for i in range(m)]
            np.testing.assert_allclose(got, want, atol=1e-6)


def test_unknown_tile_side_is_refused():
    with pytest.raises(ValueError, match="F\\(9, 9\\)"):
        WGG.transforms(9, 9)


CASES = [  # (N, C, H, W), K, r, m, pad, chunk images (None: the workspace's own)
    ((2, 3, 7, 9), 4, 5, 4, (2, 2), None),
    ((3, 2, 5, 6), 3, 5, 4, (0, 0), 2),
    ((5, 1, 6, 5), 2, 5, 4, (4, 1), 2),
    ((2, 4, 9, 8), 3, 5, 3, (3, 3), 1),
    ((3, 2, 7, 9), 4, 3, 4, (1, 1), 2),
    ((1, 2, 4, 4), 2, 3, 2, (2, 0), None),
    ((1, 9, 7, 9), 4, 5, 4, (2, 2), None),      # few images, >= 8 channels: runs over channels
    ((2, 10, 6, 5), 3, 3, 4, (1, 0), None),
    ((1, 3, 10, 11), 2, 3, 4, (1, 1), None),    # one image, m = 4: whole tile rows out
    ((3, 2, 7, 9), 4, 3, 4, (1, 1), 1),         # ... image by image
    ((6, 2, 28, 28), 3, 3, 4, (1, 1), None),    # 294 columns a channel: A^T in two pieces
    ((1, 9, 20, 21), 3, 3, 4, (1, 1), None),    # by channels, 30 tiles: two blocks of tiles
]


def workspace(shape, K, r, m, pad, chunk):
    out = (shape[2] + 2 * pad[0] - r + 1, shape[3] + 2 * pad[1] - r + 1)
    work = WGG.Workspace(m, r, shape[0], shape[1], K, *out)
    if chunk:
        work.chunk = chunk
    return work, out


@pytest.mark.parametrize("shape,K,r,m,pad,chunk", CASES)
def test_convolve_matches_direct(shape, K, r, m, pad, chunk):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((K, shape[1], r, r)) / r).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32)
    work, out = workspace(shape, K, r, m, pad, chunk)
    want = correlate(x, w, pad) + bias.reshape(1, -1, 1, 1)
    y = np.full((shape[0], K) + out, np.nan, np.float32)
    WGG.convolve(x, w, bias, y, *pad, work)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    WGG.convolve(x, w, bias, y, *pad, work, relu_slope=0.25)
    np.testing.assert_allclose(y, np.maximum(want, 0) + 0.25 * np.minimum(want, 0),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,K,r,m,pad,chunk", CASES)
def test_weight_gradient_accumulates_the_exact_gradient(shape, K, r, m, pad, chunk):
    """dw += sum over images and positions of dy * the bottom window (and the bias diff
    += sum of dy), from the input transform the forward left behind."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    work, out = workspace(shape, K, r, m, pad, chunk)
    dy = rng.standard_normal((shape[0], K) + out).astype(np.float32)
    WGG.transform_bottom(x, *pad, work)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    want = np.ones((K, shape[1], r, r))
    for i in range(r):
        for j in range(r):
            want[:, :, i, j] += np.einsum("nkhw,nchw->kc", dy,
                                          xp[:, :, i:i + out[0], j:j + out[1]])
    dw = np.ones((K, shape[1], r, r), np.float32)
    db = np.ones(K, np.float32)
    WGG.weight_gradient(dy, work, dw, db)
    atol = max(1e-4, 1e-5 * np.abs(want).max())   # float32 sums over many positions
    np.testing.assert_allclose(dw, want, rtol=1e-4, atol=atol)
    np.testing.assert_allclose(db, 1 + dy.sum(axis=(0, 2, 3), dtype=np.float64), rtol=1e-5)
    WGG.weight_gradient(dy, work, dw, np.zeros(0, np.float32))     # no bias: dw only
    np.testing.assert_allclose(dw, 2 * want - 1, rtol=1e-4, atol=2 * atol)


def test_data_gradient_is_forward_with_flipped_filters():
    """dx = conv(dy, flip(w), pad r - 1 - pad) for a stride-1 5x5 convolution."""
    rng = np.random.default_rng(2)
    x_shape, pad, r = (2, 3, 6, 7), (2, 1), 5
    w = rng.standard_normal((4, 3, r, r)).astype(np.float32)
    out = (x_shape[2] + 2 * pad[0] - r + 1, x_shape[3] + 2 * pad[1] - r + 1)
    dy = rng.standard_normal((2, 4) + out).astype(np.float32)
    # the adjoint, from the definition: <conv(x), dy> = <x, dx> for every x
    dxp = np.zeros((2, 3, x_shape[2] + 2 * pad[0], x_shape[3] + 2 * pad[1]))
    for i in range(r):
        for j in range(r):
            dxp[:, :, i:i + out[0], j:j + out[1]] += np.einsum("nkhw,kc->nchw", dy, w[:, :, i, j])
    want = dxp[:, :, pad[0]:pad[0] + x_shape[2], pad[1]:pad[1] + x_shape[3]]
    dx = np.empty(x_shape, np.float32)
    work = WGG.Workspace(4, r, 2, 4, 3, *x_shape[2:])
    WGG.convolve(dy, WGG.flip_filters(w), np.zeros(0, np.float32), dx, r - 1 - pad[0],
                 r - 1 - pad[1], work)
    np.testing.assert_allclose(dx, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("band", [0, 1])
def test_grouped_product_multiplies_each_group_by_its_own_channels(band):
    """group 2: forward, weight gradient and the grouped flip of the data gradient against
    two independent convolutions; with image lanes and in bands (V channels-innermost,
    each group's GEMM operand a strided transposed block)."""
    rng = np.random.default_rng(3)
    N, C, K, r, pad, G = 3, 4, 6, 5, (2, 2), 2
    x = rng.standard_normal((N, C, 6, 7)).astype(np.float32)
    w = (rng.standard_normal((K, C // G, r, r)) / r).astype(np.float32)
    out = (6, 7)
    work = WGG.Workspace(4, r, N, C, K, *out, group=G)
    if band:
        work.chunk, work.band = 1, band
    y = np.empty((N, K) + out, np.float32)
    WGG.convolve(x, w, np.zeros(0, np.float32), y, *pad, work)
    halves = [correlate(x[:, :2], w[:3], pad), correlate(x[:, 2:], w[3:], pad)]
    np.testing.assert_allclose(y, np.concatenate(halves, axis=1), rtol=1e-4, atol=1e-4)
    flipped = WGG.flip_filters(w, G)
    assert flipped.shape == (C, K // G, r, r)
    np.testing.assert_array_equal(flipped[2:], w[3:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dw = np.zeros_like(w)
    WGG.weight_gradient(dy, work, dw, np.zeros(0, np.float32))
    for cs, ks in [(slice(0, 2), slice(0, 3)), (slice(2, 4), slice(3, 6))]:
        one = WGG.Workspace(4, r, N, 2, 3, *out)
        WGG.transform_bottom(x[:, cs].copy(), *pad, one)
        want = np.zeros((3, 2, r, r), np.float32)
        WGG.weight_gradient(dy[:, ks].copy(), one, want, np.zeros(0, np.float32))
        # float32 sums in another order (bands: one-image chunks of M)
        np.testing.assert_allclose(dw[ks], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("band", [1, 3, 10])
def test_channel_runs_give_the_same_product(band):
    """Few images: the input transform runs over (tile, channel) in bands of ``band`` tile
    rows, V keeps the channels innermost and M one-image chunks; forward and weight
    gradient as with image runs."""
    rng = np.random.default_rng(5)
    shape, K, r, pad = (3, 10, 6, 7), 4, 5, (2, 1)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((K, 10, r, r)) / r).astype(np.float32)
    dy = rng.standard_normal((3, K, 6, 5)).astype(np.float32)
    results = []
    for by_channels in (False, True):
        work = WGG.Workspace(4, r, 3, 10, K, 6, 5)
        work.chunk, work.band = (1, band) if by_channels else (3, 0)
        y = np.empty((3, K, 6, 5), np.float32)
        WGG.convolve(x, w, np.zeros(0, np.float32), y, *pad, work)
        dw = np.zeros_like(w)
        WGG.weight_gradient(dy, work, dw, np.zeros(0, np.float32))
        results.append((y, dw))
    np.testing.assert_allclose(results[1][0], correlate(x, w, pad), rtol=1e-4, atol=1e-4)
    for a, b in zip(results[1], results[0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("chunk,band", [(2, 0), (3, 0), (1, 1), (1, 2)])
def test_input_transform_layout(chunk, band):
    """V[e, c, col] = (B^T d B)[e] for image n's tile (th, tw) at the documented column:
    chunks of ``chunk`` images, (th * tiles_w + tw) * nc + n inside a chunk of nc."""
    rng = np.random.default_rng(6)
    N, C, H, W, r, m, pad = 3, 9, 6, 7, 3, 4, 1
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    work = WGG.Workspace(m, r, N, C, 2, H, W)
    work.chunk, work.band = chunk, band
    WGG.transform_bottom(x, pad, pad, work)
    assert work.v.strides[1] == (4 if band else 4 * work.v.shape[2])    # channels innermost
    bt = work.bt.astype(np.float64)
    a = m + r - 1
    th_n, tw_n = work.tiles_h, work.tiles_w
    xp = np.zeros((N, C, (th_n - 1) * m + a, (tw_n - 1) * m + a))
    xp[:, :, pad:pad + H, pad:pad + W] = x
    for n in range(N):
        n0 = n // chunk * chunk
        nc = min(N, n0 + chunk) - n0
        for th in range(th_n):
            for tw in range(tw_n):
                col = n0 * th_n * tw_n + (th * tw_n + tw) * nc + (n - n0)
                for c in (0, C - 1):
                    d = xp[n, c, th * m:th * m + a, tw * m:tw * m + a]
                    np.testing.assert_allclose(work.v[:, c, col], (bt @ d @ bt.T).ravel(),
                                               rtol=1e-5, atol=1e-5)


def test_output_pairs_found_for_the_tiles_netdef_uses():
    """A^T of F(4, 3) and F(4, 5) pairs its points (p, -p); other shapes take the general
    plan."""
    np.testing.assert_array_equal(WGG.output_pairs(WGG.transforms(4, 3)[0]), [1, 2])
    np.testing.assert_array_equal(WGG.output_pairs(WGG.transforms(4, 5)[0]), [1, 2, 0.5])
    for m, r in [(2, 3), (3, 5), (2, 6)]:
        assert WGG.output_pairs(WGG.transforms(m, r)[0]).size == 0
    at = WGG.transforms(4, 3)[0].copy()
    at[2, 3] += 1.0                                        # not the paired structure
    assert WGG.output_pairs(at).size == 0


@pytest.mark.parametrize("shape,K,r", [
    ((1, 5, 7, 7), 13, 3),      # 4 tiles a channel: blocks of 3 channels, the last of 1
    ((1, 3, 6, 9), 9, 5),
    ((2, 4, 5, 5), 12, 3),      # two images in one chunk: blocks of (tile, image) runs
])
@pytest.mark.parametrize("relu", [False, True])
def test_output_transform_blocks_of_channels(shape, K, r, relu):
    """Small outputs: one task transforms a block of channels; with the paired A^T or the
    general plan, the same values as the direct sum (bias and fused ReLU included)."""
    rng = np.random.default_rng(7)
    pad = (r // 2, r // 2)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((K, shape[1], r, r)) / r).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32)
    want = correlate(x, w, pad) + bias.reshape(1, -1, 1, 1)
    if relu:
        want = np.maximum(want, 0) + 0.5 * np.minimum(want, 0)
    work, out = workspace(shape, K, r, 4, pad, shape[0])
    assert WGG.OUTPUT_RUN > work.tiles_h * work.tiles_w * shape[0]       # blocks form
    for pairs in (work.at_pairs, np.zeros(0, np.float32)):
        work.at_pairs = pairs
        y = np.full((shape[0], K) + out, np.nan, np.float32)
        WGG.convolve(x, w, bias, y, *pad, work, relu_slope=0.5 if relu else None)
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
