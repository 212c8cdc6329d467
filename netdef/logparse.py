"""Training logs -> rows of train and test outputs, as Caffe's tools/extra/parse_log.py.

Reads Caffe's glog output and ours (same line shapes).  Two line prefixes are accepted:
the classic ``I1123 12:00:00.123456 ...`` (month and day; the year is taken from the log
file's date, rolling over when the month goes backwards) and ``I20261123 12:00:00.123456``
(newer glog, with the year).  Rows and CSV files follow Caffe's script: columns
``NumIters, Seconds, LearningRate`` then one per net output in order of appearance;
``Seconds`` counts from the line that says ``Solving``; ``LearningRate`` is the latest
``lr = `` seen (the first row borrows the second's); files ``<log>.train`` and
``<log>.test`` in the output folder, written with Python's csv module (``excel`` dialect).
One difference: a log's only row of a kind (a short run's single test) is kept, where
Caffe's script drops it.
"""

import csv
import datetime
import os
import re
from collections import OrderedDict

from .atomic import atomic_write
from .errors import DataError

_ITERATION = re.compile(r"Iteration (\d+)")
_TRAIN_OUTPUT = re.compile(r"Train net output #(\d+): (\S+) = ([.\deE+-]+)")
_TEST_OUTPUT = re.compile(r"Test net output #(\d+): (\S+) = ([.\deE+-]+)")
_LEARNING_RATE = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")
_PREFIX = re.compile(r"^[IWEF](\d{8}|\d{4}) (\d\d):(\d\d):(\d\d)\.(\d{1,6})\b")


def line_time(line, year):
    """The line's datetime and whether its prefix carried the year; ValueError if none."""
    m = _PREFIX.match(line.strip())
    if not m:
        raise ValueError("no glog prefix")
    date = m.group(1)
    if len(date) == 8:
        year, month, day = int(date[:4]), int(date[4:6]), int(date[6:])
        with_year = True
    else:
        month, day = int(date[:2]), int(date[2:])
        with_year = False
    hour, minute, second = int(m.group(2)), int(m.group(3)), int(m.group(4))
    micro = int(m.group(5).ljust(6, "0"))
    return datetime.datetime(year, month, day, hour, minute, second, micro), with_year


def log_year(path):
    """The year a classic (year-less) log was written: its file's modification year."""
    return datetime.datetime.fromtimestamp(os.path.getmtime(path)).year


def _start_time(lines, year):
    """Time of the ``Solving`` line (Caffe's reference point), else of the first line."""
    first = None
    for line in lines:
        try:
            t, _ = line_time(line, year)
        except ValueError:
            continue
        if first is None:
            first = t
        if "Solving" in line:
            return t
    return first


def parse_log(path):
    """(train rows, test rows): lists of OrderedDicts as Caffe's parse_log.parse_log."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError as exc:
        raise DataError(f"cannot read log {path}: {exc.strerror}") from None
    year = log_year(path)
    start = _start_time(lines, year)
    last = start
    iteration = -1
    learning_rate = float("nan")
    train, test = [], []
    train_row = test_row = None
    for line in lines:
        m = _ITERATION.search(line)
        if m:
            iteration = float(m.group(1))
        if iteration == -1:
            continue  # nothing counts before the first iteration
        try:
            t, with_year = line_time(line, year)
        except ValueError:
            continue  # continuation lines, or a malformed prefix
        if not with_year and last is not None and t.month < last.month:
            year += 1  # a classic log running over New Year
            t, _ = line_time(line, year)
        last = t
        seconds = (t - start).total_seconds()
        m = _LEARNING_RATE.search(line)
        if m:
            learning_rate = float(m.group(1))
        train_row = _net_output(_TRAIN_OUTPUT, line, train_row, train, iteration, seconds,
                                learning_rate)
        test_row = _net_output(_TEST_OUTPUT, line, test_row, test, iteration, seconds,
                               learning_rate)
    # Caffe's script drops a pending row at the end; keep it when it is the only one (a
    # short run's single test), where dropping it would leave no row at all.
    for rows, pending in ((train, train_row), (test, test_row)):
        if pending and not rows:
            rows.append(pending)
    for rows in (train, test):
        if len(rows) > 1:
            rows[0]["LearningRate"] = rows[1]["LearningRate"]
    return train, test


def _net_output(regex, line, row, rows, iteration, seconds, learning_rate):
    """Caffe's rule: start a row per iteration; a row is complete once it has as many
    columns as the first complete row (so the first row is pushed when the next starts)."""
    m = regex.search(line)
    if m:
        if not row or row["NumIters"] != iteration:
            if row:
                rows.append(row)
            row = OrderedDict([("NumIters", iteration), ("Seconds", seconds),
                               ("LearningRate", learning_rate)])
        row[m.group(2)] = float(m.group(3))
    if row and rows and len(row) == len(rows[0]):
        rows.append(row)
        row = None
    return row


def write_csv(path, rows, delimiter=","):
    """One CSV file (header from the first row); nothing is written for no rows."""
    if not rows:
        return False
    with atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()), dialect="excel",
                                delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return True


def save_csv_files(log_path, output_dir, train, test, delimiter=","):
    """``<output_dir>/<log name>.train`` and ``.test``; returns the paths written."""
    os.makedirs(output_dir, exist_ok=True)
    base = os.path.join(output_dir, os.path.basename(log_path))
    written = []
    for suffix, rows in ((".train", train), (".test", test)):
        if write_csv(base + suffix, rows, delimiter):
            written.append(base + suffix)
    return written


def plot_log(train, test, out_path, title=None):
    """Loss, accuracy and learning rate against iterations and seconds, as one image."""
    try:
        import matplotlib
    except ImportError:
        raise DataError("plotting needs matplotlib, which is not installed: "
                        "pip install 'netdef[plot]' (or pip install matplotlib); "
                        "`netdef parse_log` writes the same numbers as CSV") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(12, 10), sharex="col")
    panels = (("loss", lambda k: "loss" in k.lower()),
              ("accuracy", lambda k: "acc" in k.lower()),
              ("learning rate", lambda k: k == "LearningRate"))
    for col, xkey in enumerate(("NumIters", "Seconds")):
        for row, (label, wanted) in enumerate(panels):
            ax = axes[row][col]
            for phase, rows in (("train", train), ("test", test)):
                if not rows:
                    continue
                keys = [k for k in rows[0] if wanted(k)]
                if label == "learning rate" and phase == "test":
                    continue
                for key in keys:
                    xs = [r[xkey] for r in rows if key in r]
                    ys = [r[key] for r in rows if key in r]
                    name = phase if key == "LearningRate" else f"{phase} {key}"
                    ax.plot(xs, ys, label=name, marker="." if len(xs) < 50 else None)
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small")
        axes[2][col].set_xlabel("iterations" if xkey == "NumIters" else "seconds")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    ext = os.path.splitext(out_path)[1].lstrip(".").lower() or "png"
    with atomic_write(out_path) as f:
        fig.savefig(f, format=ext)
    plt.close(fig)
    return out_path
