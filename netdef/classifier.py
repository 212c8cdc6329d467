"""Classifier: pycaffe's ``caffe.Classifier`` -- images in, class probabilities out.

Each image (H x W x K, float in [0, 1] as ``netdef.io.load_image`` gives) is resized to
``image_dims``; then either ten crops of the net's input size are taken (four corners and
the centre, and their mirrors) and their predictions averaged, or only the centre crop is
used.  The crops are turned into the net's input by ``netdef.io.Transformer``: transpose
to C x H x W, channel swap (RGB -> BGR), ``raw_scale``, subtract ``mean``, ``input_scale``.
"""

import numpy as np

from . import io as nio
from .errors import ShapeError, UsageError
from .net import TEST, Net


class Classifier(Net):
    """A TEST-phase Net with image preprocessing and ``predict``.

    ``Classifier(model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
    raw_scale=None, channel_swap=None)`` as pycaffe; ``pretrained_file`` may be None (the
    fillers' weights).  ``mean`` is per channel (C,) or per pixel (C, H, W).
    """

    def __init__(self, model_file, pretrained_file=None, image_dims=None, mean=None,
                 input_scale=None, raw_scale=None, channel_swap=None):
        super().__init__(model_file, phase=TEST, weights=pretrained_file or None)
        if not any(self.layer_need_backward):
            # Fused layers, same blobs: invisible to readers of net.blobs (see
            # netdef/inference.py); nets meant for backward (force_backward) stay plain.
            self.optimize_for_inference()
        if not self.inputs:
            raise UsageError(f"net '{self.name}' has no Input layer to classify images with")
        in_ = self.inputs[0]
        shape = self.blobs[in_].data.shape
        if len(shape) != 4:
            raise ShapeError(f"Classifier needs a 4-D image input (N, C, H, W); input "
                             f"'{in_}' has shape {shape}")
        self.transformer = nio.image_transformer(in_, shape, mean, input_scale, raw_scale,
                                                 channel_swap)
        self.crop_dims = np.array(shape[2:])
        self.image_dims = np.array(image_dims if image_dims is not None and len(image_dims)
                                   else self.crop_dims)
        if np.any(self.image_dims < self.crop_dims):
            raise ShapeError(f"image_dims {tuple(self.image_dims)} are smaller than the net's "
                             f"input {tuple(self.crop_dims)}")
        self.batch_size = shape[0]

    def predict(self, inputs, oversample=True):
        """(N, classes) predictions for N images; ``oversample`` averages ten crops each."""
        if not len(inputs):
            raise UsageError("predict() needs at least one image")
        h, w = (int(v) for v in self.image_dims)
        resized = np.zeros((len(inputs), h, w, inputs[0].shape[2]), np.float32)
        for i, image in enumerate(inputs):
            resized[i] = nio.resize_image(image, (h, w))
        if oversample:
            crops = nio.oversample(resized, self.crop_dims)
        else:
            centre = np.array([h, w]) / 2.0
            top_left = (centre - self.crop_dims / 2.0).astype(int)
            y, x = top_left
            crops = resized[:, y:y + self.crop_dims[0], x:x + self.crop_dims[1], :]
        in_ = self.inputs[0]
        net_in = np.zeros((len(crops),) + tuple(self.blobs[in_].shape[1:]), np.float32)
        for i, crop in enumerate(crops):
            net_in[i] = self.transformer.preprocess(in_, crop)
        predictions = self._forward_batches(net_in)
        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10)
                                              + predictions.shape[1:]).mean(axis=1)
        return predictions

    def _forward_batches(self, net_in):
        """The first output for every row of ``net_in``, in batches of the declared size
        (each row keeps the output's own shape, as pycaffe: (C,) or (C, H, W)...)."""
        in_, out = self.inputs[0], self.outputs[0]
        results = []
        for start in range(0, len(net_in), self.batch_size):
            chunk = net_in[start:start + self.batch_size]
            self.blobs[in_].reshape(chunk.shape)
            self.reshape()
            outputs = self.forward(**{in_: chunk})
            results.append(np.array(outputs[out]))
        return np.concatenate(results)


def load_mean(path, channels=None, crop_dims=None):
    """A mean from .npy or .binaryproto; a per-pixel mean not at ``crop_dims`` is reduced to
    per-channel values (pycaffe's usual ``mean(1).mean(1)``)."""
    if str(path).endswith(".npy"):
        mean = np.load(path)
    else:
        from .proto import caffe_pb2

        blob = caffe_pb2.BlobProto()
        with open(path, "rb") as f:
            blob.ParseFromString(f.read())
        mean = nio.blobproto_to_array(blob)
    mean = np.asarray(mean, np.float32)
    while mean.ndim > 3:
        mean = mean[0]
    if mean.ndim == 3 and crop_dims is not None and tuple(mean.shape[1:]) != tuple(crop_dims):
        mean = mean.mean(axis=(1, 2))
    if channels is not None and mean.shape[0] != channels:
        raise ShapeError(f"mean {path} has {mean.shape[0]} channels; the net takes {channels}")
    return mean


def read_labels(path):
    """Class names, one per line (``synset_words.txt``: 'n01440764 tench, Tinca tinca')."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def top_k(probabilities, k, labels=None):
    """[(index, probability, label)] for the k best classes, best first."""
    probabilities = np.asarray(probabilities).ravel()
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(int(i), float(probabilities[i]),
             labels[i] if labels is not None and i < len(labels) else str(int(i)))
            for i in order]
