"""netdef.coord_map (pycaffe's caffe.coord_map): offsets between NetSpec tops, for FCN crops."""

import numpy as np
import pytest

import netdef
from netdef import layers as L
from netdef import params as P
from netdef.coord_map import compose, coord_map, coord_map_from_to, crop, inverse


def _input(n, shape):
    n.data = L.Input(shape=dict(dim=list(shape)))
    return n.data


def test_conv_maps_output_to_the_centre_of_its_window():
    n = netdef.NetSpec()
    _input(n, (1, 1, 20, 20))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=5, stride=2, pad=1)
    axis, a, b = coord_map_from_to(n.conv, n.data)
    # output y sees input rows 2y-1 .. 2y+3, centred on 2y+1
    assert axis == 1 and a == 2 and b == 1


def test_deconv_with_the_same_geometry_undoes_a_conv():
    n = netdef.NetSpec()
    _input(n, (1, 1, 20, 20))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=4, stride=2, pad=1)
    n.up = L.Deconvolution(n.conv, num_output=1, kernel_size=4, stride=2, pad=1)
    assert coord_map_from_to(n.up, n.data) == (1, 1, 0)


def test_pass_through_layers_and_dict_params():
    n = netdef.NetSpec()
    _input(n, (1, 1, 20, 20))
    n.pool = L.Pooling(n.data, pooling_param=dict(pool=P.Pooling.MAX, kernel_size=3, stride=3))
    n.relu = L.ReLU(n.pool)
    n.bn = L.BatchNorm(n.relu)
    _, a, b = coord_map_from_to(n.bn, n.data)
    assert a == 3 and b == 1


def test_rectangular_and_legacy_hw_parameters():
    n = netdef.NetSpec()
    _input(n, (1, 1, 20, 20))
    n.listed = L.Convolution(n.data, num_output=1, kernel_size=[3, 5], stride=[1, 2], pad=[0, 1])
    n.legacy = L.Convolution(n.data, num_output=1, kernel_h=3, kernel_w=5, stride_h=1,
                             stride_w=2, pad_h=0, pad_w=1)
    for top in (n.listed, n.legacy):
        _, a, b = coord_map_from_to(top, n.data)
        np.testing.assert_array_equal(a, [1, 2])
        np.testing.assert_array_equal(b, [1, 1])


def test_compose_and_inverse():
    f = (1, np.array([2.0]), np.array([3.0]))
    g = (None, 0.5, -1.0)
    ax, a, b = compose(f, g)  # f(g(x)) = 2 * (0.5 x - 1) + 3 = x + 1
    assert ax == 1 and a == 1 and b == 1
    ax, a, b = compose(f, inverse(f))
    assert a == 1 and b == 0


def test_layers_without_a_map_are_named():
    n = netdef.NetSpec()
    _input(n, (1, 1, 4, 4))
    n.ip = L.InnerProduct(n.data, num_output=2)
    with pytest.raises(Exception, match="InnerProduct"):
        coord_map(n.ip.fn)
    with pytest.raises(RuntimeError, match="spatial layers"):
        coord_map_from_to(n.ip, n.data)
    n.gp = L.Pooling(n.data, pool=P.Pooling.AVE, global_pooling=True)
    with pytest.raises(RuntimeError):
        coord_map_from_to(n.gp, n.data)


def test_crop_refuses_scale_mismatch_negative_and_fractional_offsets():
    n = netdef.NetSpec()
    _input(n, (1, 1, 20, 20))
    n.half = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    with pytest.raises(AssertionError, match="scale mismatch"):
        crop(n.half, n.data)
    n.shrunk = L.Convolution(n.data, num_output=1, kernel_size=3)  # valid conv: output inside
    with pytest.raises(AssertionError, match="negative offset"):
        crop(n.shrunk, n.data)
    n.even = L.Convolution(n.data, num_output=1, kernel_size=2, pad=1)
    with pytest.raises(AssertionError, match="noninteger"):
        crop(n.even, n.data)


