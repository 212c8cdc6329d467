"""The glue kernels of training (everything but the GEMMs) against the speed of memory.

For each kernel at a CaffeNet b16 / CIFAR10-quick b100 / LeNet b64 shape: the bytes it
must move (every array it reads plus every array it writes, once), its time, that as
GB/s, and the time of ``np.copyto`` moving the same bytes (half read, half written):
``x copy`` is how many copies of the same traffic the kernel costs.  Times are the
minimum of ``--repeat`` runs (other processes only ever add time); ``--clock thread``
(the default) re-runs itself on one thread (numba and BLAS) and counts that thread's
CPU time, which stays meaningful on a machine busy with other work; ``--clock wall``
times the kernels as they run, on every thread.  ``--only WORD`` keeps the rows whose
name contains WORD.  Run: python benchmarks/bench_glue.py [--clock wall] [--markdown]
"""

import argparse
import os
import sys
import time

import numpy as np

import netdef  # noqa: F401, I001  (first: sets the thread policy before numpy loads BLAS)
from netdef.kernels import conv as KC
from netdef.kernels import loss as KL
from netdef.kernels import neuron as KN
from netdef.kernels import norm as KR
from netdef.kernels import pooling as KP
from netdef.kernels import softmax as KS
from netdef.kernels import update as KU
from netdef.kernels import winograd_general as WGG

CLOCK = time.perf_counter
F4 = 4  # bytes per float32
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, np.float32(1e-4), np.float32(0.75), np.float32(1.0)
LRN_RATIO = np.float32(2.0 * LRN_ALPHA * LRN_BETA / LRN_SIZE)


def best_ms(fn, repeat):
    fn()
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = CLOCK()
        fn()
        best = min(best, CLOCK() - t)
    return 1000.0 * best


_COPY_CACHE = {}


