"""Write a small two-class problem as HDF5 for the logistic-regression example.

Points in 4-D: class 1 is shifted along a random direction, with two features that carry
no signal (as sklearn's make_classification in Caffe's original example).  Writes
data/train.h5, data/test.h5 (datasets "data" N x 4 float32 and "label" N float32) and
data/train.txt, data/test.txt listing them -- the HDF5Data layer reads the lists.
"""

import argparse
import os

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make(n, rng, direction):
    labels = rng.integers(0, 2, n)
    data = rng.normal(0.0, 1.0, (n, 4))
    data[:, :2] += np.outer(labels * 2.0 - 1.0, direction)
    return data.astype(np.float32), labels.astype(np.float32)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=7500, help="training points")
    p.add_argument("--test", type=int, default=2500, help="test points")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(HERE, "data"), help="output folder")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    direction = rng.normal(size=2)
    direction *= 1.2 / np.linalg.norm(direction)
    os.makedirs(args.out, exist_ok=True)
    for split, n in (("train", args.train), ("test", args.test)):
        data, labels = make(n, rng, direction)
        path = os.path.abspath(os.path.join(args.out, f"{split}.h5"))
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=data)
            f.create_dataset("label", data=labels)
        with open(os.path.join(args.out, f"{split}.txt"), "w") as f:
            f.write(path + "\n")
        print(f"wrote {n} points to {path}")


if __name__ == "__main__":
    main()
