"""Thread policies compared: LeNet b64 and CIFAR10-quick b100 training steps, netdef only.

Each (policy, net) pair runs in its own process (the thread pools are fixed at start-up),
and the pairs are interleaved round by round, so a machine that is busy with other work
slows every policy alike.  Per run it reports the median wall-clock ms per iteration and
the process CPU ms per iteration (all threads; on a loaded machine wall time includes
waiting for a core, CPU time does not, but CPU time also counts threads that spin).
Printed at the end: per policy and net, the median and minimum over the rounds.

Run: python benchmarks/bench_threads.py [--rounds 3] [--iters 20]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name -> (OPENBLAS_NUM_THREADS, NUMBA_NUM_THREADS)
POLICIES = {"blas1-numba1": (1, 1), "blas2-numba1": (2, 1), "blas1-numba2": (1, 2),
            "blas2-numba2": (2, 2)}


def worker(net_name, iters):
    import numpy as np

    import netdef  # noqa: F401  (thread policy first)
    from benchmarks.nets import cifar_bench_net, lenet_bench_net
    from netdef.proto import caffe_pb2
    from netdef.solvers import Solver

    param = caffe_pb2.SolverParameter()
    batch = 64 if net_name == "lenet" else 100
    net = lenet_bench_net(batch) if net_name == "lenet" else cifar_bench_net(batch)
    param.net_param.CopyFrom(net)
    param.base_lr, param.momentum, param.weight_decay = 0.001, 0.9, 5e-4
    param.lr_policy = "fixed"
    param.max_iter, param.random_seed = 10 ** 6, 1
    param.snapshot_after_train = False
    solver = Solver(param)
    rng = np.random.default_rng(0)
    solver.net.blobs["data"].data[...] = rng.random(solver.net.blobs["data"].shape,
                                                    dtype=np.float32)
    solver.net.blobs["label"].data[...] = rng.integers(0, 10, solver.net.blobs["label"].shape)
    solver.step(3)
    wall, cpu = [], []
    for _ in range(iters):
        t, c = time.perf_counter(), time.process_time()
        solver.step(1)
        wall.append(1000 * (time.perf_counter() - t))
        cpu.append(1000 * (time.process_time() - c))
    return {"wall_ms": statistics.median(wall), "cpu_ms": statistics.median(cpu),
            "wall_min_ms": min(wall)}


def run_one(policy, net_name, iters):
    blas, nb = POLICIES[policy]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas), NUMBA_NUM_THREADS=str(nb),
               PYTHONPATH=ROOT)
    cmd = [sys.executable, __file__, "--worker", net_name, "--iters", str(iters)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--worker")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nets", default="lenet,cifar")
    ap.add_argument("--policies", default=",".join(POLICIES))
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.iters)))
        return 0
    nets = args.nets.split(",")
    policies = args.policies.split(",")
    results = {(p, n): [] for p in policies for n in nets}
    for r in range(args.rounds):
        for n in nets:
            for p in policies:
                res = run_one(p, n, args.iters)
                results[p, n].append(res)
                print(f"round {r} {n:6s} {p:14s} {res}", flush=True)
    print("\npolicy          net     wall ms (median / min over rounds)   cpu ms (median)")
    for (p, n), rows in results.items():
        rows = [x for x in rows if "error" not in x]
        if not rows:
            continue
        walls = [x["wall_ms"] for x in rows]
        print(f"{p:15s} {n:6s}  {statistics.median(walls):8.1f} / {min(walls):8.1f}"
              f"                  {statistics.median(x['cpu_ms'] for x in rows):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
