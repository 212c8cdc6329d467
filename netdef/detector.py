"""Detector: pycaffe's ``caffe.Detector`` -- classify windows (R-CNN style) of images.

Each window ``(ymin, xmin, ymax, xmax)`` of an image is cut out (optionally with
surrounding context, ``context_pad`` pixels at the net's input scale, the area outside
the image filled with the mean), warped to the net's input size by the Transformer, and
run through the net; one prediction per window comes back with its window and file name.
``detect_selective_search`` gets its windows from the ``selective_search_ijcv_with_python``
package, which must be installed separately (as with pycaffe).
"""

import os

import numpy as np

from . import io as nio
from .errors import UsageError
from .net import TEST, Net


class Detector(Net):
    """``Detector(model_file, pretrained_file, mean=None, input_scale=None, raw_scale=None,
    channel_swap=None, context_pad=None)`` as pycaffe (a TEST-phase Net)."""

    def __init__(self, model_file, pretrained_file=None, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None, context_pad=None):
        super().__init__(model_file, phase=TEST, weights=pretrained_file or None)
        if not self.inputs:
            raise UsageError(f"net '{self.name}' has no Input layer to detect in images with")
        in_ = self.inputs[0]
        self.transformer = nio.image_transformer(in_, self.blobs[in_].data.shape, mean,
                                                 input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows):
        """``[(image file, [window, ...]), ...]`` -> ``[{'window', 'prediction',
        'filename'}, ...]``, one entry per window in the order given."""
        images_windows = [(name, list(windows)) for name, windows in images_windows]
        crops = []
        for filename, windows in images_windows:
            image = nio.load_image(filename).astype(np.float32)
            crops.extend(self.crop(image, window) for window in windows)
        if not crops:
            return []
        in_ = self.inputs[0]
        net_in = np.zeros((len(crops), crops[0].shape[2]) + tuple(self.blobs[in_].shape[2:]),
                          np.float32)
        for i, crop in enumerate(crops):
            net_in[i] = self.transformer.preprocess(in_, crop)
        predictions = self.forward_all(**{in_: net_in})[self.outputs[0]]
        detections = []
        i = 0
        for filename, windows in images_windows:
            for window in windows:
                detections.append({"window": window, "prediction": predictions[i],
                                   "filename": filename})
                i += 1
        return detections

    def detect_selective_search(self, image_fnames):
        """Windows from selective search (its MATLAB-backed Python package), then
        ``detect_windows``."""
        import selective_search_ijcv_with_python as selective_search

        image_fnames = [os.path.abspath(f) for f in image_fnames]
        windows_list = selective_search.get_windows(image_fnames, cmd="selective_search_rcnn")
        return self.detect_windows(zip(image_fnames, windows_list))

    def crop(self, im, window):
        """The window of ``im`` (H x W x K); with ``context_pad``, the window grown so that
        the pad lands at the net's input scale, mean-filled where it leaves the image."""
        window = np.asarray(window)
        y0, x0, y1, x1 = (int(v) for v in window[:4])
        if not self.context_pad:
            return im[y0:y1, x0:x1]
        crop_size = self.blobs[self.inputs[0]].shape[3]  # square inputs assumed, as pycaffe
        scale = crop_size / (1.0 * crop_size - self.context_pad * 2)
        half_h = (window[2] - window[0] + 1) / 2.0
        half_w = (window[3] - window[1] + 1) / 2.0
        centre = (window[0] + half_h, window[1] + half_w)
        box = np.round(np.tile(centre, 2) + scale * np.array((-half_h, -half_w, half_h, half_w)))
        scale_h = crop_size / (box[2] - box[0] + 1)
        scale_w = crop_size / (box[3] - box[1] + 1)
        pad_y = int(round(max(0, -box[0]) * scale_h))  # the part of the box above the image
        pad_x = int(round(max(0, -box[1]) * scale_w))
        im_h, im_w = im.shape[:2]
        box = np.clip(box, 0.0, [im_h, im_w, im_h, im_w])
        clip_h, clip_w = box[2] - box[0] + 1, box[3] - box[1] + 1
        if clip_h <= 0 or clip_w <= 0:
            raise ValueError(f"window {tuple(window)} lies outside the {im_h}x{im_w} image")
        crop_h = min(int(round(clip_h * scale_h)), crop_size - pad_y)
        crop_w = min(int(round(clip_w * scale_w)), crop_size - pad_x)
        by0, bx0, by1, bx1 = (int(v) for v in box)
        context = nio.resize_image(im[by0:by1, bx0:bx1], (crop_h, crop_w))
        out = np.ones(self.crop_dims, np.float32) * self.crop_mean
        out[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = context
        return out

    def configure_crop(self, context_pad):
        """Crop size (H, W, C) from the net's input, and the fill for context padding: the
        mean brought back to image space (un-transposed, un-swapped, un-scaled)."""
        in_ = self.inputs[0]
        order = self.transformer.transpose[in_]
        back = list(np.argsort(order))
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[back]
        self.context_pad = context_pad
        if not context_pad:
            return
        mean = self.transformer.mean.get(in_)
        if mean is None:
            self.crop_mean = np.zeros(self.crop_dims, np.float32)
            return
        crop_mean = np.array(mean, np.float32).transpose(back)
        swap = self.transformer.channel_swap.get(in_)
        if swap is not None:
            crop_mean = crop_mean[:, :, list(np.argsort(swap))]
        raw_scale = self.transformer.raw_scale.get(in_)
        if raw_scale is not None:
            crop_mean /= raw_scale
        self.crop_mean = crop_mean
