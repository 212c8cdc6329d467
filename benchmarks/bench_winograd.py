"""Convolution layer forward / backward: im2col + GEMM (whole-batch, blocked) vs Winograd.

For each stride-1 shape (3x3: F(2x2, 3x3); 5x5: F(4x4, 5x5)), the layer is built per route
with NETDEF_CONV_ALGO forced, and
forward and backward (weights + data) are timed round-robin; printed: median and
minimum ms.  ``--clock thread`` (default) runs on one numba and one BLAS thread and
counts this thread's CPU time, which stays meaningful on a busy machine.
Run: python benchmarks/bench_winograd.py [--clock wall] [--kernel 3|5]
"""

import argparse
import os
import statistics
import sys
import time

SHAPES = [  # name, (N, C, H, W), num_output, pad, kernel
    ("CIFAR-size 32->32 @16x16 (3x3)", (100, 32, 16, 16), 32, 1, 3),
    ("CIFAR-size 64->64 @8x8 (3x3)", (100, 64, 8, 8), 64, 1, 3),
    ("VGG-like 64->64 @56x56 (3x3)", (8, 64, 56, 56), 64, 1, 3),
    ("ResNet-like 128->128 @28x28 (3x3)", (8, 128, 28, 28), 128, 1, 3),
    ("LeNet-size 20->50 @12x12 (3x3)", (64, 20, 12, 12), 50, 0, 3),
    ("CIFAR10-quick conv2 32->32 @16x16 (5x5)", (100, 32, 16, 16), 32, 2, 5),
    ("CIFAR10-quick conv3 32->64 @8x8 (5x5)", (100, 32, 8, 8), 64, 2, 5),
    ("LeNet conv2 20->50 @12x12 (5x5)", (64, 20, 12, 12), 50, 0, 5),
    ("GoogLeNet 5x5 32->96 @28x28 batch 10 (5x5)", (10, 32, 28, 28), 96, 2, 5),
]


def build(algo, shape, num_output, pad, kernel):
    import numpy as np

    from netdef.blob import Blob
    from netdef.layers import conv as conv_module
    from tests.layers.layer_case import make_layer

    os.environ[conv_module.ALGO_ENV] = algo
    layer = make_layer(f'name: "c" type: "Convolution" convolution_param {{ num_output: '
                       f'{num_output} kernel_size: {kernel} pad: {pad} }}')
    bottom = [Blob(shape, name="x")]
    bottom[0].data[...] = np.random.default_rng(0).standard_normal(shape)
    top = [Blob((), name="y")]
    layer.layer_setup(bottom, top)
    layer.forward(bottom, top)
    top[0].diff[...] = 1.0
    layer.backward(top, [True], bottom)
    assert layer.algo == algo
    return layer, bottom, top


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--clock", choices=("wall", "thread"), default="thread")
    ap.add_argument("--kernel", type=int, choices=(3, 5), help="only this kernel size")
    args = ap.parse_args()
    if args.clock == "thread" and os.environ.get("NUMBA_NUM_THREADS") != "1":
        env = dict(os.environ, NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    import netdef  # noqa: F401

    print(f"clock: {args.clock}; ms per call, median / min of {args.repeat}")
    for name, shape, num_output, pad, kernel in SHAPES:
        if args.kernel and kernel != args.kernel:
            continue
        layers = {a: build(a, shape, num_output, pad, kernel)
                  for a in ("gemm", "blocked", "winograd")}
        times = {(a, p): [] for a in layers for p in ("fwd", "bwd")}
        for _ in range(args.repeat):
            for a, (layer, bottom, top) in layers.items():
                t = clock()
                layer.forward(bottom, top)
                times[a, "fwd"].append(1000 * (clock() - t))
                t = clock()
                layer.backward(top, [True], bottom)
                times[a, "bwd"].append(1000 * (clock() - t))
        print(name)
        for a in layers:
            f, b = times[a, "fwd"], times[a, "bwd"]
            print(f"  {a:9s} forward {statistics.median(f):8.2f} / {min(f):8.2f}   "
                  f"backward {statistics.median(b):8.2f} / {min(b):8.2f}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
