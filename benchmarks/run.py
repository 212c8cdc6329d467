"""``make bench``: netdef against PyTorch (and OpenCV dnn) on the CPU, each in its own process.

Prints the BLAS core type and thread settings, the training throughput (images/s) of LeNet,
CIFAR10-quick or CaffeNet for netdef and, when importable, PyTorch on the same network and
batch, the ratio, netdef's per-layer forward and backward times, the share of this process's
measured SGEMM rate that each convolution and inner product reaches, the time to the first
iteration with a cold and a warm numba cache, and each worker's peak resident memory.
A process that also holds PyTorch's thread pool slows down, hence one process per framework.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


NETS = {"lenet": ("LeNet", 10), "cifar": ("CIFAR10-quick", 10), "caffenet": ("CaffeNet", 1000)}


def peak_rss_mb():
    """This process's peak resident set (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sgemm_gflops(size=1024, repeats=15):
    """Best rate of a square float32 matmul (numpy's BLAS, this process's threads)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    c = np.empty((size, size), np.float32)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    return 2.0 * size ** 3 / best / 1e9


def layer_macs(net):
    """{layer name: (multiply-adds of its forward, whether backward also needs the bottom
    gradient)} for the convolutions and inner products (from weight and top shapes)."""
    out = {}
    for i, layer in enumerate(net.layers):
        if layer.type not in ("Convolution", "InnerProduct") or not layer.blobs:
            continue
        weight = layer.blobs[0].shape
        per_output = 1
        for d in weight[1:]:
            per_output *= d
        if layer.type == "Convolution":
            macs = net.top_vecs[i][0].count * per_output
        else:
            macs = net.top_vecs[i][0].count * weight[1]
        out[net._layer_names[i]] = (macs, bool(net.bottom_need_backward[i][0]))
    return out


def gemm_shares(layers, macs, gflops):
    """Per big layer: achieved GFLOP/s forward and backward, and as a share of ``gflops``."""
    rows = []
    for row in layers["layers"]:
        if row["name"] not in macs:
            continue
        m, data_grad = macs[row["name"]]
        fwd = 2.0 * m / (row["forward_ms"] * 1e6)
        bwd = (4.0 if data_grad else 2.0) * m / (row["backward_ms"] * 1e6)
        rows.append({"name": row["name"], "gmacs": m / 1e9, "forward_gflops": fwd,
                     "backward_gflops": bwd, "forward_share": fwd / gflops,
                     "backward_share": bwd / gflops})
    return rows


def worker_netdef(args):
    t0 = time.perf_counter()
    import netdef  # noqa: F401, I001  (first: its thread policy, before numpy loads BLAS)
    from benchmarks.nets import bench_solver, fill_random

    solver = bench_solver(args.net, args.batch)
    fill_random(solver, 0, NETS[args.net][1])
    solver.step(1)
    first = time.perf_counter() - t0
    if args.first_only:
        return {"first_iteration_s": first, "peak_rss_mb": peak_rss_mb()}
    solver.step(args.warmup)
    t, c = time.perf_counter(), time.process_time()
    solver.step(args.iters)
    elapsed = time.perf_counter() - t
    cpu = time.process_time() - c
    rss = peak_rss_mb()
    layers = time_layers(solver.net, args)
    gflops = sgemm_gflops()
    algos = {layer.layer_param.name: layer.algo for layer in solver.net.layers
             if getattr(layer, "algo", None)}
    return {"images_per_s": args.iters * args.batch / elapsed,
            "ms_per_iter": 1000 * elapsed / args.iters, "cpu_ms_per_iter": 1000 * cpu / args.iters,
            "first_iteration_s": first, "peak_rss_mb": rss, "layers": layers,
            "conv_algorithms": algos, "sgemm_gflops": gflops,
            "gemm_shares": gemm_shares(layers, layer_macs(solver.net), gflops)}


def time_layers(net, args):
    """Per-layer times: the minimum over a few runs of the mean of a few passes (noise
    from other processes only ever adds time)."""
    from netdef.timing import time_net

    passes = max(1, min(20, args.iters // 2))
    runs = [time_net(net, passes) for _ in range(3)]
    best = runs[0]
    for i, row in enumerate(best["layers"]):
        for key in ("forward_ms", "backward_ms"):
            row[key] = min(r["layers"][i][key] for r in runs)
    for key in ("forward_ms", "backward_ms"):
        best[key] = min(r[key] for r in runs)
    return best


def torch_model(net, nn):
    """The benchmark net in PyTorch, layer for layer (Caffe's ceil-mode pooling; torch's
    LocalResponseNorm divides alpha by the size as Caffe's ACROSS_CHANNELS LRN does)."""
    if net == "cifar":
        return nn.Sequential(
            nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(),
            nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
            nn.Flatten(), nn.Linear(1024, 64), nn.Linear(64, 10)), (3, 32, 32)
    if net == "caffenet":
        def lrn():
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)

        def pool():
            return nn.MaxPool2d(3, 2, ceil_mode=True)

        def relu():
            return nn.ReLU(inplace=True)

        return nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4), relu(), pool(), lrn(),
            nn.Conv2d(96, 256, 5, padding=2, groups=2), relu(), pool(), lrn(),
            nn.Conv2d(256, 384, 3, padding=1), relu(),
            nn.Conv2d(384, 384, 3, padding=1, groups=2), relu(),
            nn.Conv2d(384, 256, 3, padding=1, groups=2), relu(), pool(),
            nn.Flatten(), nn.Linear(9216, 4096), relu(), nn.Dropout(0.5),
            nn.Linear(4096, 4096), relu(), nn.Dropout(0.5), nn.Linear(4096, 1000)), (3, 227, 227)
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10)), (1, 28, 28)


