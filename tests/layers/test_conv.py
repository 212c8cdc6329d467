"""Convolution, Deconvolution and Im2col: NumPy references, gradients, Caffe's rules."""

import itertools

import numpy as np
import pytest

from netdef.errors import LayerError, ShapeError
from netdef.layers import conv as conv_module
from tests.gradcheck import check_gradient
from tests.layers.layer_case import blobs, make_layer, replay_layer, tops


def conv_text(kind="Convolution", **params):
    body = " ".join(f"{k}: {v}" for k, v in params.items())
    return f'name: "c" type: "{kind}" convolution_param {{ {body} }}'


def conv_layer(kind="Convolution", repeated=None, **params):
    """A layer from keyword parameters; ``repeated`` = {"kernel_size": [2, 3]} etc."""
    text = conv_text(kind, **params)
    for name, values in (repeated or {}).items():
        text = text[:-1] + " ".join(f"{name}: {v}" for v in values) + " }"
    return make_layer(text)


def randomize_params(layer, seed=0):
    rng = np.random.default_rng(seed)
    for b in layer.blobs:
        b.data[...] = rng.standard_normal(b.shape)


def ref_conv(x, w, b, stride, pad, dil, group):
    """Direct N-D grouped cross-correlation, one kernel offset at a time."""
    N, C = x.shape[:2]
    spatial, kernel = x.shape[2:], w.shape[2:]
    cout = w.shape[0]
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(p, p) for p in pad])
    out = [(s + 2 * p - (d * (k - 1) + 1)) // st + 1
           for s, k, st, p, d in zip(spatial, kernel, stride, pad, dil)]
    y = np.zeros((N, cout, *out))
    ci, co = C // group, cout // group
    for o in itertools.product(*[range(v) for v in out]):
        for k in itertools.product(*[range(v) for v in kernel]):
            idx = tuple(o[d] * stride[d] + k[d] * dil[d] for d in range(len(o)))
            patch = xp[(slice(None), slice(None), *idx)]
            for g in range(group):
                y[(slice(None), slice(g * co, (g + 1) * co), *o)] += (
                    patch[:, g * ci:(g + 1) * ci] @ w[(slice(g * co, (g + 1) * co), slice(None),
                                                       *k)].T)
    if b is not None:
        y += b.reshape((1, cout) + (1,) * len(out))
    return y


def ref_deconv(x, w, b, stride, pad, dil, group):
    """Each input pixel scatters W[c] times itself over the (dilated) kernel footprint."""
    N, C = x.shape[:2]
    spatial, kernel = x.shape[2:], w.shape[2:]
    cout = w.shape[1] * group
    full = [st * (s - 1) + d * (k - 1) + 1 for s, k, st, d in zip(spatial, kernel, stride, dil)]
    y = np.zeros((N, cout, *full))
    ci, co = C // group, cout // group
    for i in itertools.product(*[range(v) for v in spatial]):
        for k in itertools.product(*[range(v) for v in kernel]):
            idx = tuple(i[d] * stride[d] + k[d] * dil[d] for d in range(len(i)))
            for g in range(group):
                y[(slice(None), slice(g * co, (g + 1) * co), *idx)] += (
                    x[(slice(None), slice(g * ci, (g + 1) * ci), *i)].astype(np.float64)
                    @ w[(slice(g * ci, (g + 1) * ci), slice(None), *k)])
    crop = tuple(slice(p, f - p) for p, f in zip(pad, full))
    y = y[(slice(None), slice(None), *crop)]
    if b is not None:
        y += b.reshape((1, cout) + (1,) * len(spatial))
    return y


# -- golden cases from the reference Caffe ---------------------------------------
GOLDEN = ["conv_basic", "conv_3d", "conv_dilation", "conv_group", "conv_nobias",
          "conv_pad_stride", "conv_rect", "deconv_basic", "deconv_dilation",
          "deconv_rect_nobias", "deconv_stride_pad", "im2col"]


@pytest.mark.parametrize("case", GOLDEN)
def test_golden(case):
    replay_layer(case, rtol=1e-4)


