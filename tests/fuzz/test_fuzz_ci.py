"""A few hundred seeded fuzz cases per CI run: every one ends in success or one clear error.

``make fuzz`` runs the same families at >= 2,000 cases.  On a failure the assertion
shows the command, the outcome and the end of stderr; re-run one case with
``python -m tests.fuzz --seed 7 --count 260 --case N``.
"""

import functools

import pytest

from . import corpus, runner

SEED = 7
COUNT = 260

pytestmark = pytest.mark.skipif(not corpus.available(), reason="real seed files not present")


@functools.lru_cache(maxsize=1)
def _cases():
    return corpus.build_cases(COUNT, SEED)


@pytest.mark.parametrize("family", sorted(corpus.FAMILIES))
def test_every_case_ends_cleanly(family):
    cases = [c for c in _cases() if c["family"] == family]
    assert cases
    results = runner.run_cases(cases, jobs=1, timeout=60)
    bad = [r for r in results if r["outcome"] in runner.FAILURES]
    assert not bad, runner.format_report(results)


def test_classify():
    one = "I1123 log line\nnetdef: error: x.prototxt:3:5: bad\n"
    assert runner.classify(0, "") == "success"
    assert runner.classify(1, one) == "clean_error"
    assert runner.classify(2, one) == "clean_error"
    assert runner.classify(1, one + one) == "unclear"
    assert runner.classify(1, "Traceback (most recent call last):\n" + one) == "traceback"
    assert runner.classify(3, one) == "unclear"
    assert runner.classify(-11, "") == "crash"
    assert runner.classify(None, "") == "hang"


def test_cases_are_seeded():
    a = corpus.build_cases(20, 3)
    b = corpus.build_cases(20, 3)
    assert [c["argv"] for c in a] == [c["argv"] for c in b]
    assert [sorted(c["files"]) for c in a] == [sorted(c["files"]) for c in b]