def worker_torch(args):
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, image = torch_model(args.net, nn)
    model.train()
    shape = (args.batch, *image)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(*shape)
    y = torch.randint(0, NETS[args.net][1], (args.batch,))

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(args.iters):
        step()
    elapsed = time.perf_counter() - t
    cpu = time.process_time() - c
    return {"images_per_s": args.iters * args.batch / elapsed,
            "ms_per_iter": 1000 * elapsed / args.iters, "cpu_ms_per_iter": 1000 * cpu / args.iters,
            "version": torch.__version__, "peak_rss_mb": peak_rss_mb(),
            "threads": torch.get_num_threads()}


def run_worker(name, args, env=None, first_only=False):
    cmd = [sys.executable, __file__, "--worker", name, "--net", args.net, "--batch",
           str(args.batch),
           "--iters", str(args.iters), "--warmup", str(args.warmup),
           "--threads", str(args.threads)] + (["--first-only"] if first_only else [])
    env = dict(os.environ if env is None else env, PYTHONPATH=ROOT)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def openblas_core():
    """OpenBLAS's name for the kernels it picked for this CPU (e.g. Haswell, Zen)."""
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("internal_api") == "openblas":
                return pool.get("architecture"), pool.get("num_threads")
    except Exception:
        pass
    import ctypes
    import glob

    import numpy as np

    libs = os.path.join(os.path.dirname(np.__path__[0]), "numpy.libs", "libscipy_openblas*")
    for path in glob.glob(libs):
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
            core = getattr(lib, f"{prefix}openblas_get_corename{suffix}", None)
            threads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            if core is not None:
                core.restype = ctypes.c_char_p
                return core().decode(), threads() if threads is not None else None
    return None, None


