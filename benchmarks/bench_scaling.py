"""Data-parallel scaling: 1 process x 2 threads against 2 MPI processes x 1 thread.

For LeNet and CIFAR10-quick (random data, benchmarks/nets.py) at the same effective batch
(one process with batch 2B, two ranks with batch B each), prints the training throughput
(images/s), wall and CPU time per iteration, the measured all-reduce cost of the net's
gradient, and whether averaging the gradient in one all-reduce after backward or in a
few buckets started during backward (overlapping the rest of backward) is faster.
Then it fits the all-reduce time here to latency + bytes / bandwidth and projects the
throughput to 8, 64 and 512 nodes on a given network (docs/scaling.md explains the model).

    python benchmarks/bench_scaling.py [--nets lenet,cifar] [--iters 20] [--gbit 10]

Each configuration runs in its own processes (mpiexec for the ranks).  On a machine
shared with other work the numbers are noisy: compare CPU time as well as wall time.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BATCH = {"lenet": 64, "cifar": 100}  # per rank; one process runs twice this
LABELS = {"lenet": "LeNet", "cifar": "CIFAR10-quick"}
SIZES = [1 << 10, 1 << 14, 1 << 17, 1 << 19, 1 << 21, 1 << 23]  # all-reduce probe bytes


def buckets_of(net, count):
    """``count`` contiguous ranges of the flat gradient (about equal bytes), each with the
    layer after whose backward it is complete (its earliest owning layer)."""
    owner = {}
    for li, owned in enumerate(net.param_owner_of):
        for oi in owned:
            owner.setdefault(oi, li)
    sizes = [b.count for b in net.learnable_params]
    total = sum(sizes)
    out, start, first, acc = [], 0, None, 0
    for oi, n in enumerate(sizes):
        first = owner[oi] if first is None else min(first, owner[oi])
        acc += n
        if acc >= total * (len(out) + 1) / count or oi == len(sizes) - 1:
            out.append((start, acc, first))
            start, first = acc, None
    return out


def overlapped_step(net, world, buckets):
    """forward; backward layer by layer, starting each bucket's all-reduce as soon as its
    gradients are complete and polling MPI between layers; then wait and average."""
    MPI = world.MPI
    net.clear_param_diffs()
    net.forward_from_to()
    ready = {}
    for a, b, layer in buckets:
        ready.setdefault(layer, []).append((a, b))
    pending = []
    for i in range(len(net.layers) - 1, -1, -1):
        net.backward_from_to(i, i)
        for a, b in ready.get(i, ()):
            pending.append(world.comm.Iallreduce(MPI.IN_PLACE, net.flat_diff[a:b], MPI.SUM))
        if pending:
            MPI.Request.Testall(pending)
    MPI.Request.Waitall(pending)
    net.flat_diff *= 1.0 / world.size


def one_allreduce_step(net, world):
    MPI = world.MPI
    net.clear_param_diffs()
    net.forward_backward()
    world.comm.Allreduce(MPI.IN_PLACE, net.flat_diff, MPI.SUM)
    net.flat_diff *= 1.0 / world.size


def time_allreduce(world, nbytes, repeats=10):
    import numpy as np

    buf = np.ones(nbytes // 4, np.float32)
    MPI = world.MPI
    world.comm.Allreduce(MPI.IN_PLACE, buf, MPI.SUM)
    best = float("inf")
    for _ in range(repeats):
        world.comm.Barrier()
        t = time.perf_counter()
        world.comm.Allreduce(MPI.IN_PLACE, buf, MPI.SUM)
        best = min(best, time.perf_counter() - t)
    return best


def worker(args):
    sys.path.insert(0, ROOT)
    from benchmarks.nets import bench_solver, fill_random
    from netdef import parallel

    world = parallel.init()
    solver = bench_solver(args.net, args.batch)
    fill_random(solver, world.rank if world else 0, classes=10)
    solver.step(1 + args.warmup)
    if world:
        world.comm.Barrier()
        world.allreduce_seconds, world.allreduce_calls = 0.0, 0
    t, c = time.perf_counter(), time.process_time()
    solver.step(args.iters)
    wall = time.perf_counter() - t
    cpu = time.process_time() - c
    out = {"net": args.net, "batch": args.batch, "ranks": world.size if world else 1,
           "ms_per_iter": 1000 * wall / args.iters, "params": int(solver.net.flat_diff.size)}
    if world is None:
        out["cpu_ms_per_iter"] = 1000 * cpu / args.iters
        out["images_per_s"] = args.batch * args.iters / wall
        print(json.dumps(out))
        return
    cpus = world.comm.allgather(cpu)
    walls = world.comm.allgather(wall)
    out["cpu_ms_per_iter"] = 1000 * sum(cpus) / args.iters  # all ranks together
    out["images_per_s"] = args.batch * world.size * args.iters / max(walls)
    out["allreduce_ms"] = 1000 * world.allreduce_seconds / max(1, world.allreduce_calls)
    # one all-reduce after backward vs 4 buckets overlapping backward (same work)
    net = solver.net
    buckets = buckets_of(net, 4)
    for name, step in (("one_allreduce", lambda: one_allreduce_step(net, world)),
                       ("4_buckets_overlapped", lambda: overlapped_step(net, world, buckets))):
        step()
        world.comm.Barrier()
        t = time.perf_counter()
        for _ in range(args.iters):
            step()
        out[f"{name}_ms_per_iter"] = 1000 * (time.perf_counter() - t) / args.iters
    out["allreduce_probe"] = [(n, time_allreduce(world, n)) for n in SIZES]
    if world.is_root:
        print(json.dumps(out))


def run(cmd, threads):
    env = dict(os.environ, PYTHONPATH=ROOT, OPENBLAS_NUM_THREADS=str(threads),
               NUMBA_NUM_THREADS=str(threads))
    env.pop("NETDEF_SHARED_CPU", None)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-3:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit(probe):
    """(latency s, bandwidth bytes/s) of t = latency + bytes / bandwidth: the latency is
    the smallest message's time, the bandwidth the median over messages of 128 KB and
    more (robust to one slow probe on a busy machine)."""
    latency = min(t for _, t in probe)
    rates = sorted(n / max(t - latency, 1e-9) for n, t in probe if n >= 1 << 17)
    return latency, rates[len(rates) // 2]


def ring_allreduce_s(nodes, nbytes, bandwidth, latency):
    """A ring all-reduce: each node sends and receives 2(N-1)/N of the bytes, in 2(N-1)
    steps that each pay the network latency once."""
    if nodes <= 1:
        return 0.0
    return 2 * (nodes - 1) / nodes * nbytes / bandwidth + 2 * (nodes - 1) * latency


def tree_allreduce_s(nodes, nbytes, bandwidth, latency):
    """Rabenseifner (reduce-scatter + all-gather by recursive halving/doubling, MPICH's
    choice for long vectors): the same bytes, 2 log2(N) latencies."""
    if nodes <= 1:
        return 0.0
    return 2 * (nodes - 1) / nodes * nbytes / bandwidth + 2 * math.log2(nodes) * latency


def projection(step_s, batch, nbytes, gbit, latency):
    """Throughput (images/s) and efficiency at 1..512 nodes, each node running one rank
    whose compute takes ``step_s`` per batch of ``batch``."""
    bw = gbit * 1e9 / 8
    rows = []
    for nodes in (1, 8, 64, 512):
        ring = ring_allreduce_s(nodes, nbytes, bw, latency)
        tree = tree_allreduce_s(nodes, nbytes, bw, latency)
        rows.append((nodes, nodes * batch / (step_s + ring), step_s / (step_s + ring),
                     nodes * batch / (step_s + tree), step_s / (step_s + tree)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--net", default="lenet", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=64, help=argparse.SUPPRESS)
    ap.add_argument("--nets", default="lenet,cifar")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--gbit", type=float, default=10.0,
                    help="network bandwidth per node for the projection (Gbit/s)")
    ap.add_argument("--latency-us", type=float, default=20.0,
                    help="network latency per message for the projection (µs)")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    sys.path.insert(0, ROOT)
    from netdef.errors import NetdefError
    from netdef.parallel.launch import find_mpiexec

    try:
        mpiexec = find_mpiexec()
    except NetdefError as exc:
        print(f"bench_scaling: skipped: {exc}")
        return 0
    me = [sys.executable, os.path.abspath(__file__), "--worker", "--iters", str(args.iters),
          "--warmup", str(args.warmup)]
    print(f"bench_scaling: {os.cpu_count()} cpus, load average "
          f"{os.getloadavg()[0]:.2f} (other work on the machine adds noise)")
    results = {}
    for net in args.nets.split(","):
        b = BATCH[net]
        single = run(me + ["--net", net, "--batch", str(2 * b)], threads=2)
        multi = run([mpiexec, "-n", "2"] + me + ["--net", net, "--batch", str(b)], threads=1)
        results[net] = (single, multi)
        print(f"\n{LABELS[net]}: effective batch {2 * b}")
        for name, r in (("1 process x 2 threads", single), ("2 processes x 1 thread", multi)):
            if "error" in r:
                print(f"  {name:24s} failed: {r['error']}")
                continue
            print(f"  {name:24s} {r['images_per_s']:8.1f} images/s  {r['ms_per_iter']:7.1f} ms/iter"
                  f" wall  {r['cpu_ms_per_iter']:7.1f} ms/iter CPU (all processes)")
        if "error" in multi:
            continue
        mb = multi["params"] * 4 / 1e6
        print(f"  gradient {multi['params']} floats ({mb:.2f} MB): all-reduce "
              f"{multi['allreduce_ms']:.3f} ms/iter in training")
        print(f"  one all-reduce after backward: {multi['one_allreduce_ms_per_iter']:.1f} ms/iter;"
              f" 4 buckets overlapping backward: {multi['4_buckets_overlapped_ms_per_iter']:.1f}"
              " ms/iter")
    probes = [r[1]["allreduce_probe"] for r in results.values() if "allreduce_probe" in r[1]]
    if not probes:
        return 1
    probe = [(n, min(p[i][1] for p in probes)) for i, (n, _) in enumerate(probes[0])]
    latency, bandwidth = fit(probe)
    print("\nall-reduce between 2 processes here (shared memory), best of 10:")
    for n, t in probe:
        print(f"  {n / 1e6:9.3f} MB  {1e6 * t:9.1f} µs")
    print(f"  fit: {1e6 * latency:.1f} µs + bytes / {bandwidth / 1e9:.2f} GB/s")
    print(f"\nprojection: one rank per node, {args.gbit:g} Gbit/s and {args.latency_us:g} µs per"
          " message, compute per node as measured for 1 process x 1 thread (no overlap)")
    for net, (_, multi) in results.items():
        if "error" in multi:
            continue
        step_s = (multi["ms_per_iter"] - multi["allreduce_ms"]) / 1000
        print(f"  {LABELS[net]} (batch {multi['batch']} per node, compute {1000 * step_s:.1f} "
              f"ms, gradient {multi['params'] * 4 / 1e6:.2f} MB):")
        print("     nodes   ring images/s  eff.   tree images/s  eff.")
        for nodes, ring, reff, tree, teff in projection(step_s, multi["batch"],
                                                          multi["params"] * 4, args.gbit,
                                                          args.latency_us * 1e-6):
            print(f"    {nodes:6d} {ring:14.0f} {reff:6.0%} {tree:14.0f} {teff:6.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
