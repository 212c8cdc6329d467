"""Net surgery: turn CaffeNet's fully connected layers into convolutions.

Loads models/caffenet (deploy prototxt + weights), builds the fully convolutional
bvlc_caffenet_full_conv.prototxt, copies every parameter over -- the conv layers by name,
fc6/fc7/fc8 into fc6-conv/fc7-conv/fc8-conv, whose weights hold the same numbers in a
4-D shape -- and saves the result.  Then it runs the new net on one image and prints the
8x8 map of the most likely class at each position; ``--check`` also compares both nets on
one 227x227 window, where the convolutional net's map is 1x1.
"""

import argparse
import os

import numpy as np

import netdef

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PAIRS = (("fc6", "fc6-conv"), ("fc7", "fc7-conv"), ("fc8", "fc8-conv"))


def random_weights(net, seed):
    """Small random weights that keep activations O(1) -- to try the surgery without
    downloading the trained model."""
    rng = np.random.default_rng(seed)
    for blobs in net.params.values():
        w = blobs[0].data
        fan_in = w[0].size
        w[...] = rng.standard_normal(w.shape, dtype=np.float32) * np.float32(1.5 / fan_in ** 0.5)
        for b in blobs[1:]:
            b.data[...] = 0.01


def transplant(net, full_conv):
    """Copy every parameter of ``net`` into ``full_conv`` (fc -> conv by PAIRS)."""
    renamed = dict(PAIRS)
    for name, blobs in net.params.items():
        target = full_conv.params[renamed.get(name, name)]
        for src, dst in zip(blobs, target):
            if src.data.size != dst.data.size:
                raise SystemExit(f"{name}: {src.data.shape} does not fit {dst.data.shape}")
            dst.data.flat = src.data.flat  # same numbers, the conv layer's 4-D shape
        print(f"{name:>8} {str(blobs[0].data.shape):>20} -> "
              f"{renamed.get(name, name):<8} {target[0].data.shape}")


def preprocess(net, image):
    """An H x W x 3 [0, 1] RGB image -> the net's input: resized, BGR, 0-255, mean off."""
    shape = net.blobs["data"].data.shape
    t = netdef.io.Transformer({"data": shape})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255.0)
    t.set_mean("data", np.array([104.0, 117.0, 123.0]))
    return t.preprocess("data", image)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deploy", default=os.path.join(ROOT, "models/caffenet/deploy.prototxt"))
    p.add_argument("--weights", default=os.path.join(
        ROOT, "models/caffenet/bvlc_reference_caffenet.caffemodel"))
    p.add_argument("--random-weights", type=int, default=None, metavar="SEED",
                   help="use small random weights instead of --weights")
    p.add_argument("--full-conv", default=os.path.join(HERE, "bvlc_caffenet_full_conv.prototxt"))
    p.add_argument("--output", default=os.path.join(HERE, "bvlc_caffenet_full_conv.caffemodel"))
    p.add_argument("--image", default=None, help="image to classify (default: random pixels)")
    p.add_argument("--labels", default=None, help="class names (synset_words.txt)")
    p.add_argument("--check", action="store_true",
                   help="compare two corners of the map with the original net")
    args = p.parse_args()

    if args.random_weights is None and not os.path.exists(args.weights):
        raise SystemExit(f"{args.weights} not found: download it (netdef download_model_binary "
                         "models/caffenet) or pass --random-weights SEED")
    net = netdef.Net(args.deploy, netdef.TEST)
    if args.random_weights is None:
        net.copy_from(args.weights)
    else:
        random_weights(net, args.random_weights)
    full_conv = netdef.Net(args.full_conv, netdef.TEST)
    transplant(net, full_conv)
    full_conv.save(args.output)
    print(f"saved {args.output}")

    if args.image:
        image = netdef.io.load_image(args.image)
    else:
        image = np.random.default_rng(0).uniform(0, 1, (451, 451, 3)).astype(np.float32)
    x = preprocess(full_conv, image)
    out = full_conv.forward(data=x[np.newaxis])
    prob = out["prob"][0]                                 # (1000, 8, 8)
    classes = prob.argmax(axis=0)
    labels = None
    if args.labels:
        with open(args.labels) as f:
            labels = [line.strip() for line in f]
    print(f"class map {classes.shape[0]}x{classes.shape[1]} (most likely class per window):")
    for row in classes:
        print(" ".join(f"{c:4d}" for c in row))
    top = np.bincount(classes.ravel(), minlength=prob.shape[0]).argmax()
    print(f"most frequent: {top}" + (f" {labels[top]}" if labels else ""))

    if args.check:
        # On a 227x227 input the convolutional net's map is 1x1: it must equal the original
        # net's output exactly (up to float rounding).  On larger inputs the windows'
        # edges differ a little from a separate 227x227 run, since conv2-conv5 pad their
        # inputs with zeros where the big image has pixels.
        window = x[np.newaxis, :, 112:339, 112:339]
        net.blobs["data"].reshape(window.shape)
        net.reshape()
        ref = net.forward(blobs=["fc8"], data=window)["fc8"][0].copy()
        full_conv.blobs["data"].reshape(window.shape)
        full_conv.reshape()
        got = full_conv.forward(blobs=["fc8-conv"], data=window)["fc8-conv"][0, :, 0, 0]
        err = float(np.abs(ref - got).max() / max(np.abs(ref).max(), 1e-12))
        print(f"227x227 window: fc8 vs fc8-conv relative difference {err:.2e}")
        if err > 1e-4:
            raise SystemExit("the convolutional net does not reproduce the original")
        print("the fully convolutional net reproduces the original classifier")

if __name__ == "__main__":
    main()
