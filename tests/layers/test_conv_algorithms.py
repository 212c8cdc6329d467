"""Convolution's routes (whole-batch GEMM, blocked GEMM, Winograd) each forced by NETDEF_CONV_ALGO:
the golden cases, the NumPy-reference cases and the numeric gradient checks of
test_conv.py, plus 3x3 stride-1 cases that Winograd serves."""

import numpy as np
import pytest

from netdef.errors import LayerError
from netdef.layers import conv as conv_module
from netdef.layers import conv_blocked as blocked_module
from tests.gradcheck import check_gradient
from tests.layers import test_conv as base
from tests.layers.layer_case import blobs, replay_layer, tops

ALGOS = list(conv_module.ALGORITHMS)
# The blocked route in each of its column layouts (pixel-major wherever it applies,
# channel-major everywhere), with the data gradient as a convolution wherever it applies,
# and once with the data gradient always through col2im.
VARIANTS = ["gemm", "blocked-pixels", "blocked-channels", "blocked-col2im", "winograd"]
LAYOUTS = {"pixels": (1, 1, 1e9), "channels": (1 << 30, 1, 1e9), "col2im": (1, 1 << 30, 1e9)}
CONV_GOLDEN = [c for c in base.GOLDEN if c.startswith("conv_")]

# Shapes Winograd serves: 3x3 (F(2x2, 3x3) below GENERAL_3X3_MIN_BATCH images, else
# F(4x4, 3x3)) and 5x5 (F(4x4, 5x5)), stride 1, pads 0 to kernel - 1, odd and even sizes,
# one channel.
WINOGRAD_CASES = [
    ((2, 3, 5, 5), dict(num_output=2, kernel_size=3, pad=1)),
    ((4, 3, 5, 7), dict(num_output=2, kernel_size=3, pad=1)),
    ((5, 1, 6, 4), dict(num_output=3, kernel_size=3, pad_h=2, pad_w=0, bias_term="false")),
    ((1, 2, 4, 6), dict(num_output=3, kernel_size=3)),
    ((1, 1, 3, 5), dict(num_output=2, kernel_size=3, pad_h=2, pad_w=1)),
    ((2, 2, 6, 3), dict(num_output=1, kernel_size=3, pad=2, bias_term="false")),
    ((2, 3, 7, 9), dict(num_output=2, kernel_size=5, pad=2)),
    ((1, 2, 5, 6), dict(num_output=3, kernel_size=5)),
    ((1, 1, 5, 7), dict(num_output=2, kernel_size=5, pad_h=4, pad_w=1)),
    ((3, 2, 6, 5), dict(num_output=1, kernel_size=5, pad=3, bias_term="false")),
    ((4, 4, 5, 6), dict(num_output=6, kernel_size=3, pad=1, group=2)),
    ((2, 4, 5, 6), dict(num_output=6, kernel_size=3, pad=1, group=2)),   # F(2x2, 3x3)
    ((2, 6, 7, 5), dict(num_output=3, kernel_size=5, pad=2, group=3)),
]


def force(variant, monkeypatch):
    """Force the algorithm (and column layout) ``variant`` names; returns the algorithm."""
    algo, _, layout = variant.partition("-")
    monkeypatch.setenv(conv_module.ALGO_ENV, algo)
    if layout:
        pixel_min_run, dgrad_min_channels, dgrad_max_growth = LAYOUTS[layout]
        monkeypatch.setattr(blocked_module, "PIXEL_MIN_RUN", pixel_min_run)
        monkeypatch.setattr(blocked_module, "DGRAD_MIN_CHANNELS", dgrad_min_channels)
        monkeypatch.setattr(blocked_module, "DGRAD_MAX_GROWTH", dgrad_max_growth)
    return algo


@pytest.fixture(params=VARIANTS)
def algo(request, monkeypatch):
    return force(request.param, monkeypatch)


@pytest.mark.parametrize("case", CONV_GOLDEN)
def test_golden(algo, case):
    replay_layer(case, rtol=1e-4)


@pytest.mark.parametrize("shape,params,repeated,geo", base.CONV_CASES)
def test_convolution_matches_reference(algo, shape, params, repeated, geo):
    base.test_convolution_matches_reference(shape, params, repeated, geo)


@pytest.mark.parametrize("kind,shape,params,repeated",
                         [c for c in base.GRAD_CASES if c[0] == "Convolution"])
def test_gradient(algo, kind, shape, params, repeated):
    base.test_gradient(kind, shape, params, repeated)


