"""Convolution glue kernels and whole conv layers at LeNet's and CIFAR10-quick's shapes.

For each shape: im2col, col2im and the two layout passes, in ms and GB/s next to a
plain ``np.copyto`` of the same bytes (the speed of memory), then the Convolution
layer's forward and backward with their GEMM share; last, the pooling kernels of
the same nets against a copy of their bottom.  Times are the best of ``--repeat``
runs.  ``--clock wall`` (default) times the parallel kernels as they run;
``--clock thread`` re-runs itself on one thread (numba and BLAS) and counts that
thread's CPU time, which stays meaningful on a machine busy with other work.
``--routes`` instead times each convolution route (NETDEF_CONV_ALGO: whole-batch
``gemm``, cache-``blocked``, ``winograd`` where it applies) per pass -- forward, weight
(+ bias) gradient, data gradient -- at the real LeNet and CIFAR10-quick layer shapes, in
alternating rounds; printed: median / minimum ms.
Run: python benchmarks/bench_conv_kernels.py [--clock thread] [--routes]
"""

import argparse
import os
import sys
import time

import numpy as np
from google.protobuf import text_format

import netdef  # noqa: F401  (first: sets the BLAS thread policy before numpy loads)
from netdef.blob import Blob
from netdef.kernels import conv as K
from netdef.kernels import pooling as KP
from netdef.layer import create_layer
from netdef.proto import caffe_pb2

# name, batch, (C, H, W), num_output, kernel, pad
SHAPES = [
    ("LeNet conv1", 64, (1, 28, 28), 20, 5, 0),
    ("LeNet conv2", 64, (20, 12, 12), 50, 5, 0),
    ("CIFAR10-quick conv1", 100, (3, 32, 32), 32, 5, 2),
]


CLOCK = time.perf_counter


def best_ms(fn, repeat):
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t = CLOCK()
        fn()
        times.append(CLOCK() - t)
    return 1000.0 * min(times), 1000.0 * float(np.median(times))


def copy_ms(nbytes, repeat):
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    return best_ms(lambda: np.copyto(dst, src), repeat)[0]


def row(label, ms, nbytes, ref_ms, extra=""):
    gbs = nbytes / ms / 1e6
    ref = nbytes / ref_ms / 1e6
    print(f"  {label:<26} {ms:8.3f} ms {gbs:7.2f} GB/s   copy {ref_ms:7.3f} ms {ref:7.2f} GB/s"
          f"   x{ms / ref_ms:5.2f}{extra}")


def conv_layer(num_output, kernel, pad, seed=0):
    lp = text_format.Parse(
        f'name: "conv" type: "Convolution" convolution_param {{ num_output: {num_output} '
        f'kernel_size: {kernel} pad: {pad} weight_filler {{ type: "xavier" }} }}',
        caffe_pb2.LayerParameter())
    return create_layer(lp, rng=np.random.default_rng(seed))


