"""The local model's thread count (issue 18): every CPU this process may run on, not 2.

``n_threads=2`` was hard-coded: half of a 4-core machine unused, and two runs on a 2-core one
each spinning two threads. The count comes from ``os.sched_getaffinity`` and
``AGENTRUN_LOCAL_THREADS`` overrides it. No model is loaded here.
"""

from __future__ import annotations

import os

import pytest

from runner.errors import SetupError
from runner.models.local import THREADS_VARIABLE, cpu_threads


def test_the_default_is_the_cpus_this_process_may_run_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 5, 7}, raising=False)
    assert cpu_threads({}) == 6


def test_without_affinity_the_cpu_count_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    assert cpu_threads({}) == 12


def test_the_variable_overrides_it() -> None:
    assert THREADS_VARIABLE == "AGENTRUN_LOCAL_THREADS"
    assert cpu_threads({THREADS_VARIABLE: "3"}) == 3


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_value_says_what_is_expected(value: str) -> None:
    with pytest.raises(SetupError) as raised:
        cpu_threads({THREADS_VARIABLE: value})
    assert f"AGENTRUN_LOCAL_THREADS={value!r} is not a positive whole number" in str(raised.value)


def test_the_variable_is_documented() -> None:
    from tests.conftest import ROOT

    assert THREADS_VARIABLE in (ROOT / "docs" / "local-model.md").read_text()
