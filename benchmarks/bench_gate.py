"""Where a parallel loop starts paying: the measurement behind ``kernels/gate.PARALLEL_MIN``.

Times one memory-bound glue pass (the bias + ReLU output pass of a convolution,
``add_channel_bias``) on one numba thread and on all of them, at sizes around the
threshold, with a small GEMM before every call as in a net's forward (so numba's
passively waiting workers have gone to sleep, as they have there).  The kernel is called
with numba's thread count set from Python, which overrides the gate in both directions:
above ``PARALLEL_MIN`` the one-thread column is what the gate would have refused, below
it the all-threads column.  The sizes and rounds interleave; each cell is a median.

    python benchmarks/bench_gate.py [--rounds 200]
"""

import argparse
import statistics
import time

SIZES = (1 << 16, 1 << 18, 1 << 19, 1 << 20, 1 << 21, 1 << 22)
CHANNELS = 64


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    import netdef  # noqa: F401, I001  (first: its thread policy, before numpy loads BLAS)
    import numba
    import numpy as np
    from netdef.kernels import conv as KC
    from netdef.kernels.gate import PARALLEL_MIN

    threads = numba.get_num_threads()
    gemm = np.ones((256, 256), np.float32)
    gemm_out = np.empty_like(gemm)
    arrays = {n: np.random.default_rng(0).standard_normal((1, CHANNELS, n // CHANNELS),
                                                          dtype=np.float32) for n in SIZES}
    bias = np.zeros(CHANNELS, np.float32)
    times = {}
    for _ in range(args.rounds):
        for n in SIZES:
            for count in sorted({1, threads}):
                np.matmul(gemm, gemm, out=gemm_out)
                numba.set_num_threads(count)
                start = time.perf_counter()
                KC.add_channel_bias(arrays[n], bias, True, 0.0)
                times.setdefault((n, count), []).append(time.perf_counter() - start)
                numba.set_num_threads(threads)
    print(f"bias + ReLU pass, {args.rounds} interleaved rounds, median us "
          f"(PARALLEL_MIN = {PARALLEL_MIN} floats of work = 2 x elements)")
    print(f"  {'elements':>9s} {'1 thread':>9s} {f'{threads} threads':>10s}  gate picks")
    for n in SIZES:
        one = statistics.median(times[(n, 1)]) * 1e6
        many = statistics.median(times[(n, threads)]) * 1e6
        pick = "parallel" if 2 * n >= PARALLEL_MIN else "one thread"
        print(f"  {n:9d} {one:9.1f} {many:10.1f}  {pick}")


if __name__ == "__main__":
    main()
