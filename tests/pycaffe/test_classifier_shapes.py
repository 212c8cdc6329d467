"""Classifier.predict keeps the shape of the net's output per image, as pycaffe does (a
fully convolutional net gives (N, C, H, W) score maps, not flattened rows)."""

import numpy as np

import netdef

NET = """
name: "maps" layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "score" type: "Python" bottom: "data" top: "score"
  python_param { module: "tests.pycaffe.pylayers" layer: "Times" param_str: "2" } }
"""


def test_score_maps_keep_their_shape(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    clf = netdef.Classifier(str(tmp_path / "net.prototxt"), None, image_dims=(6, 6))
    images = [np.random.default_rng(i).random((6, 6, 3)).astype(np.float32) for i in range(3)]
    centre = clf.predict(images, oversample=False)
    assert centre.shape == (3, 3, 4, 4)
    np.testing.assert_allclose(centre[1], 2 * images[1][1:5, 1:5].transpose(2, 0, 1),
                               rtol=1e-6)
    averaged = clf.predict(images)  # ten crops each, averaged
    assert averaged.shape == (3, 3, 4, 4)
    crops = netdef.io.oversample(np.asarray(images[:1]), (4, 4))
    want = np.mean([2 * c.transpose(2, 0, 1) for c in crops], axis=0)
    np.testing.assert_allclose(averaged[0], want, rtol=1e-5)