def bench_shape(name, batch, chw, num_output, kernel, pad, repeat):
    C, H, W = chw
    oh, ow = H + 2 * pad - kernel + 1, W + 2 * pad - kernel + 1
    rows, P = C * kernel * kernel, oh * ow
    print(f"{name}: batch {batch}, {C}x{H}x{W} -> {num_output} {kernel}x{kernel} pad {pad} "
          f"(columns {rows} x {batch * P})")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, C, H, W)).astype(np.float32)
    col = np.empty(rows * batch * P, np.float32)
    geo = (kernel, kernel, 1, 1, pad, pad, 1, 1, oh, ow)
    col_bytes = col.nbytes
    ref = copy_ms(col_bytes, repeat)
    ms = best_ms(lambda: K.im2col_2d(x, col, batch * P, P, *geo), repeat)[0]
    row("im2col", ms, col_bytes, ref)
    dx = np.empty_like(x)
    no_bias = np.zeros(0, np.float32)
    ms = best_ms(lambda: K.col2im_2d(col, dx, batch * P, P, *geo, no_bias), repeat)[0]
    row("col2im", ms, col_bytes, ref)

    out_bytes = batch * num_output * P * 4
    ref_out = copy_ms(out_bytes, repeat)
    gemm_out = rng.standard_normal((num_output, batch * P)).astype(np.float32)
    top = np.empty((batch, num_output, P), np.float32)
    bias = rng.standard_normal(num_output).astype(np.float32)
    ms = best_ms(lambda: K.cn_to_nc(gemm_out, top, bias, False, 0.0), repeat)[0]
    row("layout + bias (fwd)", ms, out_bytes, ref_out)
    bias_diff = np.zeros(num_output, np.float32)
    ms = best_ms(lambda: K.nc_to_cn(top, gemm_out, bias_diff), repeat)[0]
    row("layout + bias sum (bwd)", ms, out_bytes, ref_out)

    layer = conv_layer(num_output, kernel, pad)
    bottom, tops = [Blob((batch, C, H, W), name="x")], [Blob((), name="y")]
    bottom[0].data[...] = x
    layer.layer_setup(bottom, tops)
    tops[0].diff[...] = rng.standard_normal(tops[0].shape)
    w2 = layer.blobs[0].data.reshape(num_output, rows)
    col2 = col.reshape(rows, batch * P)
    gemm_ms = best_ms(lambda: np.dot(w2, col2, out=gemm_out), repeat)[0]
    flops = 2.0 * num_output * rows * batch * P
    fwd = best_ms(lambda: layer.forward(bottom, tops), repeat)
    print(f"  {'conv forward':<26} {fwd[0]:8.3f} ms (median {fwd[1]:.3f}); its GEMM "
          f"{gemm_ms:.3f} ms = {flops / gemm_ms / 1e6:.1f} GFLOP/s")
    down = [C > 1]      # a first layer (data bottom) needs no data gradient, as in LeNet

    def backward():
        for p in layer.blobs:
            p.diff[...] = 0
        layer.backward(tops, down, bottom)

    bwd = best_ms(backward, repeat)
    what = "weight + data gradients" if down[0] else "weight gradient only"
    print(f"  {'conv backward':<26} {bwd[0]:8.3f} ms (median {bwd[1]:.3f}); {what}, "
          f"{(1 + down[0]) * flops / 1e6 / bwd[0]:.1f} GFLOP/s overall")


# name, batch, (C, H, W), num_output, kernel, pad: every convolution of the two nets
ROUTE_SHAPES = [
    ("LeNet conv1", 64, (1, 28, 28), 20, 5, 0),
    ("LeNet conv2", 64, (20, 12, 12), 50, 5, 0),
    ("CIFAR10-quick conv1", 100, (3, 32, 32), 32, 5, 2),
    ("CIFAR10-quick conv2", 100, (32, 16, 16), 32, 5, 2),
    ("CIFAR10-quick conv3", 100, (32, 8, 8), 64, 5, 2),
]