def test_crop_aligns_a_padded_conv_with_its_input():
    """An identity 3x3 kernel with pad 4 shifts the image by 3 and grows it by 6; the crop
    coord_map computes must cut exactly the input back out."""
    n = netdef.NetSpec()
    _input(n, (1, 1, 7, 6))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=3, pad=4, bias_term=False)
    n.aligned = crop(n.conv, n.data)
    layer = n.to_proto().layer[-1]
    assert layer.type == "Crop"
    assert layer.crop_param.axis == 2 and list(layer.crop_param.offset) == [3]
    net = netdef.Net(n.to_proto(), netdef.TEST)
    kernel = net.params["conv"][0].data
    kernel[...] = 0
    kernel[0, 0, 1, 1] = 1
    image = np.arange(42, dtype=np.float32).reshape(1, 1, 7, 6)
    out = net.forward(data=image)["aligned"]
    np.testing.assert_array_equal(out, image)


def test_a_crop_layer_maps_by_its_offset():
    n = netdef.NetSpec()
    _input(n, (1, 1, 20, 20))
    n.ref = L.Input(shape=dict(dim=[1, 1, 10, 10]))
    n.cut = L.Crop(n.data, n.ref, axis=2, offset=[2, 5])
    _, a, b = coord_map_from_to(n.cut, n.data)
    np.testing.assert_array_equal(a, 1)
    np.testing.assert_array_equal(b, [2, 5])


def _fcn_vgg16(n):
    """VGG16 as FCN builds it (conv1_1 padded by 100; fc6/fc7 as convolutions)."""
    blocks = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]
    top = _input(n, (1, 3, 64, 64))
    pools = []
    for b, (convs, width) in enumerate(blocks, start=1):
        for c in range(1, convs + 1):
            pad = 100 if (b, c) == (1, 1) else 1
            conv = L.Convolution(top, num_output=width, kernel_size=3, pad=pad)
            setattr(n, f"conv{b}_{c}", conv)
            top = L.ReLU(conv, in_place=True)
        top = L.Pooling(top, pool=P.Pooling.MAX, kernel_size=2, stride=2)
        setattr(n, f"pool{b}", top)
        pools.append(top)
    n.fc6 = L.Convolution(top, num_output=16, kernel_size=7)
    n.fc7 = L.Convolution(L.ReLU(n.fc6, in_place=True), num_output=16, kernel_size=1)
    n.score_fr = L.Convolution(n.fc7, num_output=21, kernel_size=1)
    return pools


def _offset(crop_top):
    return list(crop_top.fn.params["crop_param"]["offset"])


def test_fcn_crops_have_the_published_offsets():
    """FCN-32s crops its 32x upsampled score by 19; FCN-8s crops pool4/pool3 scores by 5 and
    9 and the final 8x upsampled score by 31 (the offsets in the FCN model prototxts)."""
    n = netdef.NetSpec()
    _fcn_vgg16(n)
    deconv = dict(num_output=21, bias_term=False)
    n.upscore32 = L.Deconvolution(n.score_fr, convolution_param=dict(kernel_size=64, stride=32,
                                                                      **deconv))
    assert _offset(crop(n.upscore32, n.data)) == [19]

    n = netdef.NetSpec()
    _, _, pool3, pool4, _ = _fcn_vgg16(n)
    n.upscore2 = L.Deconvolution(n.score_fr, convolution_param=dict(kernel_size=4, stride=2,
                                                                    **deconv))
    n.score_pool4 = L.Convolution(pool4, num_output=21, kernel_size=1)
    n.score_pool4c = crop(n.score_pool4, n.upscore2)
    n.fuse_pool4 = L.Eltwise(n.upscore2, n.score_pool4c, operation=P.Eltwise.SUM)
    n.upscore_pool4 = L.Deconvolution(n.fuse_pool4, convolution_param=dict(
        kernel_size=4, stride=2, **deconv))
    n.score_pool3 = L.Convolution(pool3, num_output=21, kernel_size=1)
    n.score_pool3c = crop(n.score_pool3, n.upscore_pool4)
    n.fuse_pool3 = L.Eltwise(n.upscore_pool4, n.score_pool3c, operation=P.Eltwise.SUM)
    n.upscore8 = L.Deconvolution(n.fuse_pool3, convolution_param=dict(kernel_size=16, stride=8,
                                                                      **deconv))
    n.score = crop(n.upscore8, n.data)
    assert _offset(n.score_pool4c) == [5]
    assert _offset(n.score_pool3c) == [9]
    assert _offset(n.score) == [31]
