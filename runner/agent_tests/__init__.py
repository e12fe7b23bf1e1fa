"""``agentrun test``: test files next to the specs, run against scripted replies or a cassette.

Read in this order: :mod:`.load` (finding and checking test files), :mod:`.runs` (one run
in a copied workdir, and the expectations), :mod:`.report` (lines, diffs, JUnit XML).
Imports nothing heavy until a test runs.
"""

from __future__ import annotations

from .load import AgentTest, Reply, find_test_files, load_test_file
from .runs import Failure, TestResult, run_test

__all__ = [
    "AgentTest",
    "Failure",
    "Reply",
    "TestResult",
    "find_test_files",
    "load_test_file",
    "run_test",
]