@pytest.mark.parametrize("shape,params", WINOGRAD_CASES)
def test_winograd_shapes(algo, shape, params):
    layer = base.conv_layer(**params)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    base.randomize_params(layer)
    layer.forward(bottom, top)
    assert layer.algo == algo
    pad = (params.get("pad_h", params.get("pad", 0)), params.get("pad_w", params.get("pad", 0)))
    b = layer.blobs[1].data if layer.bias_term else None
    group = params.get("group", 1)
    want = base.ref_conv(x, layer.blobs[0].data, b, (1, 1), pad, (1, 1), group)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(top[0].shape).astype(np.float32)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    w = layer.blobs[0].data
    w_t = np.concatenate([g[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
                          for g in np.split(w, group)])      # per group: (C/g, K/g, r, r)
    r = params["kernel_size"]
    back_pad = (r - 1 - pad[0], r - 1 - pad[1])
    np.testing.assert_allclose(bottom[0].diff, base.ref_conv(dy, w_t, None, (1, 1), back_pad,
                                                             (1, 1), group), rtol=1e-4, atol=1e-4)

    layer = base.conv_layer(**params)
    bottom, top = blobs(rng.standard_normal(shape)), tops(1)
    layer.layer_setup(bottom, top)
    base.randomize_params(layer)
    # A convolution is linear in its bottom and in its weights, so central differences are
    # exact for any step; a large one keeps F(4x4, 5x5)'s round-off (~3e-6 of the output)
    # from swamping them.
    check_gradient(layer, bottom, top, setup=False, step=1.0)


def test_auto_picks_one_and_caches_it(monkeypatch):
    monkeypatch.delenv(conv_module.ALGO_ENV, raising=False)
    monkeypatch.setattr(conv_module, "_ALGO_CHOICE", {})
    layer = base.conv_layer(num_output=2, kernel_size=3, pad=1)
    bottom, top = blobs(np.ones((1, 2, 4, 4), np.float32)), tops(1)
    layer.layer_setup(bottom, top)
    layer.phase = 1                     # TEST: the fastest forward, timed once
    layer.forward(bottom, top)
    assert layer.algo in ALGOS
    assert list(conv_module._ALGO_CHOICE.values()) == [layer.algo]


def test_auto_times_whole_steps_at_the_first_backward(monkeypatch):
    """TRAIN: the first backward times forward + backward of every route, then puts the
    top data and the parameter diffs back as they were."""
    monkeypatch.delenv(conv_module.ALGO_ENV, raising=False)
    monkeypatch.setattr(conv_module, "_ALGO_CHOICE", {})
    rng = np.random.default_rng(2)
    layer = base.conv_layer(num_output=2, kernel_size=3, pad=1)
    x = rng.standard_normal((2, 2, 5, 4))
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    base.randomize_params(layer)
    layer.forward(bottom, top)
    assert layer.algo == "blocked"
    y = top[0].data.copy()
    top[0].diff[...] = rng.standard_normal(top[0].shape)
    layer.backward(top, [True], bottom)
    assert layer.algo in ALGOS
    assert list(conv_module._ALGO_CHOICE.values()) == [layer.algo]
    np.testing.assert_array_equal(top[0].data, y)
    dw = np.zeros((2, 2, 3, 3))      # the weight diff holds ONE backward's gradient
    for idx in np.ndindex(*dw.shape):
        e = np.zeros(dw.shape)
        e[idx] = 1
        dw[idx] = (base.ref_conv(x, e, None, (1, 1), (1, 1), (1, 1), 1) * top[0].diff).sum()
    np.testing.assert_allclose(layer.blobs[0].diff, dw, rtol=1e-4, atol=1e-4)


def test_unknown_algorithm_is_refused(monkeypatch):
    monkeypatch.setenv(conv_module.ALGO_ENV, "fft")
    layer = base.conv_layer(num_output=2, kernel_size=3)
    bottom, top = blobs(np.ones((1, 1, 4, 4), np.float32)), tops(1)
    layer.layer_setup(bottom, top)
    with pytest.raises(LayerError, match="NETDEF_CONV_ALGO"):
        layer.forward(bottom, top)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("params", [dict(num_output=3, kernel_size=3, pad=1),
                                    dict(num_output=4, kernel_size=2, stride=2, group=2)])
def test_blocked_chunks_match_gemm(layout, params, monkeypatch):
    """One image per chunk, the chunks shared among worker threads: the same forward,
    gradients and accumulated parameter diffs as the whole-batch GEMM."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 4, 6, 5)).astype(np.float32)
    results = {}
    for variant in ("gemm", "blocked-" + layout):
        force(variant, monkeypatch)
        monkeypatch.setattr(blocked_module, "BLOCK_FLOATS", 1)
        layer = base.conv_layer(**params)
        bottom, top = blobs(x), tops(1)
        layer.layer_setup(bottom, top)
        base.randomize_params(layer)
        layer.forward(bottom, top)
        top[0].diff[...] = rng.standard_normal(top[0].shape) if not results else \
            results["gemm"][1]
        for blob in layer.blobs:
            blob.diff[...] = 1.0            # backward accumulates into parameter diffs
        layer.backward(top, [True], bottom)
        results[variant] = (top[0].data.copy(), top[0].diff.copy(), bottom[0].diff.copy(),
                            [blob.diff.copy() for blob in layer.blobs])
        assert layer.algo == variant.split("-")[0]
    (y0, _, dx0, dp0), (y1, _, dx1, dp1) = results.values()
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-5, atol=1e-5)
    for a, b in zip(dp1, dp0, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", [3, 5])
def test_general_winograd_chunks_and_bottoms_match_gemm(kernel, monkeypatch):
    """F(4x4, r x r) with one image per chunk and two bottom/top pairs (the weight gradient
    redoes the input transform of the bottom the forward did not end on): the same tops,
    bottom diffs and accumulated parameter diffs as the whole-batch GEMM."""
    from netdef.kernels import winograd_general
    monkeypatch.setattr(winograd_general, "SCRATCH_FLOATS", 1)
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((4, 2, 6, 7)).astype(np.float32) for _ in range(2)]
    dys = None
    results = {}
    for algo in ("gemm", "winograd"):
        force(algo, monkeypatch)
        layer = base.conv_layer(num_output=3, kernel_size=kernel, pad=kernel // 2)
        bottom, top = [blobs(x)[0] for x in xs], tops(2)
        layer.layer_setup(bottom, top)
        base.randomize_params(layer)
        layer.forward(bottom, top)
        dys = dys or [rng.standard_normal(t.shape).astype(np.float32) for t in top]
        for t, dy in zip(top, dys, strict=True):
            t.diff[...] = dy
        for blob in layer.blobs:
            blob.diff[...] = 1.0
        layer.backward(top, [True, True], bottom)
        assert layer.algo == algo
        results[algo] = [t.data.copy() for t in top] + [b.diff.copy() for b in bottom] + [
            blob.diff.copy() for blob in layer.blobs]
    for a, b in zip(results["winograd"], results["gemm"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,num", [(3, 2), (3, 4), (5, 2)])
def test_test_phase_winograd_transforms_filters_once_per_weights(kernel, num, monkeypatch):
    """A TEST net reuses the transformed filters while the weights stay bit for bit the
    same, and transforms again after they change in place (net surgery)."""
    from netdef.kernels import winograd, winograd_general
    force("winograd", monkeypatch)
    calls = []
    for module in (winograd, winograd_general):
        real = module.transform_filters
        monkeypatch.setattr(module, "transform_filters",
                            lambda *a, real=real: (calls.append(1), real(*a)))
    layer = base.conv_layer(num_output=3, kernel_size=kernel, pad=1)
    layer.phase = 1
    rng = np.random.default_rng(4)
    x = rng.standard_normal((num, 2, 6, 7)).astype(np.float32)
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    base.randomize_params(layer)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    for _ in range(3):
        layer.forward(bottom, top)
    assert len(calls) == 1
    np.testing.assert_allclose(top[0].data, base.ref_conv(x, w, b, (1, 1), (1, 1), (1, 1), 1),
                               rtol=1e-4, atol=1e-4)
    w[1, 0, 0, 0] += 1.0
    layer.forward(bottom, top)
    assert len(calls) == 2
    np.testing.assert_allclose(top[0].data, base.ref_conv(x, w, b, (1, 1), (1, 1), (1, 1), 1),
                               rtol=1e-4, atol=1e-4)


def test_winograd_is_not_offered_beyond_its_workspace_limit(monkeypatch):
    """Winograd keeps whole-batch transforms: a layer whose V and M would pass
    WINOGRAD_MAX_FLOATS gets the blocked route, even when Winograd is forced."""
    force("winograd", monkeypatch)
    layer = base.conv_layer(num_output=3, kernel_size=5, pad=2)
    bottom, top = blobs(np.ones((2, 2, 8, 8), np.float32)), tops(1)
    layer.layer_setup(bottom, top)
    assert "winograd" in layer._candidates()
    monkeypatch.setattr(conv_module, "WINOGRAD_MAX_FLOATS", layer._winograd_floats() - 1)
    assert "winograd" not in layer._candidates()
    layer.forward(bottom, top)
    assert layer.algo == "blocked"


def test_one_large_image_takes_general_winograd_with_channel_runs(monkeypatch):
    """One 24x25 image of 8 channels, 3x3: the general F(4x4, 3x3) (its input transform over
    channels), the same top, bottom diff and parameter diffs as the whole-batch GEMM."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 8, 24, 25)).astype(np.float32)
    dy = rng.standard_normal((1, 4, 24, 25)).astype(np.float32)
    results = {}
    for algo in ("gemm", "winograd"):
        force(algo, monkeypatch)
        layer = base.conv_layer(num_output=4, kernel_size=3, pad=1)
        bottom, top = blobs(x), tops(1)
        layer.layer_setup(bottom, top)
        base.randomize_params(layer)
        layer.forward(bottom, top)
        top[0].diff[...] = dy
        layer.backward(top, [True], bottom)
        if algo == "winograd":
            assert layer._winograd_general() and layer._wg_fwd.band
        results[algo] = [top[0].data.copy(), bottom[0].diff.copy()] + [
            blob.diff.copy() for blob in layer.blobs]
    for a, b in zip(results["winograd"], results["gemm"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
