"""The broken-spec corpus: every error at its exact line and column, in plain words.

Each file in ``tests/spec_corpus/`` starts with comment lines; every ``# expect: L:C: text``
line is one diagnostic the loader must report, in order, where ``text`` is
``Diagnostic.headline()`` without the ``path:`` prefix (so warnings read
``L:C: warning: ...``). A file whose expectations are all warnings is a valid spec.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.errors import Diagnostic, SpecError
from runner.spec import check_spec, load_spec

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "spec_corpus"
CORPUS_FILES = sorted(CORPUS.glob("*.yaml"))
AGENT_FILES = sorted([*(ROOT / "agents").glob("*.yaml"), *(ROOT / "agents").glob("*.yml")])
EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.*)$")
#: The key variables the corpus's models read (openai/...): set where `validate` runs.
KEY_VARIABLES_OF_THE_CORPUS = ("OPENAI_API_KEY",)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def expectations(path: Path) -> list[str]:
    """The ``L:C: text`` lines of the file's leading comment block."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        match = EXPECT.match(line)
        if match:
            found.append(f"{match.group(1)}:{match.group(2)}: {match.group(3)}")
    return found


def reported(diagnostics: list[Diagnostic]) -> list[str]:
    return [d.headline().removeprefix(f"{d.path}:") for d in diagnostics]


def has_errors(expected: list[str]) -> bool:
    return any(not re.match(r"^\d+:\d+: warning: ", e) for e in expected)


def caret_block(line: int, column: int, source: str) -> str:
    """What ``Diagnostic.render()`` must show under the headline: the line and a caret."""
    shown = CONTROL.sub("\ufffd", source).expandtabs(1)
    return f"{line:>5} | {shown}\n      | {' ' * (column - 1)}^"


def file_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def corpus_id(path: Path) -> str:
    return path.stem


# ---------------------------------------------------------------------------------------------
# the corpus itself


def test_corpus_is_large_and_every_file_states_its_errors() -> None:
    assert len(CORPUS_FILES) >= 45
    for path in CORPUS_FILES:
        assert expectations(path), f"{path.name} has no '# expect:' line"
    assert sum(has_errors(expectations(p)) for p in CORPUS_FILES) >= 45


@pytest.mark.parametrize("path", CORPUS_FILES, ids=corpus_id)
def test_corpus_file_reports_exactly_the_expected_diagnostics(path: Path) -> None:
    expected = expectations(path)
    spec, diagnostics = check_spec(path)
    assert reported(diagnostics) == expected
    assert (spec is None) == has_errors(expected)
    # File order, and every diagnostic points at a real line with that line's text attached.
    assert diagnostics == sorted(diagnostics, key=lambda d: (d.line, d.column))
    lines = file_lines(path)
    for diagnostic in diagnostics:
        assert diagnostic.line >= 1
        assert diagnostic.column >= 1
        assert diagnostic.path == str(path)
        if lines:
            assert diagnostic.line <= len(lines)
            source = lines[diagnostic.line - 1]
            assert diagnostic.source_line == CONTROL.sub("\ufffd", source)
            assert diagnostic.column <= len(source) + 1


@pytest.mark.parametrize("path", CORPUS_FILES, ids=corpus_id)
def test_cli_validate_shows_each_error_with_its_line_and_a_caret(path: Path) -> None:
    expected = expectations(path)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == (2 if has_errors(expected) else 0), result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    assert "Traceback" not in result.output
    lines = file_lines(path)
    for text in expected:
        line, column, _ = text.split(":", 2)
        assert f"{path}:{text}" in result.output
        if lines and lines[int(line) - 1].strip():
            assert caret_block(int(line), int(column), lines[int(line) - 1]) in result.output


def test_load_spec_raises_one_spec_error_with_every_diagnostic() -> None:
    path = CORPUS / "multiple_errors_file_order.yaml"
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert reported(caught.value.diagnostics) == expectations(path)
    first = expectations(path)[0]
    assert str(caught.value) == f"{path}:{first} (and {len(expectations(path)) - 1} more)"


def test_validate_json_format_gives_line_and_column() -> None:
    path = CORPUS / "multiple_errors_file_order.yaml"
    result = CliRunner().invoke(cli, ["validate", "--format", "json", str(path)])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    [entry] = report["files"]
    assert entry["path"] == str(path)
    assert entry["valid"] is False
    got = [
        f"{d['line']}:{d['column']}: {d['message']}" + (f"; {d['hint']}" if d["hint"] else "")
        for d in entry["diagnostics"]
    ]
    assert got == expectations(path)
    assert all(d["severity"] == "error" for d in entry["diagnostics"])


def test_validate_json_format_for_a_whole_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    # The corpus states what each file alone says: key variables set, so `validate` adds
    # no warning about the shell (those are tested in tests/test_validate_catches.py).
    for name in KEY_VARIABLES_OF_THE_CORPUS:
        monkeypatch.setenv(name, "sk-test-not-a-real-key")
    result = CliRunner().invoke(cli, ["validate", "--format", "json", str(CORPUS)])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    by_path = {Path(f["path"]).name: f for f in report["files"]}
    assert set(by_path) == {p.name for p in CORPUS_FILES}
    for path in CORPUS_FILES:
        entry = by_path[path.name]
        assert entry["valid"] == (not has_errors(expectations(path)))
        positions = [f"{d['line']}:{d['column']}" for d in entry["diagnostics"]]
        assert positions == [e.split(": ", 1)[0] for e in expectations(path)]


# ---------------------------------------------------------------------------------------------
# the real command line, in a subprocess