def bench_routes(name, batch, chw, num_output, kernel, pad, repeat):
    """Forward, weight gradient and data gradient of each route, alternating rounds."""
    from netdef.layers import conv as conv_module

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + chw).astype(np.float32)
    layers = {}
    for algo in conv_module.ALGORITHMS:
        os.environ[conv_module.ALGO_ENV] = algo
        layer = conv_layer(num_output, kernel, pad)
        bottom, tops = [Blob(x.shape, name="x")], [Blob((), name="y")]
        bottom[0].data[...] = x
        layer.layer_setup(bottom, tops)
        layer.forward(bottom, tops)
        if layer.algo != algo:
            continue                    # the route does not serve this shape
        tops[0].diff[...] = rng.standard_normal(tops[0].shape)
        layer.backward(tops, [True], bottom)
        layers[algo] = (layer, bottom, tops)
    times = {(a, p): [] for a in layers for p in ("fwd", "w", "all")}
    for _ in range(repeat):
        for algo, (layer, bottom, tops) in layers.items():
            for part, down in (("fwd", None), ("w", False), ("all", True)):
                if down is True:
                    layer.forward(bottom, tops)     # as in training: forward, backward
                t = CLOCK()
                if down is None:
                    layer.forward(bottom, tops)
                else:
                    layer.backward(tops, [down], bottom)
                times[algo, part].append(1000.0 * (CLOCK() - t))
    print(f"{name}: batch {batch}, {chw[0]}x{chw[1]}x{chw[2]} -> {num_output} "
          f"{kernel}x{kernel} pad {pad}   (ms, median / min)")
    for algo in layers:
        fwd, w, both = (times[algo, p] for p in ("fwd", "w", "all"))
        data = [b - a for a, b in zip(w, both, strict=True)]
        print(f"  {algo:9s} forward {np.median(fwd):7.2f} / {min(fwd):7.2f}   weight grad "
              f"{np.median(w):7.2f} / {min(w):7.2f}   data grad {np.median(data):7.2f}   "
              f"fwd+bwd {np.median(fwd) + np.median(both):7.2f}")


# name, (N, C, H, W), method, kernel, stride
POOLS = [
    ("LeNet pool1", (64, 20, 24, 24), "MAX", 2, 2),
    ("LeNet pool2", (64, 50, 8, 8), "MAX", 2, 2),
    ("CIFAR10-quick pool1", (100, 32, 32, 32), "MAX", 3, 2),
    ("CIFAR10-quick pool2", (100, 32, 16, 16), "AVE", 3, 2),
]


def bench_pool(name, shape, method, kernel, stride, repeat):
    N, C, H, W = shape
    out = -(-(H - kernel) // stride) + 1
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    top = np.empty((N, C, out, out), np.float32)
    mask = np.empty_like(top)
    dx = np.empty_like(x)
    ref = copy_ms(x.nbytes, repeat)
    geo = (kernel, kernel, stride, stride, 0, 0)
    print(f"{name}: {method} {kernel}/{stride} on {N}x{C}x{H}x{W}")
    if method == "MAX":
        ms = best_ms(lambda: KP.max_pool_forward(x, top, mask, *geo), repeat)[0]
        row("forward", ms, x.nbytes, ref)
        ms = best_ms(lambda: KP.mask_pool_backward(top, mask, dx, True), repeat)[0]
    else:
        ms = best_ms(lambda: KP.ave_pool_forward(x, top, *geo), repeat)[0]
        row("forward", ms, x.nbytes, ref)
        ms = best_ms(lambda: KP.ave_pool_backward(top, dx, *geo, True), repeat)[0]
    row("backward", ms, x.nbytes, ref)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall")
    parser.add_argument("--routes", action="store_true",
                        help="time the convolution routes per pass instead")
    args = parser.parse_args()
    if args.clock == "thread":
        if os.environ.get("NUMBA_NUM_THREADS") != "1":
            env = dict(os.environ, NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
            os.execve(sys.executable, [sys.executable] + sys.argv, env)
        global CLOCK
        CLOCK = time.thread_time
    import numba

    print(f"numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads, "
          f"{numba.threading_layer() if _parallel_warm() else '?'} layer), numpy "
          f"{np.__version__}, clock: {args.clock}")
    if args.routes:
        for shape in ROUTE_SHAPES:
            bench_routes(*shape, repeat=min(args.repeat, 15))
        return
    for shape in SHAPES:
        bench_shape(*shape, repeat=args.repeat)
    for pool in POOLS:
        bench_pool(*pool, repeat=args.repeat)


def _parallel_warm():
    """Run one parallel kernel so numba has chosen its threading layer."""
    K.add_channel_bias(np.zeros((1, 1, 1), np.float32), np.zeros(1, np.float32), False, 0.0)
    return True


if __name__ == "__main__":
    main()
