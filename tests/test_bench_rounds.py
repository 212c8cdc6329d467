"""bench_inference's round arithmetic: medians over rounds and the per-round ratio."""

import pytest

from benchmarks.bench_inference import combine_rounds, format_row, ratio_to_faster_peer

FRAMEWORKS = ("netdef", "opencv", "torch")


def result(ms, **extra):
    return dict({"median_ms": ms, "version": "v", "peak_rss_mib": 1.0}, **extra)


def test_combine_rounds_takes_the_median_of_the_measured_rounds():
    rounds = [result(30.0, first=True), {"error": "crashed"}, result(10.0), result(20.0)]
    combined = combine_rounds(rounds)
    assert combined["median_ms"] == 20.0
    assert combined["round_ms"] == [30.0, 10.0, 20.0]
    assert combined["first"] is True                # details come from the first round
    assert combine_rounds([{"error": "x"}, {"error": "y"}]) == {"error": "x"}


def test_ratio_is_against_the_faster_peer_of_that_round():
    one = {"netdef": result(9.0), "opencv": result(10.0), "torch": result(12.0)}
    assert ratio_to_faster_peer(one, FRAMEWORKS) == ("opencv", pytest.approx(0.9))
    one["opencv"] = {"error": "not installed"}
    assert ratio_to_faster_peer(one, FRAMEWORKS) == ("torch", pytest.approx(0.75))
    one["netdef"] = {"error": "failed"}
    assert ratio_to_faster_peer(one, FRAMEWORKS) == (None, None)


def test_row_reports_the_median_round_ratio_and_its_range():
    rounds = [{"netdef": result(a), "opencv": result(b), "torch": result(50.0)}
              for a, b in ((10.0, 20.0), (12.0, 10.0), (11.0, 11.0))]
    row = {"net": "N", "batch": 1}
    for fw in FRAMEWORKS:
        row[fw] = combine_rounds([r[fw] for r in rounds])
    row["round_ratios"] = [ratio_to_faster_peer(r, FRAMEWORKS)[1] for r in rounds]
    text = format_row(row, FRAMEWORKS, {})
    assert row["ratio_to_faster_peer"] == {"peer": "opencv", "ratio": 1.0,
                                           "range": [0.5, 1.2]}
    assert "1.00x (opencv; rounds 0.50-1.20)" in text
