"""Segment the test images with a trained shapes FCN; print per-class IoU and one example.

    python examples/fcn_shapes/segment.py examples/fcn_shapes/fcn_iter_1500.caffemodel

Runs fcn_train_test.prototxt in the TEST phase (its HDF5Data layer reads the test set),
takes the most likely class per pixel from ``score``, and compares with ``label``.
"""

import argparse
import os

import numpy as np

import netdef

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = ("background", "disc", "square", "triangle")
GLYPHS = ".o#^"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", help="trained .caffemodel")
    p.add_argument("--net", default=os.path.join(HERE, "fcn_train_test.prototxt"))
    p.add_argument("--batches", type=int, default=10, help="test batches to score")
    args = p.parse_args()
    net = netdef.Net(args.net, netdef.TEST, weights=args.weights)
    inter = np.zeros(len(CLASSES))
    union = np.zeros(len(CLASSES))
    correct = total = 0
    for _ in range(args.batches):
        net.forward()
        pred = net.blobs["score"].data.argmax(axis=1)
        label = net.blobs["label"].data[:, 0].astype(np.int64)
        correct += int((pred == label).sum())
        total += label.size
        for c in range(len(CLASSES)):
            inter[c] += np.sum((pred == c) & (label == c))
            union[c] += np.sum((pred == c) | (label == c))
    iou = inter / np.maximum(union, 1)
    print(f"pixel accuracy {correct / total:.3f}, mean IoU {iou.mean():.3f}")
    for name, v in zip(CLASSES, iou):
        print(f"  {name:<10} IoU {v:.3f}")
    print("\nlast image: label | prediction")
    for row_l, row_p in zip(label[0], pred[0]):
        print("".join(GLYPHS[v] for v in row_l) + "   " + "".join(GLYPHS[v] for v in row_p))


if __name__ == "__main__":
    main()