# -- exact values against the NumPy references -------------------------------------
CONV_CASES = [
    # bottom shape, params, repeated params, (stride, pad, dil, group)
    ((2, 3, 7, 9), dict(num_output=4, kernel_size=3), None, ((1, 1), (0, 0), (1, 1), 1)),
    ((2, 4, 7, 8), dict(num_output=6, group=2, kernel_h=3, kernel_w=2, stride_h=2, stride_w=1,
                        pad_h=2, pad_w=1, dilation=2), None, ((2, 1), (2, 1), (2, 2), 2)),
    ((2, 6, 5, 5), dict(num_output=4, group=2, kernel_size=1), None,
     ((1, 1), (0, 0), (1, 1), 2)),
    ((1, 2, 4, 5, 6), dict(num_output=3), {"kernel_size": [2, 3, 2], "pad": [1, 0, 1],
                                           "stride": [1, 2, 1], "dilation": [1, 1, 2]},
     ((1, 2, 1), (1, 0, 1), (1, 1, 2), 1)),
    ((2, 2, 9), dict(num_output=3, kernel_size=3, stride=2, pad=1), None, ((2,), (1,), (1,), 1)),
]


@pytest.mark.parametrize("shape,params,repeated,geo", CONV_CASES)
def test_convolution_matches_reference(shape, params, repeated, geo):
    rng = np.random.default_rng(4)
    layer = conv_layer(repeated=repeated, **params)
    x = rng.standard_normal(shape).astype(np.float32)
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    randomize_params(layer)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    layer.forward(bottom, top)
    want = ref_conv(x, w, b, *geo)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-4, atol=1e-4)

    # backward: the adjoint identities of a linear map, against the reference
    dy = rng.standard_normal(top[0].shape).astype(np.float32)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    # weight gradient: <dy, conv_e(x)> for each unit weight e, through the reference
    dw_want = np.zeros(w.shape)
    for idx in np.ndindex(*w.shape):
        e = np.zeros(w.shape, np.float32)
        e[idx] = 1
        dw_want[idx] = (ref_conv(x, e, None, *geo) * dy).sum()
    np.testing.assert_allclose(layer.blobs[0].diff, dw_want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.blobs[1].diff, dy.sum(axis=tuple(
        i for i in range(dy.ndim) if i != 1)), rtol=1e-4, atol=1e-4)
    # data gradient: <dx, v> = <dy, conv(v)> for the bias-free map and any v
    for _ in range(3):
        v = rng.standard_normal(shape).astype(np.float32)
        lhs = (ref_conv(v, w, None, *geo) * dy).sum()
        np.testing.assert_allclose((bottom[0].diff * v).sum(), lhs, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("shape,params,repeated,geo", [
    ((2, 3, 4, 5), dict(num_output=2, kernel_size=3), None, ((1, 1), (0, 0), (1, 1), 1)),
    ((2, 4, 3, 4), dict(num_output=6, group=2, kernel_size=4, stride=2, pad=1), None,
     ((2, 2), (1, 1), (1, 1), 2)),
    ((1, 3, 4, 3), dict(num_output=2, kernel_h=2, kernel_w=3, stride_h=2, stride_w=1,
                        dilation=2), None,
     ((2, 1), (0, 0), (2, 2), 1)),
    ((2, 4, 3, 3), dict(num_output=2, kernel_size=1, group=2), None,
     ((1, 1), (0, 0), (1, 1), 2)),
    ((1, 2, 3, 2, 3), dict(num_output=2), {"kernel_size": [2, 2, 3], "stride": [2, 1, 1]},
     ((2, 1, 1), (0, 0, 0), (1, 1, 1), 1)),
])
def test_deconvolution_matches_reference(shape, params, repeated, geo):
    rng = np.random.default_rng(5)
    layer = conv_layer("Deconvolution", repeated=repeated, **params)
    x = rng.standard_normal(shape).astype(np.float32)
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    randomize_params(layer)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    assert w.shape[:2] == (shape[1], params["num_output"] // params.get("group", 1))
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, ref_deconv(x, w, b, *geo), rtol=1e-4, atol=1e-4)
    # backward data is a convolution with the same weights (the transpose)
    dy = rng.standard_normal(top[0].shape).astype(np.float32)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, ref_conv(dy, w, None, *geo), rtol=1e-4,
                               atol=1e-4)


# -- numeric gradients ------------------------------------------------------------
GRAD_CASES = [
    ("Convolution", (2, 3, 5, 5), dict(num_output=2, kernel_size=3, pad=1, stride=2), None),
    ("Convolution", (1, 4, 5, 6), dict(num_output=4, group=2, kernel_h=3, kernel_w=2,
                                       dilation=2, pad_w=1), None),
    ("Convolution", (2, 4, 3, 3), dict(num_output=2, group=2, kernel_size=1), None),
    ("Convolution", (1, 2, 3, 4, 3), dict(num_output=2), {"kernel_size": [2, 2, 2],
                                                           "pad": [1, 0, 0]}),
    ("Deconvolution", (1, 2, 3, 4), dict(num_output=4, group=2, kernel_size=3, stride=2,
                                         pad=1), None),
    ("Deconvolution", (2, 2, 3, 3), dict(num_output=3, kernel_size=2, bias_term="false"), None),
]


