"""Run fuzz cases against the real command line and sort each ending into one outcome.

Outcomes: ``success`` (exit 0), ``clean_error`` (exit 1 or 2 with exactly one
``netdef: error:`` line and no traceback), and the failures ``traceback``, ``unclear``
(an error exit without exactly one such line), ``crash`` (killed by a signal) and
``hang`` (over the time limit).  Cases whose files could crash a process (C libraries
over mmapped or HDF5 files) run in a subprocess with time and memory limits; the rest
run in this process, which is equivalent for Python code and much faster.
"""

import contextlib
import io
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

OUTCOMES = ["success", "clean_error", "traceback", "unclear", "crash", "hang"]
FAILURES = {"traceback", "unclear", "crash", "hang"}
MEMORY_LIMIT = 4 << 30
ERROR_PREFIX = "netdef: error:"


def classify(returncode, stderr):
    if returncode is None:
        return "hang"
    if returncode < 0:
        return "crash"
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    if returncode == 0:
        return "success"
    errors = [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    if returncode in (1, 2) and len(errors) == 1:
        return "clean_error"
    return "unclear"


def materialize(case, folder):
    """Write the case's files under ``folder``; return its argv with ``{d}`` filled in."""
    d = str(folder)
    for rel, content in case["files"].items():
        path = Path(folder) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
            continue
        if case.get("format_files") and b"{d}" in content:
            content = content.replace(b"{d}", d.encode())
        path.write_bytes(content)
    return [a.replace("{d}", d) for a in case["argv"]]


# -- in this process -----------------------------------------------------------
class _Hang(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


def _vm_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


@contextlib.contextmanager
def _limits(timeout, memory):
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = _vm_bytes() + memory
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    main = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM) if main else ()
    saved = {s: signal.getsignal(s) for s in signals}
    resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    if main:  # the hang alarm needs the main thread; elsewhere only the memory limit holds
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        if main:
            signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        for s, h in saved.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _quiet_logging():
    """Point netdef's log handler at nowhere while a command runs, then put it back."""
    from netdef.log import setup_logging

    logger = logging.getLogger("netdef")
    before = {h: getattr(h, "stream", None) for h in logger.handlers}
    level, propagate = logger.level, logger.propagate
    setup_logging(stream=io.StringIO())
    for h in logger.handlers:
        if getattr(h, "_netdef", False):
            h.setStream(io.StringIO())
    try:
        yield
    finally:
        for h in list(logger.handlers):
            if h not in before:
                logger.removeHandler(h)
            elif before[h] is not None:
                h.setStream(before[h])
        logger.setLevel(level)
        logger.propagate = propagate


def run_inprocess(argv, cwd=None, timeout=60.0, memory=MEMORY_LIMIT):
    """(returncode or None on hang, stderr) of ``netdef.tools.main.main(argv)`` here."""
    import traceback

    from netdef.tools.main import main

    out, err = io.StringIO(), io.StringIO()
    os.environ.pop("NETDEF_DEBUG", None)  # the user's view: no tracebacks on purpose
    here = os.getcwd()
    rc = None
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                _quiet_logging(), _limits(timeout, memory):
            try:
                rc = main(argv)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except _Hang:
        rc = None
    except Exception:  # an escaped exception is what the fuzzer exists to find
        err.write(traceback.format_exc())
        rc = 1
    finally:
        os.chdir(here)
    return rc, err.getvalue()


# -- in a subprocess -----------------------------------------------------------
def _limit_memory(memory):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    return apply


def run_subprocess(argv, cwd=None, timeout=60.0, memory=MEMORY_LIMIT):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1", PYTHONFAULTHANDLER="")
    env.pop("NETDEF_DEBUG", None)
    try:
        proc = subprocess.run([sys.executable, "-m", "netdef.tools.main", *argv], cwd=cwd,
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout,
                              preexec_fn=_limit_memory(memory))
    except subprocess.TimeoutExpired as exc:
        return None, (exc.stderr or b"").decode(errors="replace")
    return proc.returncode, proc.stderr.decode(errors="replace")


# -- a batch -----------------------------------------------------------------
def run_case(case, timeout=60.0, memory=MEMORY_LIMIT, force_subprocess=False):
    """Run one case; returns a result dict (outcome, returncode, stderr tail, argv)."""
    with tempfile.TemporaryDirectory(prefix="netdef-fuzz-") as folder:
        argv = materialize(case, folder)
        cwd = folder if case.get("chdir") else None
        isolate = case.get("isolate") or force_subprocess
        runner = run_subprocess if isolate else run_inprocess
        rc, stderr = runner(argv, cwd=cwd, timeout=timeout, memory=memory)
    return {"family": case["family"], "index": case["index"], "argv": case["argv"],
            "outcome": classify(rc, stderr), "returncode": rc,
            "stderr": stderr[-3000:], "isolated": bool(isolate)}


def run_cases(cases, jobs=1, timeout=60.0, memory=MEMORY_LIMIT):
    """Subprocess cases in ``jobs`` threads while in-process cases run here."""
    isolated = [c for c in cases if c.get("isolate")]
    local = [c for c in cases if not c.get("isolate")]
    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        futures = [pool.submit(run_case, c, timeout, memory) for c in isolated]
        results = [run_case(c, timeout, memory) for c in local]
        results += [f.result() for f in futures]
    return sorted(results, key=lambda r: r["index"])


def tally(results):
    """{family: Counter(outcome)} plus a 'total' row."""
    table = defaultdict(Counter)
    for r in results:
        table[r["family"]][r["outcome"]] += 1
        table["total"][r["outcome"]] += 1
    return table


def format_report(results):
    table = tally(results)
    width = max(len(f) for f in table)
    head = f"{'family':<{width}}  " + "  ".join(f"{o:>11}" for o in OUTCOMES) + "  cases"
    lines = [head, "-" * len(head)]
    for family in sorted(table, key=lambda f: (f == "total", f)):
        row = table[family]
        lines.append(f"{family:<{width}}  " + "  ".join(f"{row[o]:>11}" for o in OUTCOMES)
                     + f"  {sum(row.values()):>5}")
    bad = [r for r in results if r["outcome"] in FAILURES]
    for r in bad[:40]:
        tail = "\n    ".join(r["stderr"].strip().splitlines()[-6:])
        lines.append(f"\n[{r['outcome']}] case {r['index']} ({r['family']}): "
                     f"netdef {' '.join(r['argv'])}\n    {tail}")
    return "\n".join(lines)
