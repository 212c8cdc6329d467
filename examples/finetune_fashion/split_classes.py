"""Split an MNIST-format dataset by class: classes 0-4 ("base") and 5-9 ("new").

Reads the four idx files (gzipped or not) of SRC and writes, in OUT,
``base-{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` with classes 0-4 and
``new-...`` with classes 5-9 relabelled 0-4 -- ready for ``netdef convert_mnist_data``.
"""

import argparse
import gzip
import os
import struct

import numpy as np

SPLITS = {"base": range(0, 5), "new": range(5, 10)}


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)
    if magic == 2049:
        return np.frombuffer(data, np.uint8, offset=8)
    raise SystemExit(f"{path}: not an idx image or label file (magic {magic})")


def write_idx(path, array):
    if array.ndim == 3:
        head = struct.pack(">IIII", 2051, *array.shape)
    else:
        head = struct.pack(">II", 2049, array.shape[0])
    with gzip.open(path, "wb") as f:
        f.write(head + np.ascontiguousarray(array).tobytes())


def find(src, stem):
    for name in (f"{stem}.gz", stem):
        if os.path.exists(os.path.join(src, name)):
            return os.path.join(src, name)
    raise SystemExit(f"{src}: no {stem}[.gz]")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="folder with train-/t10k- images and labels idx files")
    p.add_argument("out", help="folder for the split files")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for part in ("train", "t10k"):
        images = read_idx(find(args.src, f"{part}-images-idx3-ubyte"))
        labels = read_idx(find(args.src, f"{part}-labels-idx1-ubyte"))
        for split, classes in SPLITS.items():
            keep = np.isin(labels, list(classes))
            write_idx(os.path.join(args.out, f"{split}-{part}-images-idx3-ubyte.gz"),
                      images[keep])
            write_idx(os.path.join(args.out, f"{split}-{part}-labels-idx1-ubyte.gz"),
                      (labels[keep] - classes.start).astype(np.uint8))
            print(f"{split} {part}: {int(keep.sum())} images")


if __name__ == "__main__":
    main()