@pytest.mark.parametrize("kind,shape,params,repeated", GRAD_CASES)
def test_gradient(kind, shape, params, repeated):
    layer = conv_layer(kind, repeated=repeated, **params)
    x = np.random.default_rng(6).standard_normal(shape)
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    randomize_params(layer)
    check_gradient(layer, bottom, top, setup=False)


def test_im2col_layer_matches_kernel_reference_and_gradient():
    from tests.kernels.test_conv_kernels import ref_im2col

    layer = make_layer('name: "i" type: "Im2col" convolution_param { kernel_h: 2 kernel_w: 3 '
                       'stride: 2 pad: 1 dilation: 1 }')
    x = np.random.default_rng(7).standard_normal((2, 3, 5, 4)).astype(np.float32)
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    layer.forward(bottom, top)
    want = ref_im2col(x, (2, 3), (2, 2), (1, 1), (1, 1))       # (rows, N, oh, ow)
    assert top[0].shape == (2, 18, 3, 2)
    np.testing.assert_array_equal(top[0].data, want.transpose(1, 0, 2, 3))
    check_gradient(layer, bottom, top, setup=False)


def test_multiple_bottoms_share_the_weights():
    layer = conv_layer(num_output=3, kernel_size=2, stride=1)
    rng = np.random.default_rng(8)
    x1, x2 = rng.standard_normal((2, 2, 2, 4, 4))
    bottom, top = blobs(x1, x2), tops(2)
    layer.layer_setup(bottom, top)
    randomize_params(layer)
    layer.forward(bottom, top)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    for i, x in enumerate((x1, x2)):
        np.testing.assert_allclose(top[i].data, ref_conv(x, w, b, (1, 1), (0, 0), (1, 1), 1),
                                   rtol=1e-4, atol=1e-4)
    check_gradient(layer, bottom, top, setup=False)


