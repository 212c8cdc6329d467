"""Synthetic segmentation data: coloured discs, squares and triangles on a noisy ground.

Each 32x32 RGB image holds one to three shapes of random size, colour and place; its
label map gives every pixel's class: 0 background, 1 disc, 2 square, 3 triangle (a later
shape covers an earlier one).  Writes data/train.h5 and data/test.h5 (``data`` N x 3 x 32
x 32 float32, pixel values centred on 0; ``label`` N x 1 x 32 x 32 float32) and the
data/train.txt, data/test.txt lists the HDF5Data layers read.
"""

import argparse
import os

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 32
CLASSES = ("background", "disc", "square", "triangle")


def shape_mask(kind, cy, cx, r, yy, xx):
    if kind == 1:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    if kind == 2:
        return (np.abs(yy - cy) <= r * 0.8) & (np.abs(xx - cx) <= r * 0.8)
    # an upright triangle: apex at the top, base at the bottom
    top, bottom = cy - r, cy + r
    half = (yy - top) / (2.0 * r) * r
    return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half)


def make(n, rng):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    data = np.empty((n, 3, SIZE, SIZE), np.float32)
    labels = np.zeros((n, 1, SIZE, SIZE), np.float32)
    for i in range(n):
        image = rng.uniform(0.0, 0.35, (3, 1, 1)) + rng.normal(0.0, 0.05, (3, SIZE, SIZE))
        for _ in range(rng.integers(1, 4)):
            kind = int(rng.integers(1, 4))
            r = rng.uniform(4.0, 9.0)
            cy, cx = rng.uniform(r, SIZE - r, 2)
            mask = shape_mask(kind, cy, cx, r, yy, xx)
            colour = rng.uniform(0.5, 1.0, 3)
            image[:, mask] = colour[:, None]
            labels[i, 0][mask] = kind
        data[i] = image - 0.5
    return data, labels


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=2000, help="training images")
    p.add_argument("--test", type=int, default=200, help="test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(HERE, "data"), help="output folder")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    for split, n in (("train", args.train), ("test", args.test)):
        data, labels = make(n, rng)
        path = os.path.abspath(os.path.join(args.out, f"{split}.h5"))
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=data)
            f.create_dataset("label", data=labels)
        with open(os.path.join(args.out, f"{split}.txt"), "w") as f:
            f.write(path + "\n")
        share = np.bincount(labels.astype(np.int64).ravel(), minlength=4) / labels.size
        print(f"wrote {n} images to {path}; pixel share " +
              ", ".join(f"{c} {s:.2f}" for c, s in zip(CLASSES, share)))


if __name__ == "__main__":
    main()
