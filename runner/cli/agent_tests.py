"""`agentrun test`: the test files next to the specs, run and reported like pytest."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..agent_tests import AgentTest

from ..errors import Diagnostic, SpecError
from .base import EXIT_ERROR, EXIT_OK, EXIT_USAGE, cli


@cli.command("test")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[PATH]...")
@click.option(
    "--junit-xml",
    "junit_xml",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also write the results as JUnit XML to FILE.",
)
@click.option(
    "-k",
    "keyword",
    metavar="TEXT",
    help="Run only the tests whose FILE::NAME contains TEXT (case-insensitive).",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Run each test N times and report its pass rate.",
)
@click.option(
    "--live",
    is_flag=True,
    help="Also run the `model: live` tests, against the spec's own (real) model.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only failures and the summary.")
def test_command(
    paths: tuple[Path, ...],
    junit_xml: Path | None,
    keyword: str | None,
    repeat: int,
    live: bool,
    quiet: bool,
) -> None:
    """Run agent tests: test files (default agents/tests) with scripted model replies.

    A PATH is a test file or a folder (a folder with a tests/ subfolder means that one).
    Each test runs its spec through the real loop and tools, in a temporary copy of the
    workdir with a temporary AGENTRUN_HOME, then checks what the file expects: stop reason,
    tool calls, decisions, answer, files, steps and cost. A `model: live` test runs the
    spec's real model, only with --live; with --repeat N it reports a pass rate. Exit code 0
    when all pass, 1 when any fails, 2 for a bad test file.
    """
    from ..agent_tests import run_test
    from ..agent_tests.report import pass_rates, result_text, summary, write_junit

    tests = _load_tests(list(paths) or [Path("agents") / "tests"], keyword)
    started = time.monotonic()
    results = []
    for test in tests:
        for _ in range(repeat):
            result = run_test(test, live)
            results.append(result)
            if not quiet or result.outcome in ("failed", "error"):
                note = f" ({result.message})" if result.outcome == "skipped" else ""
                click.echo(f"{test.test_id} {result.outcome.upper()}{note}")
    duration = time.monotonic() - started
    broken = [r for r in results if r.outcome in ("failed", "error")]
    if broken:
        click.echo("\n" + " FAILURES ".center(70, "="))
        for result in broken:
            click.echo(f"\n{'_' * 6} {result.test.test_id} (line {result.test.line}) {'_' * 6}")
            click.echo(result_text(result))
    if repeat > 1:
        click.echo("\npass rates:")
        for test_id, passed, runs in pass_rates(results):
            click.echo(f"  {test_id}: {passed}/{runs} ({100 * passed / runs:.0f}%)")
    if junit_xml is not None:
        write_junit(junit_xml, results, duration)
    click.echo(summary(results, duration))
    sys.exit(EXIT_ERROR if broken else EXIT_OK)


def _load_tests(paths: list[Path], keyword: str | None) -> list[AgentTest]:
    """Every test of the files under ``paths`` whose id contains ``keyword``.

    Exits with code 2 on a bad test file (every problem shown, located) or when no test is
    left.
    """
    from ..agent_tests import find_test_files, load_test_file

    tests: list[AgentTest] = []
    problems: list[Diagnostic] = []
    for file in find_test_files(paths):
        try:
            tests.extend(load_test_file(file))
        except SpecError as bad:
            problems.extend(bad.diagnostics)
    if problems:
        for diagnostic in problems:
            click.echo(diagnostic.render(), err=True)
        sys.exit(EXIT_USAGE)
    if keyword:
        tests = [t for t in tests if keyword.lower() in t.test_id.lower()]
    if not tests:
        click.echo("agentrun: no tests found", err=True)
        sys.exit(EXIT_USAGE)
    return tests
