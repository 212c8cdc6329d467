"""``python -m tests.fuzz [--count N] [--seed S] [--jobs J]``: run and report counts."""

import argparse
import sys
import time

from . import corpus, runner


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="parallel subprocess cases")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    p.add_argument("--family", action="append", help="only these families (repeatable)")
    p.add_argument("--case", type=int, action="append", help="only these case numbers")
    args = p.parse_args(argv)
    if not corpus.available():
        print("fuzz: the real seed files are not available; nothing to do")
        return 0
    cases = corpus.build_cases(args.count, args.seed, args.family)
    if args.case:
        cases = [c for c in cases if c["index"] in args.case]
    start = time.perf_counter()
    results = runner.run_cases(cases, jobs=args.jobs, timeout=args.timeout)
    print(runner.format_report(results))
    failures = sum(r["outcome"] in runner.FAILURES for r in results)
    print(f"\n{len(results)} cases (seed {args.seed}) in {time.perf_counter() - start:.0f} s; "
          f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
