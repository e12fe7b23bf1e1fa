"""Test files (``agents/tests/*.yaml``): found, parsed with positions, checked against their schema.

A test file names one spec (relative to the file) and a list of tests, each with inputs,
scripted model replies or a cassette (recorded model traffic, :mod:`runner.models.cassette`)
and expectations. The format is ``schemas/agent-test.schema.json``;
problems are :class:`~runner.errors.Diagnostic` errors at the file's own line and column,
worded by the spec loader's validation helpers (:mod:`runner.spec.validation`).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Diagnostic, SpecError

if TYPE_CHECKING:
    from ..spec.yamlpos import Located

#: Largest test file read, in bytes.
MAX_TEST_FILE_BYTES = 1_000_000


@dataclass(frozen=True)
class Reply:
    """One scripted model reply: text, or tool calls as ``(name, arguments)`` pairs."""

    content: str | None = None
    tool_calls: tuple[tuple[str, dict[str, Any] | str], ...] = ()


@dataclass(frozen=True)
class AgentTest:
    """One test of a test file.

    Attributes:
        name: what the test shows (unique in its file).
        file: the test file, as named by the user.
        line: the line of the test's ``name`` in the file (for reports).
        spec_path: the spec file, resolved against the test file's folder.
        inputs: the spec's inputs.
        env: environment variables set while the test runs.
        workdir: a folder copied as the run's workdir instead of the spec's, or None.
        setup: commands (split like a shell, run without one) in the workdir copy first.
        requires_commands, requires_files: what must exist, or the test is skipped.
        approve, deny: tool-name globs whose "ask" calls are approved or denied.
        replies: the scripted model replies, in order (empty with a cassette or ``live``).
        expect: the expectations, as written (see the schema's ``expect``).
        cassette: a cassette file replayed instead of scripted replies, resolved against
            the test file's folder, or None.
        live: ``model: live``: the spec's own model answers (a real model), and the test
            runs only when asked for (``agentrun test --live``).
    """

    name: str
    file: str
    line: int
    spec_path: Path
    replies: tuple[Reply, ...]
    expect: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    setup: tuple[str, ...] = ()
    requires_commands: tuple[str, ...] = ()
    requires_files: tuple[str, ...] = ()
    approve: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    cassette: Path | None = None
    live: bool = False

    @property
    def test_id(self) -> str:
        """``FILE::NAME``, as pytest names a test."""
        return f"{self.file}::{self.name}"


def schema_path() -> Path:
    """The test-file schema: inside the installed package, else in the source tree.

    Raises:
        FileNotFoundError: when neither exists (a broken installation).
    """
    package = Path(__file__).resolve().parent.parent
    for candidate in (
        package / "schemas" / "agent-test.schema.json",
        package.parent / "schemas" / "agent-test.schema.json",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("agent-test.schema.json is missing from this installation")


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_path().read_text(encoding="utf-8")))


def find_test_files(paths: list[Path]) -> list[Path]:
    """The test files named by ``paths``: files as given, folders searched for ``*.yaml``.

    A folder with a ``tests/`` subfolder (``agents/``) means that subfolder's files; any
    other folder means its own ``*.yaml`` and ``*.yml`` files. Sorted, each once.

    Raises:
        SpecError: a path that does not exist (one located error, exit code 2).
    """
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise SpecError.single(path, "no such test file or folder", "check the path")
        if path.is_file():
            found.append(path)
            continue
        folder = path / "tests" if (path / "tests").is_dir() else path
        found.extend(sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]))
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def load_test_file(path: Path) -> list[AgentTest]:
    """Parse and check one test file.

    Returns:
        Its tests, in file order.

    Raises:
        SpecError: every problem at once, each at the file's line and column.
    """
    from ..spec import yamlpos
    from ..spec.validation import located_errors, rewrite

    shown = str(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise SpecError.single(shown, f"cannot read the test file: {error.strerror}") from None
    if len(raw) > MAX_TEST_FILE_BYTES:
        raise SpecError.single(shown, f"test file is larger than {MAX_TEST_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as undecodable:
        raise SpecError.single(
            shown, f"test file is not UTF-8 text (byte {undecodable.start})"
        ) from None
    located, diagnostics = yamlpos.parse(text, shown)
    if located is None or diagnostics:
        raise SpecError(diagnostics or [Diagnostic(shown, 1, 1, "the test file is empty")])
    if not isinstance(located.value, dict):
        raise SpecError(
            [
                located.diagnostic(
                    shown,
                    located.value_pos(()),
                    "a test file must be a mapping with 'spec' and 'tests'",
                    "start with 'spec: ../NAME.yaml' and 'tests:'",
                )
            ]
        )
    found: dict[tuple[int, int], Diagnostic] = {}
    for raw_error in _validator().iter_errors(located.value):
        for schema_error in located_errors(raw_error):
            for _, diagnostic in rewrite(located, shown, schema_error):
                found.setdefault((diagnostic.line, diagnostic.column), diagnostic)
    document: dict[str, Any] = located.value
    if not found:
        for diagnostic in _semantic_problems(located, shown, path.parent, document):
            found.setdefault((diagnostic.line, diagnostic.column), diagnostic)
    if found:
        raise SpecError(sorted(found.values(), key=lambda d: (d.line, d.column)))
    return [
        _test(shown, path.parent, located.value_pos(("tests", i, "name")).line, t, document)
        for i, t in enumerate(document["tests"])
    ]


def _semantic_problems(
    located: Located, shown: str, folder: Path, document: dict[str, Any]
) -> list[Diagnostic]:
    """What the schema cannot say: the spec file exists, names are unique, regexes compile.

    A test's cassette must load too (it is checked here, before any test runs).
    """
    problems = []
    if not (folder / document["spec"]).is_file():
        problems.append(
            located.diagnostic(
                shown,
                located.value_pos(("spec",)),
                f"spec file {document['spec']!r} not found",
                "the path is relative to this test file",
            )
        )
    seen: set[str] = set()
    for index, test in enumerate(document["tests"]):
        where = ("tests", index)
        if test["name"] in seen:
            problems.append(
                located.diagnostic(
                    shown,
                    located.value_pos((*where, "name")),
                    f"test name {test['name']!r} is used twice in this file",
                    "give each test its own name",
                )
            )
        seen.add(test["name"])
        if "cassette" in test:
            problem = _cassette_problem(folder / test["cassette"])
            if problem:
                pos = located.value_pos((*where, "cassette"))
                problems.append(
                    located.diagnostic(
                        shown, pos, problem, "the path is relative to this test file"
                    )
                )
        patterns: list[tuple[tuple[str, ...], Any]] = [
            (("answer", "matches"), test["expect"].get("answer", {}).get("matches"))
        ]
        patterns += [
            (("files", name, "matches"), checks.get("matches"))
            for name, checks in test["expect"].get("files", {}).items()
        ]
        for subpath, pattern in patterns:
            problem = _regex_problem(pattern)
            if problem:
                pos = located.value_pos((*where, "expect", *subpath))
                problems.append(located.diagnostic(shown, pos, problem))
    return problems


def _cassette_problem(path: Path) -> str:
    """What is wrong with the cassette at ``path``, or ``""`` when it loads."""
    from ..models.cassette_file import CassetteInvalid, load_cassette

    try:
        load_cassette(path)
    except CassetteInvalid as error:
        return str(error)
    return ""


def _regex_problem(pattern: str | None) -> str:
    if pattern is None:
        return ""
    try:
        re.compile(pattern)
    except re.error as error:
        return f"invalid regular expression {pattern!r}: {error}"
    return ""


def _reply(item: dict[str, Any]) -> Reply:
    if "text" in item:
        return Reply(content=item["text"])
    pairs = [item["call"]] if "call" in item else item["calls"]
    calls = tuple((name, arguments) for pair in pairs for name, arguments in pair.items())
    return Reply(content=item.get("content"), tool_calls=calls)


def _test(
    file: str, folder: Path, line: int, data: dict[str, Any], document: dict[str, Any]
) -> AgentTest:
    requires = data.get("requires", {})
    return AgentTest(
        name=data["name"],
        file=file,
        line=line,
        spec_path=(folder / document["spec"]).resolve(),
        replies=tuple(_reply(item) for item in _script(data.get("model", ()))),
        expect=data["expect"],
        inputs=data.get("inputs", {}),
        env=data.get("env", {}),
        workdir=(folder / data["workdir"]).resolve() if "workdir" in data else None,
        setup=tuple(data.get("setup", ())),
        requires_commands=tuple(requires.get("commands", ())),
        requires_files=tuple(requires.get("files", ())),
        approve=tuple(data.get("approve", ())),
        deny=tuple(data.get("deny", ())),
        cassette=(folder / data["cassette"]).resolve() if "cassette" in data else None,
        live=data.get("model") == "live",
    )


def _script(model: list[dict[str, Any]] | str) -> list[dict[str, Any]]:
    """The scripted replies of a test's ``model``; none for ``live``."""
    return [] if isinstance(model, str) else model