def _run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_API_KEY") and key != "AGENTRUN_DEBUG"
    }
    env.update({"AGENTRUN_HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "name",
    [
        "unknown_key_top",
        "yaml_bad_escape",
        "tab_indentation",
        "alias_bomb",
        "template_undeclared_input",
        "top_level_empty",
    ],
)
def test_python_m_runner_validate_reports_errors_with_exit_2(name: str, tmp_path: Path) -> None:
    path = CORPUS / f"{name}.yaml"
    relative = path.relative_to(ROOT)
    done = _run_cli("validate", str(relative), home=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    lines = file_lines(path)
    for text in expectations(path):
        line, column, _ = text.split(":", 2)
        assert f"{relative}:{text}" in done.stderr
        if lines and lines[int(line) - 1].strip():
            assert caret_block(int(line), int(column), lines[int(line) - 1]) in done.stderr


def test_python_m_runner_validate_the_whole_corpus_folder(tmp_path: Path) -> None:
    done = _run_cli("validate", str(CORPUS.relative_to(ROOT)), home=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 2
    assert "Traceback" not in output
    assert "unexpected error" not in output
    valid = sum(not has_errors(expectations(p)) for p in CORPUS_FILES)
    assert f"{valid} of {len(CORPUS_FILES)} specs valid" in output


# ---------------------------------------------------------------------------------------------
# behaviours the corpus files cannot show on their own


def _write(tmp_path: Path, text: str, name: str = "spec.yaml", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def test_crlf_line_endings_and_a_byte_order_mark_keep_positions(tmp_path: Path) -> None:
    text = (
        "\ufeffversion: 1\nname: demo\nmodel: local/smollm2\ngoal: Hi.\nbudgets:\n  max_step: 3\n"
    )
    path = _write(tmp_path, text, newline="\r\n")
    _, diagnostics = check_spec(path)
    assert reported(diagnostics) == [
        "6:3: unknown key 'max_step' in 'budgets'; did you mean 'max_steps'?"
    ]
    assert diagnostics[0].source_line == "  max_step: 3"


def test_dates_stay_text_instead_of_becoming_date_objects(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "version: 1\nname: demo\nmodel: local/smollm2\ngoal: Hi.\ndescription: 2024-02-30\n",
    )
    spec, diagnostics = check_spec(path)
    assert diagnostics == []
    assert spec is not None
    assert spec.description == "2024-02-30"


def test_a_spec_with_too_many_values_is_refused_without_blaming_aliases(tmp_path: Path) -> None:
    items = "\n".join(f"  - VAR_{i}" for i in range(21_000))
    path = _write(tmp_path, f"version: 1\nname: demo\nmodel: m\ngoal: Hi.\nenv:\n{items}\n")
    spec, diagnostics = check_spec(path)
    assert spec is None
    [diagnostic] = diagnostics
    assert diagnostic.message == "the spec holds more than 20000 keys and values"
    assert diagnostic.line > 5


def test_errors_inside_an_alias_are_reported_once_at_the_anchor(tmp_path: Path) -> None:
    text = (
        "version: 1\nname: demo\nmodel: local/smollm2\ngoal: Hi.\n"
        "env: &vars [A, A]\n"
        "tools:\n  mcp:\n    one: {command: x, allow: ['*'], env: *vars}\n"
    )
    _, diagnostics = check_spec(_write(tmp_path, text))
    assert reported(diagnostics) == ["5:16: 'env' lists 'A' twice; remove one of them"]


def test_template_errors_in_aliased_and_folded_values_stay_in_the_value(tmp_path: Path) -> None:
    text = (
        "version: 1\nname: demo\nmodel: local/smollm2\n"
        "instructions: >\n  first line\n\n  second {{ oops }\n"
        "goal: Hi.\n"
    )
    _, diagnostics = check_spec(_write(tmp_path, text))
    assert reported(diagnostics) == [
        "7:3: template error in 'instructions': unexpected '}'; "
        "see https://jinja.palletsprojects.com/templates/"
    ]


def test_jinja_globals_are_not_taken_for_undeclared_inputs(tmp_path: Path) -> None:
    text = (
        "version: 1\nname: demo\nmodel: local/smollm2\n"
        'goal: "{% for i in range(3) %}{{ i }}{% endfor %} {{ dict(a=1) }}"\n'
    )
    spec, diagnostics = check_spec(_write(tmp_path, text))
    assert diagnostics == []
    assert spec is not None


def test_rules_on_real_tool_arguments_validate(tmp_path: Path) -> None:
    text = (
        "version: 1\nname: demo\nmodel: local/smollm2\ngoal: Hi.\n"
        "tools:\n  shell: {commands: ['git *']}\n  http_request: {hosts: [api.github.com]}\n"
        "rules:\n  allow: ['shell:argv=git status*', 'http_request:method=GET']\n"
        "  deny: ['http_request:url=*internal*', '*']\n"
    )
    spec, diagnostics = check_spec(_write(tmp_path, text))
    assert diagnostics == []
    assert spec is not None


def test_a_missing_file_is_a_spec_error_without_a_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        check_spec(tmp_path / "nope.yaml")
    [diagnostic] = caught.value.diagnostics
    assert diagnostic.line == 0
    assert diagnostic.message == "spec file not found"


# ---------------------------------------------------------------------------------------------
# the shipped agents


def test_there_are_agents_to_check() -> None:
    assert AGENT_FILES


@pytest.mark.parametrize("path", AGENT_FILES, ids=corpus_id)
def test_every_spec_in_agents_validates(path: Path) -> None:
    spec, diagnostics = check_spec(path)
    errors = [d.headline() for d in diagnostics if d.severity == "error"]
    assert errors == []
    assert spec is not None
    assert spec.path == path.resolve()


def test_validate_agents_folder_exits_0() -> None:
    result = CliRunner().invoke(cli, ["validate", str(ROOT / "agents")])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