def copy_ms(nbytes, repeat):
    """np.copyto of nbytes/2 (read) into nbytes/2 (written): the same traffic."""
    n = max(1, nbytes // (2 * F4))
    if n not in _COPY_CACHE:
        src = np.ones(n, np.float32)
        # dst half a page away from src modulo 4 KiB: two page-aligned buffers make the
        # loads wait on the stores to the same page offset ("4K aliasing"), which made
        # a 0.4 MB copy 8x slower than it can be
        buf = np.zeros(n + 1024, np.float32)     # touched: no page faults in the timing
        delta = (src.ctypes.data - buf.ctypes.data) % 4096
        k = ((delta - 2048) % 4096) // 4
        dst = buf[k:k + n]
        _COPY_CACHE[n] = best_ms(lambda: np.copyto(dst, src), max(repeat, 50))
    return _COPY_CACHE[n]


def rand(shape, rng, low=-1.0):
    return (rng.random(shape, dtype=np.float32) * (1.0 - low) + low).astype(np.float32)


def cases():
    """(name, shape note, bytes moved, callable) for every kernel and shape."""
    rng = np.random.default_rng(0)
    out = []

    def add(name, note, nbytes, fn):
        out.append((name, note, nbytes, fn))

    # -- im2col / col2im / layout passes (kernels/conv.py, called as the conv layer does)
    for net, n, (c, h, w), k, s, pad, kout in (
            ("CaffeNet conv1", 16, (3, 227, 227), 11, 4, 0, 96),
            ("CaffeNet conv2 (one group)", 16, (48, 27, 27), 5, 1, 2, 128),
            ("CIFAR conv2", 100, (32, 16, 16), 5, 1, 2, 32)):
        oh = (h + 2 * pad - k) // s + 1
        ow = (w + 2 * pad - k) // s + 1
        p = oh * ow
        x = rand((n, c, h, w), rng)
        col = np.empty(c * k * k * n * p, np.float32)
        geo = (k, k, s, s, pad, pad, 1, 1, oh, ow)
        note = f"{n}x{c}x{h}x{w} k{k}/{s} -> {c * k * k}x{n * p}"
        add(f"im2col {net}", note, x.nbytes + col.nbytes,
            lambda x=x, col=col, geo=geo, n=n, p=p: KC.im2col_2d(x, col, n * p, p, *geo))
        dx = np.empty_like(x)
        no_bias = np.zeros(0, np.float32)
        add(f"col2im {net}", note, x.nbytes + col.nbytes,
            lambda x=dx, col=col, geo=geo, n=n, p=p, b=no_bias: KC.col2im_2d(
                col, x, n * p, p, *geo, b))
        gemm = rand((kout, n * p), rng)
        top = np.empty((n, kout, p), np.float32)
        bias = rand(kout, rng)
        note = f"{kout}x{n * p} -> {n}x{kout}x{p}"
        add(f"cn_to_nc + bias {net}", note, 2 * top.nbytes,
            lambda g=gemm, t=top, b=bias: KC.cn_to_nc(g, t, b))
        add(f"cn_to_nc + bias + ReLU {net}", note, 2 * top.nbytes,
            lambda g=gemm, t=top, b=bias: KC.cn_to_nc(g, t, b, True, 0.0))
        bias_diff = np.zeros(kout, np.float32)
        add(f"nc_to_cn + bias sum {net}", note, 2 * top.nbytes,
            lambda g=gemm, t=top, b=bias_diff: KC.nc_to_cn(t, g, b))

    # -- Winograd F(4x4, 5x5) transforms (kernels/winograd_general.py): bottom -> V,
    # M -> top, top gradient -> dM, at the CIFAR10-quick layers that take that route
    for net, n, (c, h, w), kout in (("CIFAR conv2", 100, (32, 16, 16), 32),
                                    ("CIFAR conv3", 100, (32, 8, 8), 64)):
        work = WGG.Workspace(4, 5, n, c, kout, h, w)
        x = rand((n, c, h, w), rng)
        y = np.empty((n, kout, h, w), np.float32)
        work.m_[...] = rand(work.m_.shape, rng)
        no_bias = np.zeros(0, np.float32)
        note = f"{n}x{c}x{h}x{w} -> {kout}, V {work.v.shape}"
        add(f"Winograd input transform {net}", note, x.nbytes + work.v.nbytes,
            lambda x=x, work=work: WGG.transform_bottom(x, 2, 2, work))
        add(f"Winograd output transform {net}", note, work.m_.nbytes + y.nbytes,
            lambda y=y, work=work, b=no_bias: WGG.transform_output(
                work.m_rows, y, work.plans["at"], work.at_pairs, 8, b, work.tiles_h, work.tiles_w,
                work.chunk, False, 0.0))
        sums = np.zeros((kout, 0))
        add(f"Winograd top-gradient transform {net}", note, y.nbytes + work.m_.nbytes,
            lambda y=y, work=work, s=sums: WGG.transform_top_grad(
                y, work.m_rows, work.plans["at_t"], 4, work.tiles_h, work.tiles_w, work.chunk,
                s))

    # -- ReLU, Dropout (in place, as the nets run them; ReLU backward reads the top)
    for net, shape in (("CaffeNet relu1", (16, 96, 55, 55)), ("CaffeNet relu2", (16, 256, 27, 27)),
                       ("CIFAR relu2", (100, 32, 16, 16))):
        x = rand(shape, rng).reshape(-1)
        dy = rand(shape, rng).reshape(-1)
        note = "x".join(map(str, shape))
        add(f"ReLU forward {net}", note, 2 * x.nbytes,
            lambda x=x: KN.relu_forward(x, x, np.float32(0.0)))
        add(f"ReLU backward {net}", note, 3 * x.nbytes,
            lambda x=x, dy=dy: KN.relu_backward(x, dy, dy, np.float32(0.0)))
    x = rand(16 * 4096, rng)
    u = rand(x.size, rng, 0.0)
    y = np.empty_like(x)
    half, two = np.float32(0.5), np.float32(2.0)
    add("Dropout forward CaffeNet fc6", "16x4096", 3 * x.nbytes,
        lambda x=x, u=u: KN.dropout_forward(x, u, x, half, two))
    add("Dropout backward CaffeNet fc6", "16x4096", 3 * x.nbytes,
        lambda y=y, u=u: KN.dropout_backward(u, y, y, half, two))

    # -- pooling
    for net, shape, method, k, s in (
            ("CaffeNet pool1", (16, 96, 55, 55), "MAX", 3, 2),
            ("CaffeNet pool2", (16, 256, 27, 27), "MAX", 3, 2),
            ("CaffeNet pool5", (16, 256, 13, 13), "MAX", 3, 2),
            ("CIFAR pool1", (100, 32, 32, 32), "MAX", 3, 2),
            ("CIFAR pool2", (100, 32, 16, 16), "AVE", 3, 2),
            ("LeNet pool1", (64, 20, 24, 24), "MAX", 2, 2)):
        n, c, h, w = shape
        ph = -(-(h - k) // s) + 1
        pw = -(-(w - k) // s) + 1
        x = rand(shape, rng)
        top = np.empty((n, c, ph, pw), np.float32)
        dtop = rand(top.shape, rng)
        dx = np.empty_like(x)
        geo = (k, k, s, s, 0, 0)
        note = f"{'x'.join(map(str, shape))} {k}/{s}"
        if method == "MAX":
            mask = np.empty_like(top)
            add(f"MAX pool forward {net}", note, x.nbytes + 2 * top.nbytes,
                lambda x=x, t=top, m=mask, g=geo: KP.max_pool_forward(x, t, m, *g))
            KP.max_pool_forward(x, top, mask, *geo)
            add(f"MAX pool backward {net}", note, x.nbytes + 2 * top.nbytes,
                lambda d=dtop, m=mask, dx=dx: KP.mask_pool_backward(d, m, dx, True))
        else:
            add(f"AVE pool forward {net}", note, x.nbytes + top.nbytes,
                lambda x=x, t=top, g=geo: KP.ave_pool_forward(x, t, *g))
            add(f"AVE pool backward {net}", note, x.nbytes + top.nbytes,
                lambda d=dtop, dx=dx, g=geo: KP.ave_pool_backward(d, dx, *g, True))

    # -- LRN across channels (CaffeNet norm1, norm2: local_size 5, alpha 1e-4, beta 0.75)
    for net, shape in (("CaffeNet norm1", (16, 96, 27, 27)), ("CaffeNet norm2", (16, 256, 13, 13))):
        n, c, h, w = shape
        view = (n, c, h * w)
        x = rand(view, rng)
        y = np.empty_like(x)
        scale = np.empty_like(x)
        dy = rand(view, rng)
        dx = np.empty_like(x)
        accum = np.empty((n, h * w), np.float32)
        note = "x".join(map(str, shape))
        fwd = KR.lrn_across_forward_parallel if x.size >= 1 << 18 else KR.lrn_across_forward
        bwd = KR.lrn_across_backward_parallel if x.size >= 1 << 18 else KR.lrn_across_backward
        add(f"LRN forward {net}", note, 3 * x.nbytes,
            lambda f=fwd, y=y, s=scale, x=x: f(y, s, x, LRN_SIZE, LRN_ALPHA / LRN_SIZE, LRN_K,
                                               LRN_BETA))
        fwd(y, scale, x, LRN_SIZE, LRN_ALPHA / LRN_SIZE, LRN_K, LRN_BETA)
        add(f"LRN backward {net}", note, 5 * x.nbytes,
            lambda f=bwd, dx=dx, dy=dy, x=x, y=y, s=scale, a=accum: f(
                dx, dy, x, y, s, a, LRN_SIZE, LRN_RATIO, LRN_BETA))

    # -- softmax + loss (CaffeNet fc8: 16 x 1000; CIFAR ip2: 100 x 10)
    for net, (n, c) in (("CaffeNet fc8", (16, 1000)), ("CIFAR ip2", (100, 10))):
        x = rand((n, c, 1), rng)
        prob = np.empty_like(x)
        label = rng.integers(0, c, (n, 1)).astype(np.float32)
        scratch = np.empty(1, np.float32)
        dx = np.empty_like(x)

        def forward(x=x, prob=prob, label=label, s=scratch):
            KS.softmax_forward(prob, x, s, s)
            KL.softmax_loss_forward(prob, label, False, -1)

        add(f"softmax + loss forward {net}", f"{n}x{c}", 2 * x.nbytes, forward)
        add(f"softmax + loss backward {net}", f"{n}x{c}", 2 * x.nbytes,
            lambda dx=dx, prob=prob, label=label, n=n: KL.softmax_loss_backward(
                dx, prob, label, False, -1, np.float32(1.0 / n)))

    # -- solver updates over one flat parameter buffer (CaffeNet: 61M, CIFAR10-quick: 145k)
    for net, counts in (("CaffeNet", (34848, 96, 307200, 256, 884736, 384, 663552, 384,
                                      442368, 256, 37748736, 4096, 16777216, 4096,
                                      4096000, 1000)),
                        ("CIFAR", (2400, 32, 25600, 32, 51200, 64, 65536, 64, 640, 10))):
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        total = int(offsets[-1])
        data = rand(total, rng)
        diff = rand(total, rng) * np.float32(1e-3)
        hist = np.zeros(total, np.float32)
        hist2 = np.zeros(total, np.float32)
        segs = len(counts)
        rates = np.full(segs, 1e-3)
        decays = np.full(segs, 5e-4)
        nbytes = total * F4
        note = f"{total / 1e6:.2f}M floats"
        add(f"SGD momentum update {net}", note, 6 * nbytes,
            lambda d=data, g=diff, h=hist, o=offsets, r=rates, w=decays: KU.sgd_update(
                d, g, h, o, r, w, 1.0, False, 0.9))
        add(f"Adam update {net}", note, 8 * nbytes,
            lambda d=data, g=diff, h=hist, h2=hist2, o=offsets, r=rates, w=decays:
            KU.adam_update(d, g, h, h2, o, r, w, 1.0, False, 0.9, 0.999, 1e-8, 1.0))
        add(f"all_finite (solver's check) {net}", note, nbytes, lambda d=data: KU.all_finite(d))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--clock", choices=("wall", "thread"), default="thread")
    parser.add_argument("--only", default="", help="keep the rows whose name contains this")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    global CLOCK
    if args.clock == "thread":
        if os.environ.get("NUMBA_NUM_THREADS") != "1":
            env = dict(os.environ, NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
            os.execve(sys.executable, [sys.executable] + sys.argv, env)
        CLOCK = time.thread_time
    import numba

    print(f"glue kernels: numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads), "
          f"numpy {np.__version__}, clock {args.clock}, best of {args.repeat}; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.markdown:
        print("\n| kernel | shape | MB moved | ms | GB/s | copy GB/s | x copy |")
        print("|---|---|---|---|---|---|---|")
    for name, note, nbytes, fn in cases():
        if args.only.lower() not in name.lower():
            continue
        try:
            ms = best_ms(fn, args.repeat)
        except Exception as exc:  # a kernel whose signature changed: report, go on
            print(f"  {name:<42} n/a ({type(exc).__name__}: {exc})")
            continue
        ref = copy_ms(nbytes, args.repeat)
        gbs, ref_gbs = nbytes / ms / 1e6, nbytes / ref / 1e6
        if args.markdown:
            print(f"| {name} | {note} | {nbytes / 1e6:.1f} | {ms:.3f} | {gbs:.2f} | "
                  f"{ref_gbs:.2f} | {ms / ref:.2f} |")
        else:
            print(f"  {name:<42} {nbytes / 1e6:8.2f} MB {ms:9.3f} ms {gbs:6.2f} GB/s   copy "
                  f"{ref:8.3f} ms {ref_gbs:6.2f} GB/s  x{ms / ref:5.2f}   {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