def blas_info():
    import netdef.threads  # noqa: I001  (first: the thread policy's environment defaults)
    import numpy as np

    info = {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE", "(unset)"),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"),
            "NETDEF_SHARED_CPU": os.environ.get("NETDEF_SHARED_CPU", "(unset)"),
            "cpus": os.cpu_count(), "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f
                               if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        pass
    try:
        core, threads = openblas_core()
        info["BLAS core type"] = core
        info["BLAS threads (in use)"] = threads
    except Exception as exc:
        info["BLAS core type"] = f"(unknown: {exc})"
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_threading_layer"] = numba.config.THREADING_LAYER
        info["NUMBA_NUM_THREADS"] = netdef.threads.describe()["NUMBA_NUM_THREADS"]
    except Exception:
        pass
    info["load average (1, 5, 15 min)"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return info


def _median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def report(args, cold, rounds):
    """Throughput of every round (netdef and PyTorch alternating), the median ratio, then the
    details of the first netdef round."""
    warm = rounds[0][0]
    title = NETS[args.net][0]
    print(f"\n== {title} training, batch {args.batch}, {args.iters} iterations "
          f"after {args.warmup} warm-up, {len(rounds)} rounds alternating the frameworks ==")
    ratios, cpu_ratios = [], []
    for i, (nd, tr) in enumerate(rounds, 1):
        line = (f"  round {i}: netdef {nd['images_per_s']:8.1f} images/s "
                f"({nd['ms_per_iter']:.2f} ms/iter, CPU {nd['cpu_ms_per_iter']:.2f})")
        if "error" not in tr:
            ratios.append(nd["images_per_s"] / tr["images_per_s"])
            cpu_ratios.append(tr["cpu_ms_per_iter"] / nd["cpu_ms_per_iter"])
            line += (f"   PyTorch {tr['images_per_s']:8.1f} images/s ({tr['ms_per_iter']:.2f} "
                     f"ms/iter, CPU {tr['cpu_ms_per_iter']:.2f})   ratio {ratios[-1]:.2f}x")
        print(line)
    print(f"  convolution algorithms: {warm['conv_algorithms']}")
    torch_res = rounds[0][1]
    if ratios:
        print(f"  PyTorch {torch_res['version']} ({torch_res['threads']} threads)")
        print(f"  ratio netdef / PyTorch, median of {len(ratios)} rounds: "
              f"{_median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}; "
              f"by CPU time {_median(cpu_ratios):.2f}x)")
    else:
        print("  PyTorch not available:", torch_res["error"])
    print("\n== time to first iteration (process start to end of step 1) ==")
    print(f"  cold numba cache: {cold.get('first_iteration_s', float('nan')):.2f} s")
    print(f"  warm numba cache: {warm['first_iteration_s']:.2f} s")
    print("\n== peak resident memory (ru_maxrss) ==")
    print(f"  netdef : {warm['peak_rss_mb']:.0f} MiB")
    if "error" not in torch_res:
        print(f"  PyTorch: {torch_res['peak_rss_mb']:.0f} MiB")
    print("\n== netdef per-layer times (ms, best of 3 runs) ==")
    for row in warm["layers"]["layers"]:
        print(f"  {row['name']:10s} {row['type']:16s} forward {row['forward_ms']:8.3f}  "
              f"backward {row['backward_ms']:8.3f}")
    print(f"  total forward {warm['layers']['forward_ms']:.2f}  backward "
          f"{warm['layers']['backward_ms']:.2f}")
    print(f"\n== GEMM layers against this process's SGEMM rate "
          f"({warm['sgemm_gflops']:.1f} GFLOP/s, 1024^3 float32 matmul) ==")
    print("  (rates count the direct convolution's 2 x MACs; Winograd does fewer multiplies, so "
          "it can pass 100%)")
    for r in warm["gemm_shares"]:
        algo = warm["conv_algorithms"].get(r["name"], "gemm")
        print(f"  {r['name']:8s} {algo:8s} {r['gmacs']:7.3f} GMAC  forward "
              f"{r['forward_gflops']:6.1f} GFLOP/s ({100 * r['forward_share']:3.0f}%)  backward "
              f"{r['backward_gflops']:6.1f} GFLOP/s ({100 * r['backward_share']:3.0f}%)")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--worker")
    ap.add_argument("--net", choices=tuple(NETS), default="lenet",
                    help="LeNet (batch 64), CIFAR10-quick (--batch 100) or CaffeNet (--batch 16)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=3,
                    help="netdef and PyTorch runs, alternating; the ratio is their median")
    ap.add_argument("--skip-cold", action="store_true",
                    help="skip the cold-numba-cache run (it compiles every kernel: minutes)")
    ap.add_argument("--first-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        result = {"netdef": worker_netdef, "torch": worker_torch}[args.worker](args)
        print(json.dumps(result))
        return 0

    print("== machine ==")
    torch_env = dict(os.environ)    # before netdef's thread policy edits this process's
    for k, v in blas_info().items():   # environment: PyTorch keeps its own defaults
        print(f"  {k}: {v}")
    print(f"  PyTorch threads: {args.threads}")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = {} if args.skip_cold else run_worker("netdef", args, env, first_only=True)
        rounds = []
        # Alternate the frameworks: this machine's speed drifts between minutes, and a ratio
        # of two runs taken far apart measures the drift as much as the code.
        for _ in range(args.rounds):
            warm = run_worker("netdef", args, None if args.skip_cold else env)
            if "error" in warm:
                print("  netdef failed:", warm["error"])
                return 1
            rounds.append((warm, run_worker("torch", args, torch_env)))
    report(args, cold, rounds)
    print(f"\n  load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