def test_chunked_batches_match_whole_batch(monkeypatch):
    """A column matrix over the limit is built a few images at a time; same numbers."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((5, 2, 6, 6)).astype(np.float32)
    dy = rng.standard_normal((5, 4, 6, 6))         # both layers keep 6x6 here
    results = []
    whole_batch = conv_module.COL_BUFFER_LIMIT
    for limit in (whole_batch, 2 * 9 * 36 * 2):    # whole batch; then 2 (conv), 1 (deconv)
        monkeypatch.setattr(conv_module, "COL_BUFFER_LIMIT", limit)
        for kind in ("Convolution", "Deconvolution"):
            layer = conv_layer(kind, num_output=4, kernel_size=3, pad=1)
            bottom, top = blobs(x), tops(1)
            layer.layer_setup(bottom, top)
            assert (layer.chunk < 5) == (limit != whole_batch)
            randomize_params(layer)
            layer.forward(bottom, top)
            top[0].diff[...] = dy
            layer.backward(top, [True], bottom)
            results.append([top[0].data.copy(), bottom[0].diff.copy()]
                           + [p.diff.copy() for p in layer.blobs])
    whole, chunked = results[:2], results[2:]
    for a_list, b_list in zip(whole, chunked, strict=True):
        for a, b in zip(a_list, b_list, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_backward_accumulates_param_diffs_and_reuses_columns():
    layer = conv_layer(num_output=2, kernel_size=2)
    x = np.random.default_rng(10).standard_normal((2, 2, 4, 4))
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    randomize_params(layer)
    layer.forward(bottom, top)
    top[0].diff[...] = 1.0
    layer.backward(top, [False], bottom)            # weight gradient from the cached columns
    first = [p.diff.copy() for p in layer.blobs]
    layer.backward(top, [True], bottom)             # again, then the data gradient
    layer.backward(top, [True], bottom)             # columns were overwritten: recomputed
    for p, f in zip(layer.blobs, first, strict=True):
        np.testing.assert_allclose(p.diff, 3 * f, rtol=1e-5)
    layer.param_propagate_down = [False, False]
    layer.backward(top, [True], bottom)
    for p, f in zip(layer.blobs, first, strict=True):
        np.testing.assert_allclose(p.diff, 3 * f, rtol=1e-5)


def test_fillers_and_shapes():
    layer = make_layer('name: "c" type: "Convolution" convolution_param { num_output: 6 '
                       'group: 3 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 } '
                       'bias_filler { type: "constant" value: 0.25 } }')
    bottom, top = blobs(np.zeros((2, 9, 6, 5))), tops(1)
    layer.layer_setup(bottom, top)
    assert layer.blobs[0].shape == (6, 3, 3, 3)
    assert top[0].shape == (2, 6, 4, 3)
    assert 0.3 < layer.blobs[0].data.std() < 0.7
    np.testing.assert_array_equal(layer.blobs[1].data, 0.25)

    deconv = conv_layer("Deconvolution", num_output=4, group=2, kernel_size=4, stride=2, pad=1,
                        bias_term="false")
    bottom, top = blobs(np.zeros((1, 6, 3, 5))), tops(1)
    deconv.layer_setup(bottom, top)
    assert [b.shape for b in deconv.blobs] == [(6, 2, 4, 4)]
    assert top[0].shape == (1, 4, 6, 10)


def test_channel_axis():
    layer = conv_layer(num_output=2, kernel_size=3, axis=2)
    x = np.random.default_rng(11).standard_normal((2, 3, 4, 6)).astype(np.float32)
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    randomize_params(layer)
    assert layer.blobs[0].shape == (2, 4, 3)
    assert top[0].shape == (2, 3, 2, 4)
    layer.forward(bottom, top)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    want = ref_conv(x.reshape(6, 4, 6), w, b, (1,), (0,), (1,), 1).reshape(2, 3, 2, 4)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("text,shape,match", [
    ("num_output: 4 kernel_size: 3 group: 2", (1, 3, 5, 5), "not divisible by group"),
    ("num_output: 3 kernel_size: 3 group: 2", (1, 4, 5, 5), "not a multiple of group"),
    ("num_output: 0 kernel_size: 3", (1, 3, 5, 5), "num_output"),
    ("num_output: 2 kernel_h: 3 kernel_w: 3", (1, 3, 5, 5, 5), "2-D"),
    ("num_output: 2 kernel_size: 3 kernel_h: 3 kernel_w: 3", (1, 3, 5, 5), "not both"),
    ("num_output: 2 kernel_size: 3 kernel_size: 3", (1, 3, 5, 5, 5), "once per spatial"),
    ("num_output: 2", (1, 3, 5, 5), "kernel_size must be given"),
    ("num_output: 2 kernel_h: 3", (1, 3, 5, 5), "nonzero"),
    ("num_output: 2 kernel_size: 3 stride: 0", (1, 3, 5, 5), "stride"),
])
def test_impossible_parameters(text, shape, match):
    layer = make_layer(f'name: "bad" type: "Convolution" convolution_param {{ {text} }}')
    with pytest.raises(LayerError, match=match) as err:
        layer.layer_setup(blobs(np.zeros(shape)), tops(1))
    assert "'bad'" in str(err.value)


def test_shape_errors_name_the_layer():
    layer = make_layer('name: "c1" type: "Convolution" convolution_param { num_output: 2 '
                       'kernel_size: 5 }')
    with pytest.raises(ShapeError, match="c1.*does not fit"):
        layer.layer_setup(blobs(np.zeros((1, 1, 3, 3))), tops(1))
    layer = conv_layer(num_output=2, kernel_size=1)
    bottom, top = blobs(np.zeros((1, 3, 3, 3))), tops(1)
    layer.layer_setup(bottom, top)
    with pytest.raises(ShapeError, match="channels"):
        layer.reshape(blobs(np.zeros((1, 4, 3, 3))), top)


def test_no_spatial_axes_is_an_inner_product():
    """Caffe allows a bottom with no axes after the channel axis: a 1x1 convolution."""
    layer = conv_layer(num_output=3, kernel_size=1)
    x = np.random.default_rng(12).standard_normal((4, 5)).astype(np.float32)
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    randomize_params(layer)
    layer.forward(bottom, top)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    assert w.shape == (3, 5) and top[0].shape == (4, 3)
    np.testing.assert_allclose(top[0].data, x @ w.T + b, rtol=1e-5, atol=1e-5)
    check_gradient(layer, bottom, top, setup=False)


def test_im2col_layer_one_spatial_axis():
    from tests.kernels.test_conv_kernels import ref_im2col

    layer = make_layer('name: "i" type: "Im2col" convolution_param { kernel_size: 3 '
                       'stride: 2 pad: 1 dilation: 2 }')
    x = np.random.default_rng(13).standard_normal((2, 3, 9)).astype(np.float32)
    bottom, top = blobs(x), tops(1)
    layer.layer_setup(bottom, top)
    layer.forward(bottom, top)
    want = ref_im2col(x, (3,), (2,), (1,), (2,))
    np.testing.assert_array_equal(top[0].data, want.transpose(1, 0, 2))
    check_gradient(layer, bottom, top, setup=False)
