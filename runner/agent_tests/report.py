"""What ``agentrun test`` prints and writes: pytest-like lines, diffs, a summary, JUnit XML.

Failures are shown as a unified diff (:mod:`difflib`) of the expected and the actual value,
each written as indented JSON. The JUnit XML (``testsuite``/``testcase``/``failure``,
``skipped``, ``error``) is the form CI systems read, built with :mod:`xml.etree.ElementTree`.
"""

from __future__ import annotations

import difflib
import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .runs import Failure, TestResult


def _lines(value: Any) -> list[str]:
    if isinstance(value, str) and "\n" in value:
        return value.splitlines()
    return json.dumps(value, indent=2, ensure_ascii=False, default=str).splitlines()


def failure_text(failure: Failure) -> str:
    """One failed expectation: its title and a diff of expected (-) and actual (+)."""
    diff = difflib.unified_diff(
        _lines(failure.expected), _lines(failure.actual), "expected", "actual", lineterm="", n=3
    )
    return f"{failure.what}:\n" + "\n".join(f"    {line}" for line in diff)


def result_text(result: TestResult) -> str:
    """The body of a failed or broken test: every failed expectation, or the error."""
    if result.outcome == "failed":
        return "\n".join(failure_text(f) for f in result.failures)
    return result.message


def summary(results: Sequence[TestResult], duration_s: float) -> str:
    """``N passed, M failed in X s`` (skipped and errors counted when there are any)."""
    counts = {
        o: sum(r.outcome == o for r in results) for o in ("passed", "failed", "skipped", "error")
    }
    parts = [f"{counts['passed']} passed", f"{counts['failed']} failed"]
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} skipped")
    if counts["error"]:
        parts.append(f"{counts['error']} error{'s' if counts['error'] != 1 else ''}")
    return f"{', '.join(parts)} in {duration_s:.2f} s"


def pass_rates(results: Sequence[TestResult]) -> list[tuple[str, int, int]]:
    """``(test id, passed, runs)`` per test, in first-run order (for ``--repeat``)."""
    rates: dict[str, list[int]] = {}
    for result in results:
        if result.outcome == "skipped":
            continue
        counted = rates.setdefault(result.test.test_id, [0, 0])
        counted[0] += result.outcome == "passed"
        counted[1] += 1
    return [(test_id, passed, runs) for test_id, (passed, runs) in rates.items()]


def write_junit(path: Path, results: Sequence[TestResult], duration_s: float) -> None:
    """Write ``results`` as one JUnit ``testsuite`` named ``agentrun`` to ``path``.

    Raises:
        OSError: the file cannot be written.
    """
    suite = ElementTree.Element(
        "testsuite",
        name="agentrun",
        tests=str(len(results)),
        failures=str(sum(r.outcome == "failed" for r in results)),
        errors=str(sum(r.outcome == "error" for r in results)),
        skipped=str(sum(r.outcome == "skipped" for r in results)),
        time=f"{duration_s:.3f}",
    )
    for result in results:
        case = ElementTree.SubElement(
            suite,
            "testcase",
            classname=result.test.file,
            name=result.test.name,
            file=result.test.file,
            line=str(result.test.line),
            time=f"{result.duration_s:.3f}",
        )
        if result.outcome == "failed":
            first = result.failures[0]
            element = ElementTree.SubElement(
                case,
                "failure",
                message=f"{first.what}: expected {first.expected!r}, got {first.actual!r}"[:500],
            )
            element.text = result_text(result)
        elif result.outcome == "error":
            ElementTree.SubElement(
                case, "error", message=result.message[:500]
            ).text = result.message
        elif result.outcome == "skipped":
            ElementTree.SubElement(case, "skipped", message=result.message)
    root = ElementTree.Element("testsuites")
    root.append(suite)
    tree = ElementTree.ElementTree(root)
    ElementTree.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
