"""Forward (inference) time of the model zoo's classic nets: netdef, OpenCV dnn, PyTorch.

For each (net, batch) the nets get the same seeded random weights (saved once by netdef as a
caffemodel) and the same seeded input.  Each framework runs in its own process (a process that
also holds another framework's thread pool slows down): it loads the net, runs `--warmup`
forwards, then times `--runs` forwards and reports the median in milliseconds.  OpenCV and
PyTorch are measured when importable (``--frameworks netdef,netdef-plain`` also times netdef
without ``optimize_for_inference``); PyTorch runs the prototxt through a small interpreter
(`TorchNet`) with the caffemodel's weights.  The frameworks take turns for `--rounds` rounds
(this machine's speed drifts by 20-40% between minutes, so one process each compares moments,
not frameworks).  The table gives each framework's median over the rounds, netdef's ratio to
the faster peer (the median of the rounds' ratios, with their range; above 1: netdef is slower)
and how far each peer's output is from netdef's (a check that all three computed the same net);
a second table gives each worker process's peak resident memory (VmHWM): over the whole run,
while loading the net, and during the forwards alone (the peak count restarted after the load
where Linux allows).

    python benchmarks/bench_inference.py [--runs 20] [--warmup 3] [--rounds 5] [--threads N]
                                         [--only lenet]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ZOO = os.path.join(ROOT, "models")

# (label, zoo folder, batch, output blob)
CASES = [
    ("CaffeNet", "caffenet", 1, "prob"),
    ("CaffeNet", "caffenet", 10, "prob"),
    ("GoogLeNet", "googlenet", 1, "prob"),
    ("GoogLeNet", "googlenet", 10, "prob"),
    ("LeNet", "lenet", 64, "prob"),
    ("CIFAR10-quick", "cifar10_quick", 100, "prob"),
]
FRAMEWORKS = ("netdef", "opencv", "torch")


def prototxt(folder):
    return os.path.join(ZOO, folder, "deploy.prototxt")


# --------------------------------------------------------------- shared inputs (main process)

def prepare(folder, workdir):
    """Seeded He-scaled weights for the net, saved by netdef; returns the caffemodel path."""
    import numpy as np

    from netdef.net import Net

    net = Net(prototxt(folder), phase="TEST")
    rng = np.random.default_rng(1)
    for blobs in net.params.values():
        w = blobs[0]
        values = rng.standard_normal(w.shape, dtype=np.float32)
        values *= np.float32(np.sqrt(2.0 / (w.count // w.shape[0])))
        w.data[...] = values
        for b in blobs[1:]:
            b.data[...] = rng.uniform(-0.1, 0.1, b.shape)
    path = os.path.join(workdir, f"{folder}.caffemodel")
    net.save(path)
    return path


def input_array(folder, batch):
    import numpy as np

    from netdef.prototxt import read_net_param

    param = read_net_param(prototxt(folder))
    dims = [layer.input_param.shape[0].dim for layer in param.layer if layer.type == "Input"][0]
    shape = (batch,) + tuple(int(d) for d in dims[1:])
    return np.random.default_rng(2).uniform(-1, 1, shape).astype(np.float32)


# --------------------------------------------------------------- workers (one per process)

def timed(forward, warmup, runs):
    for _ in range(warmup):
        forward()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        forward()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times), 1000 * min(times)


def worker_netdef(args, x, optimize=True):
    """netdef as a deploy user runs it: optimized for inference (fused layers, blob
    memory reused); ``netdef-plain`` is the same net without the opt-in."""
    import netdef
    from netdef.net import Net

    net = Net(prototxt(args.net), phase="TEST", weights=args.weights)
    if optimize:
        net.optimize_for_inference(reuse_memory=True)
    net.blobs["data"].reshape(x.shape)
    net.reshape()

    def forward():
        return net.forward(data=x)[args.output]

    return forward, f"netdef {netdef.__version__}"


def worker_netdef_plain(args, x):
    return worker_netdef(args, x, optimize=False)


def worker_opencv(args, x):
    import cv2

    cv2.setNumThreads(args.threads)
    net = cv2.dnn.readNetFromCaffe(prototxt(args.net), args.weights)

    def forward():
        net.setInput(x)
        return net.forward(args.output)

    return forward, f"OpenCV {cv2.__version__}"


class TorchNet:
    """Runs a deploy NetParameter with torch.nn.functional, Caffe's semantics: ceil-mode
    pooling (torch drops a last window that starts in the padding, as Caffe does, and
    divides AVE windows by their size clipped to the padded input), LRN across channels,
    InnerProduct over everything after axis 0."""

    def __init__(self, net_param, layers):
        import torch

        self.param = net_param
        self.weights = {name: [torch.from_numpy(a.copy()) for a in arrays]
                        for name, arrays in layers if arrays}

    def __call__(self, x):
        import torch
        import torch.nn.functional as F

        blobs = {}
        for layer in self.param.layer:
            kind, name = layer.type, layer.name
            bottom = [blobs[b] for b in layer.bottom]
            w = self.weights.get(name, [])
            if kind == "Input":
                out = x
            elif kind == "Convolution":
                p = layer.convolution_param
                out = F.conv2d(bottom[0], w[0], w[1] if len(w) > 1 else None,
                               stride=p.stride[0] if p.stride else 1,
                               padding=p.pad[0] if p.pad else 0, groups=p.group)
            elif kind == "Pooling":
                p = layer.pooling_param
                if p.global_pooling:
                    k, s, pad = tuple(bottom[0].shape[2:]), 1, 0
                else:
                    k, s, pad = p.kernel_size, p.stride, p.pad
                if p.pool == p.MAX:
                    out = F.max_pool2d(bottom[0], k, s, pad, ceil_mode=True)
                else:
                    out = F.avg_pool2d(bottom[0], k, s, pad, ceil_mode=True,
                                       count_include_pad=True)
            elif kind == "LRN":
                p = layer.lrn_param
                out = F.local_response_norm(bottom[0], p.local_size, p.alpha, p.beta, p.k)
            elif kind == "ReLU":
                out = F.relu(bottom[0])
            elif kind == "InnerProduct":
                out = F.linear(bottom[0].flatten(1), w[0], w[1] if len(w) > 1 else None)
            elif kind == "Dropout":
                out = bottom[0]
            elif kind == "Concat":
                out = torch.cat(bottom, 1)
            elif kind == "Softmax":
                out = F.softmax(bottom[0], 1)
            else:
                raise NotImplementedError(f"TorchNet: layer type {kind} ({name})")
            blobs[layer.top[0]] = out
        return blobs


def worker_torch(args, x):
    import torch

    from netdef.prototxt import read_net_param
    from netdef.weights import load_weights

    torch.set_num_threads(args.threads)
    net = TorchNet(read_net_param(prototxt(args.net)), load_weights(args.weights))
    xt = torch.from_numpy(x)

    def forward():
        with torch.inference_mode():
            return net(xt)[args.output].numpy()

    return forward, f"PyTorch {torch.__version__}"


def run_worker(args):
    if args.worker.startswith("netdef"):
        import netdef  # noqa: F401, I001  (first: its thread policy, before numpy loads BLAS)
    import numpy as np

    x = np.load(args.input)
    make = {"netdef": worker_netdef, "netdef-plain": worker_netdef_plain,
            "opencv": worker_opencv, "torch": worker_torch}
    t0 = time.perf_counter()
    forward, version = make[args.worker](args, x)
    load_rss = peak_rss_mib()
    forward_rss_only = reset_peak_rss()
    out = np.array(forward(), np.float32)
    first = time.perf_counter() - t0
    cpu0 = time.process_time()
    median, best = timed(forward, args.warmup, args.runs)
    cpu = (time.process_time() - cpu0) * 1000 / max(args.warmup + args.runs, 1)
    np.save(args.result, out.reshape(out.shape[0], -1))
    peak = peak_rss_mib()
    return {"median_ms": median, "min_ms": best, "cpu_ms": cpu, "load_and_first_s": first,
            "peak_rss_mib": max(peak, load_rss), "load_peak_rss_mib": load_rss,
            "forward_peak_rss_mib": peak if forward_rss_only else None, "version": version}


def reset_peak_rss():
    """Restart the peak-RSS count (Linux: "5" into clear_refs), so that the forwards' own
    peak can be told from the load's; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib():
    """This process's peak resident memory (the whole run: libraries, net, forwards).

    Linux's VmHWM belongs to this program's address space; ``ru_maxrss`` would also
    count the parent's peak, which a forked child inherits across exec."""
    import resource

    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


