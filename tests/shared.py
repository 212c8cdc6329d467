"""Where the shared real files and golden vectors live, and how tests skip without them."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("NETDEF_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
CONFORMANCE = os.path.join(SHARED, "conformance")
DATA = os.path.join(SHARED, "data")


def need(path):
    """Return ``path``; skip the test with a clear reason when the shared folder is absent."""
    if not os.path.exists(path):
        pytest.skip(f"shared test material not present: {path}")
    return path
