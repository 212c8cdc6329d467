"""Every golden layer case made by the reference Caffe replays through our Net."""

import glob
import os

import pytest

from tests.conformance import replay
from tests.shared import CONFORMANCE

CASES = sorted(glob.glob(os.path.join(CONFORMANCE, "layers", "*.npz")))
# exp/log chains and long reductions get Caffe's looser round-off budget
LOOSE = ("exp", "log", "lrn", "mvn", "batchnorm", "lstm", "rnn", "sigmoid_cross", "softmax",
         "infogain", "multinomial", "swish", "elu", "bnll", "power", "contrastive", "spp")


@pytest.mark.skipif(not CASES, reason="shared conformance cases not present")
@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-4] for p in CASES])
def test_golden_case(path):
    name = os.path.basename(path)
    rtol = 2e-4 if name.startswith(LOOSE) else 1e-4
    problems = replay(path, rtol=rtol)
    assert not problems, "\n".join(problems)
