"""``make bench``: netdef against PyTorch (and OpenCV dnn) on the CPU, each in its own process.

Prints the BLAS and thread settings, LeNet training throughput (images/s) for netdef and, when
importable, PyTorch on the same network and batch, the ratio, netdef's per-layer forward and
backward times, and the time to the first iteration with a cold and a warm numba cache.
A process that also holds PyTorch's thread pool slows down, hence one process per framework.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def worker_netdef(args):
    t0 = time.perf_counter()
    import numpy as np

    from netdef.proto import caffe_pb2
    from netdef.solvers import Solver
    from netdef.timing import time_net

    param = caffe_pb2.SolverParameter()
    from benchmarks.nets import cifar_bench_net, lenet_bench_net

    builder = cifar_bench_net if args.net == "cifar" else lenet_bench_net
    param.net_param.CopyFrom(builder(args.batch))
    param.base_lr, param.momentum, param.weight_decay = 0.01, 0.9, 5e-4
    param.lr_policy, param.gamma, param.power = "inv", 1e-4, 0.75
    param.max_iter, param.random_seed = 10 ** 6, 1
    param.snapshot_after_train = False
    solver = Solver(param)
    rng = np.random.default_rng(0)
    data = solver.net.blobs["data"]
    label = solver.net.blobs["label"]
    data.data[...] = rng.random(data.shape, dtype=np.float32)
    label.data[...] = rng.integers(0, 10, label.shape)
    solver.step(1)
    first = time.perf_counter() - t0
    solver.step(args.warmup)
    t, c = time.perf_counter(), time.process_time()
    solver.step(args.iters)
    elapsed = time.perf_counter() - t
    cpu = time.process_time() - c
    layers = time_net(solver.net, 20)
    algos = {layer.layer_param.name: layer.algo for layer in solver.net.layers
             if getattr(layer, "algo", None)}
    return {"images_per_s": args.iters * args.batch / elapsed,
            "ms_per_iter": 1000 * elapsed / args.iters, "cpu_ms_per_iter": 1000 * cpu / args.iters,
            "first_iteration_s": first, "layers": layers, "conv_algorithms": algos}


def worker_torch(args):
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.net == "cifar":
        model = nn.Sequential(
            nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(),
            nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True),
            nn.Flatten(), nn.Linear(1024, 64), nn.Linear(64, 10))
        shape = (args.batch, 3, 32, 32)
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2),
            nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
        shape = (args.batch, 1, 28, 28)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(*shape)
    y = torch.randint(0, 10, (args.batch,))

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
            "version": torch.__version__}


def run_worker(name, args, env=None):
    cmd = [sys.executable, __file__, "--worker", name, "--net", args.net, "--batch",
           str(args.batch),
           "--iters", str(args.iters), "--warmup", str(args.warmup),
           "--threads", str(args.threads)]
    env = dict(os.environ if env is None else env, PYTHONPATH=ROOT)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def blas_info():
    import netdef.threads  # noqa: I001  (first: the thread policy's environment defaults)
    import numpy as np

    info = {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE", "(unset)"),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"),
            "cpus": os.cpu_count(), "numpy": np.__version__}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        pass
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_threading_layer"] = numba.config.THREADING_LAYER
        info["NUMBA_NUM_THREADS"] = netdef.threads.describe()["NUMBA_NUM_THREADS"]
    except Exception:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--worker")
    ap.add_argument("--net", choices=("lenet", "cifar"), default="lenet",
                    help="LeNet (batch 64) or CIFAR10-quick (use --batch 100)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
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
        cold = run_worker("netdef", args, env)
        warm = run_worker("netdef", args, env)
    title = "CIFAR10-quick" if args.net == "cifar" else "LeNet"
    print(f"\n== {title} training, batch {args.batch}, {args.iters} iterations ==")
    if "error" in warm:
        print("  netdef failed:", warm["error"])
        return 1
    print(f"  netdef : {warm['images_per_s']:8.0f} images/s  ({warm['ms_per_iter']:.2f} ms/iter, "
          f"CPU {warm['cpu_ms_per_iter']:.2f} ms/iter)")
    print(f"  convolution algorithms: {warm['conv_algorithms']}")
    torch_res = run_worker("torch", args, torch_env)
    if "error" not in torch_res:
        ratio = warm["images_per_s"] / torch_res["images_per_s"]
        print(f"  PyTorch {torch_res['version']}: {torch_res['images_per_s']:8.0f} images/s  "
              f"({torch_res['ms_per_iter']:.2f} ms/iter, CPU {torch_res['cpu_ms_per_iter']:.2f} "
              f"ms/iter)")
        print(f"  ratio netdef / PyTorch: {ratio:.2f}x")
    else:
        print("  PyTorch not available:", torch_res["error"])
    print("\n== time to first iteration (process start to end of step 1) ==")
    print(f"  cold numba cache: {cold.get('first_iteration_s', float('nan')):.2f} s")
    print(f"  warm numba cache: {warm['first_iteration_s']:.2f} s")
    print("\n== netdef per-layer times (ms, mean of 20) ==")
    for row in warm["layers"]["layers"]:
        print(f"  {row['name']:10s} {row['type']:16s} forward {row['forward_ms']:7.3f}  "
              f"backward {row['backward_ms']:7.3f}")
    print(f"  total forward {warm['layers']['forward_ms']:.2f}  backward "
          f"{warm['layers']['backward_ms']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