def spawn(framework, folder, output, weights, inp, result, args):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--net", folder,
           "--output", output, "--weights", weights, "--input", inp, "--result", result,
           "--runs", str(args.runs), "--warmup", str(args.warmup),
           "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------- main

def machine_info(threads):
    import numpy as np

    info = {"cpus": os.cpu_count(), "threads": threads, "numpy": np.__version__}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        pass
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        pass
    try:
        info["load average"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="timed forwards (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed forwards first")
    ap.add_argument("--rounds", type=int, default=5,
                    help="each framework is timed this often, in turns (the machine drifts; "
                         "batch-1 rounds ranged over +-20%% on one machine, so five)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", help="comma-separated zoo folders (default: all cases)")
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    ap.add_argument("--json", help="also write the results here")
    for hidden in ("--worker", "--net", "--output", "--weights", "--input", "--result"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0

    import numpy as np

    print("== machine ==")
    for k, v in machine_info(args.threads).items():
        print(f"  {k}: {v}")
    frameworks = [f for f in args.frameworks.split(",") if f]
    cases = [c for c in CASES if not args.only or c[1] in args.only.split(",")]
    print(f"\n== forward time, median of {args.runs} after {args.warmup} warm-up; median of "
          f"{args.rounds} rounds, the frameworks taking turns (ms) ==")
    print(f"  {'net':14s} {'batch':>5s} " + " ".join(f"{f:>10s}" for f in frameworks)
          + "   netdef / faster peer   peer output max |diff| vs netdef")
    results = []
    versions = {}
    with tempfile.TemporaryDirectory() as work:
        weights = {}
        for label, folder, batch, output in cases:
            if folder not in weights:
                weights[folder] = prepare(folder, work)
            inp = os.path.join(work, f"{folder}_{batch}_input.npy")
            np.save(inp, input_array(folder, batch))
            row = {"net": label, "batch": batch}
            outs = {}
            rounds = []
            for _ in range(args.rounds):        # the frameworks take turns, round by round
                rounds.append({})
                for fw in frameworks:
                    res_path = os.path.join(work, f"{fw}_{folder}_{batch}.npy")
                    res = spawn(fw, folder, output, weights[folder], inp, res_path, args)
                    rounds[-1][fw] = res
                    if "error" not in res and fw not in outs:
                        versions[fw] = res["version"]
                        outs[fw] = np.load(res_path)
            for fw in frameworks:
                row[fw] = combine_rounds([r[fw] for r in rounds])
            row["round_ratios"] = [ratio_to_faster_peer(r, frameworks)[1] for r in rounds]
            results.append(row)
            print("  " + format_row(row, frameworks, outs))
    print("\n== peak resident memory of each worker process, MiB: whole run (load | forwards) ==")
    print(f"  {'net':14s} {'batch':>5s} " + " ".join(f"{f:>18s}" for f in frameworks))
    for row in results:
        print(f"  {row['net']:14s} {row['batch']:5d} "
              + " ".join(format_rss(row[fw]) for fw in frameworks))
    print("\n  " + "; ".join(versions.values()))
    for row in results:
        for fw in frameworks:
            if "error" in row[fw]:
                print(f"  {row['net']} b{row['batch']} {fw}: not measured ({row[fw]['error']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_info(args.threads), "results": results}, f, indent=1)
    return 0


def format_rss(res):
    if "error" in res:
        return f"{'-':>18s}"
    fwd = res.get("forward_peak_rss_mib")
    fwd = f"{fwd:.0f}" if fwd is not None else "?"
    return f"{res['peak_rss_mib']:6.0f} ({res['load_peak_rss_mib']:.0f} | {fwd})".rjust(18)


def combine_rounds(results):
    """One framework's rounds as one result: the first round's details, the median of the
    rounds' medians, and each round's median."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[0]
    times = [r["median_ms"] for r in ok]
    return dict(ok[0], median_ms=float(statistics.median(times)), round_ms=times)


def ratio_to_faster_peer(results, frameworks):
    """(faster peer, netdef's time / the faster peer's) for one round, or (None, None)."""
    peers = {fw: results[fw]["median_ms"] for fw in frameworks
             if not fw.startswith("netdef") and "error" not in results[fw]}
    if "error" in results.get("netdef", {"error": 1}) or not peers:
        return None, None
    best = min(peers, key=peers.get)
    return best, results["netdef"]["median_ms"] / peers[best]


def format_row(row, frameworks, outs):
    cells = []
    for fw in frameworks:
        res = row[fw]
        cells.append(f"{res['median_ms']:10.2f}" if "error" not in res else f"{'-':>10s}")
    text = f"{row['net']:14s} {row['batch']:5d} " + " ".join(cells)
    best, _ = ratio_to_faster_peer(row, frameworks)
    ratios = [r for r in row.get("round_ratios", []) if r is not None]
    if best is not None and ratios:
        ratio = float(statistics.median(ratios))
        row["ratio_to_faster_peer"] = {"peer": best, "ratio": ratio,
                                       "range": [min(ratios), max(ratios)]}
        text += f"   {ratio:6.2f}x ({best:6s}; rounds {min(ratios):.2f}-{max(ratios):.2f})"
    if "netdef" in outs:
        diffs = [f"{fw} {float(abs(outs[fw] - outs['netdef']).max()):.1e}"
                 for fw in outs if fw != "netdef"]
        text += "      " + ", ".join(diffs)
    return text


if __name__ == "__main__":
    sys.exit(main())
