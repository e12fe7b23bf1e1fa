"""`agentrun test`: the examples' own tests pass; a wrong expectation fails with a readable
diff and exit code 1; the JUnit XML parses; a bad test file is exit code 2 at file:line:column.

Runs go through :func:`runner.cli.main`, as the console script does.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.cli import main
from tests.conftest import ROOT

AGENTS = ROOT / "agents"


def agentrun_test(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``agentrun test ARGS``: exit code, stdout, stderr."""
    with pytest.raises(SystemExit) as exited:
        main(["test", *args])
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def hello_test(folder: Path, expect: str, name: str = "reads the file") -> Path:
    """A test file in ``folder`` for agents/hello.yaml, with ``expect`` (YAML, indented 6)."""
    path = folder / "hello-test.yaml"
    path.write_text(
        f"spec: {AGENTS / 'hello.yaml'}\n"
        "tests:\n"
        f"  - name: {name}\n"
        "    model:\n"
        "      - call: {read_file: {path: about-agentrun.txt}}\n"
        '      - text: "The project is agentrun."\n'
        "    expect:\n" + expect,
        encoding="utf-8",
    )
    return path


def test_every_example_has_a_test_file() -> None:
    specs = {path.stem for path in AGENTS.glob("*.yaml")}
    tested = {path.stem for path in (AGENTS / "tests").glob("*.yaml")}
    assert len(specs) >= 10
    assert specs == tested, f"examples without a test file: {sorted(specs - tested)}"


def test_the_examples_tests_pass(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    junit = tmp_path / "agents.xml"
    code, out, err = agentrun_test(capsys, str(AGENTS), "--junit-xml", str(junit))
    assert code == 0, out + err
    assert "FAILED" not in out and "ERROR" not in out
    assert "agents/tests/hello.yaml::reads the one file it may read and answers from it PASSED" in (
        out
    )
    assert "agents/tests/hello.yaml::replays the real local model's recorded run PASSED" in out
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) >= 10 and int(suite.get("tests", "0")) == len(cases)
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    files = {case.get("classname", "").rsplit("/", 1)[-1] for case in cases}
    assert len(files) == len(list(AGENTS.glob("*.yaml")))


def test_a_wrong_expectation_fails_with_a_diff(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = hello_test(
        tmp_path,
        "      stop_reason: max_steps\n"
        "      tool_calls: [{name: read_file, arguments: {path: '*.md'}}]\n"
        "      answer: {matches: agentrun}\n",
    )
    junit = tmp_path / "out.xml"
    code, out, _ = agentrun_test(capsys, str(path), "--junit-xml", str(junit))
    assert code == 1
    assert f"{path}::reads the file FAILED" in out
    assert "stop reason:" in out and '-"max_steps"' in out and '+"completed"' in out
    assert '-      "path": "*.md"' in out and '+      "path": "about-agentrun.txt"' in out
    assert "answer matches" not in out  # that one held
    assert out.rstrip().splitlines()[-1].startswith("0 passed, 1 failed in ")

    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("1", "1")
    [case] = suite.findall("testcase")
    assert case.get("name") == "reads the file"
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == "stop reason: expected 'max_steps', got 'completed'"
    assert failure.text is not None and '+"completed"' in failure.text


def test_passing_and_failing_tests_are_counted_with_the_keyword_filter(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = hello_test(tmp_path, "      stop_reason: completed\n      max_steps: 2\n")
    code, out, _ = agentrun_test(capsys, str(path), "--repeat", "2", "-k", "READS")
    assert code == 0, out
    assert out.count("PASSED") == 2
    assert "reads the file: 2/2 (100%)" in out
    assert out.rstrip().splitlines()[-1].startswith("2 passed, 0 failed in ")
    code, out, err = agentrun_test(capsys, str(path), "-k", "nothing-like-this")
    assert code == 2 and "no tests found" in err


@pytest.mark.parametrize(
    ("expect", "failure"),
    [
        ("      files: {out.txt: {exists: true}}\n", "out.txt exists"),
        ("      no_tool_calls: [read_*]\n", "no calls to read_*"),
        ("      decisions: {read_file: ask}\n", "decision of every read_file call"),
        ("      answer: {schema: {type: object}}\n", "answer is JSON"),
        ("      max_steps: 1\n", "steps at most 1"),
    ],
)
def test_each_kind_of_expectation_can_fail(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, expect: str, failure: str
) -> None:
    code, out, _ = agentrun_test(capsys, str(hello_test(tmp_path, expect)))
    assert code == 1
    assert f"{failure}:" in out


def test_a_bad_test_file_is_exit_code_2_at_its_line_and_column(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "spec: ../nowhere.yaml\n"
        "tests:\n"
        "  - name: x\n"
        "    model:\n"
        "      - txt: hi\n"
        "    expect:\n"
        "      stop_reson: completed\n",
        encoding="utf-8",
    )
    code, out, err = agentrun_test(capsys, str(path))
    assert code == 2 and out == ""
    assert f"{path}:5:9: 'tests[0].model[0]' needs one of 'text' or 'call' or 'calls'" in err
    assert f"{path}:7:7: unknown key 'stop_reson'" in err and "did you mean 'stop_reason'" in err
    assert "Traceback" not in err


def test_a_test_file_naming_a_missing_spec_or_a_bad_regex_is_located(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "spec: ../nowhere.yaml\n"
        "tests:\n"
        "  - name: x\n"
        "    model: [{text: hi}]\n"
        "    expect:\n"
        "      answer: {matches: '(unclosed'}\n",
        encoding="utf-8",
    )
    code, _, err = agentrun_test(capsys, str(path))
    assert code == 2
    assert f"{path}:1:7: spec file '../nowhere.yaml' not found" in err
    assert f"{path}:6:25: invalid regular expression '(unclosed'" in err


def test_a_missing_path_and_broken_yaml_are_clear_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = agentrun_test(capsys, str(tmp_path / "none.yaml"))
    assert code == 2 and "no such test file or folder" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n", encoding="utf-8")
    code, _, err = agentrun_test(capsys, str(broken))
    assert code == 2 and f"{broken}:" in err and "Traceback" not in err


def test_a_bad_input_is_an_error_result_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "inputs.yaml"
    path.write_text(
        f"spec: {AGENTS / 'release-notes.yaml'}\n"
        "tests:\n"
        "  - name: no inputs\n"
        "    model: [{text: hi}]\n"
        "    expect: {stop_reason: completed}\n"
        "  - name: no workdir\n"
        "    inputs: {since: v1, version: '2'}\n"
        "    workdir: no-such-folder\n"
        "    model: [{text: hi}]\n"
        "    expect: {stop_reason: completed}\n",
        encoding="utf-8",
    )
    code, out, _ = agentrun_test(capsys, str(path))
    assert code == 1
    assert "no workdir ERROR" in out and "no-such-folder is not a folder" in out
    assert "no inputs ERROR" in out and "needs inputs 'since', 'version'" in out
    assert "0 passed, 0 failed, 2 errors in" in out


def test_runs_write_in_a_copy_and_a_failed_setup_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    original = (AGENTS / "fixtures" / "fix-failing-test" / "pricing.py").read_text()
    path = tmp_path / "setup.yaml"
    path.write_text(
        f"spec: {AGENTS / 'fix-failing-test.yaml'}\n"
        "tests:\n"
        "  - name: writes\n"
        "    model:\n"
        "      - call: {edit_file: {path: pricing.py, old: 'return round(', new: 'return gone('}}\n"
        "      - text: 'FIXED: x'\n"
        "    expect:\n"
        "      files: {pricing.py: {contains: 'return gone('}}\n"
        "  - name: setup fails\n"
        "    setup: [git no-such-subcommand]\n"
        "    model: [{text: hi}]\n"
        "    expect: {stop_reason: completed}\n",
        encoding="utf-8",
    )
    code, out, _ = agentrun_test(capsys, str(path))
    assert code == 1
    assert "writes PASSED" in out
    assert "setup fails ERROR" in out and "setup command 'git no-such-subcommand'" in out
    assert (AGENTS / "fixtures" / "fix-failing-test" / "pricing.py").read_text() == original


def test_the_test_file_schema_is_a_valid_json_schema_and_ships_in_the_wheel() -> None:
    import json
    import tomllib

    from jsonschema import Draft202012Validator

    path = ROOT / "schemas" / "agent-test.schema.json"
    Draft202012Validator.check_schema(json.loads(path.read_text(encoding="utf-8")))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert shipped["schemas/agent-test.schema.json"] == "runner/schemas/agent-test.schema.json"


# -- cassettes (issue 24, part 3) ----------------------------------------------------------


def cassette_test(
    folder: Path, cassette: Path, expect: str = "      stop_reason: completed\n"
) -> Path:
    """A test file in ``folder`` replaying ``cassette`` against agents/hello.yaml."""
    path = folder / "hello-cassette.yaml"
    path.write_text(
        f"spec: {AGENTS / 'hello.yaml'}\n"
        "tests:\n"
        "  - name: replays\n"
        f"    cassette: {cassette.name}\n"
        "    expect:\n" + expect,
        encoding="utf-8",
    )
    return path


def hello_cassette(folder: Path, change: Any = None) -> Path:
    """agents/hello.yaml's recorded cassette, copied into ``folder`` and edited by ``change``."""
    data = yaml.safe_load((AGENTS / "tests" / "cassettes" / "hello.yaml").read_text())
    if change is not None:
        change(data)
    path = folder / "hello.cassette.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_a_cassette_replays_in_the_workdir_copy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    expect = (
        "      stop_reason: completed\n"
        "      tool_calls: [{name: read_file, arguments: {path: about-agentrun.txt}, status: ok}]\n"
        "      answer: {matches: 'runs AI agents'}\n"
    )
    code, out, _ = agentrun_test(
        capsys, str(cassette_test(tmp_path, hello_cassette(tmp_path), expect))
    )
    assert code == 0, out
    assert "::replays PASSED" in out


def test_a_diverging_cassette_fails_the_test_with_the_divergence(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def change(data: dict[str, Any]) -> None:
        data["interactions"][0]["request"]["messages"][1]["content"] = "Read it all."

    cassette = hello_cassette(tmp_path, change)
    code, out, _ = agentrun_test(capsys, str(cassette_test(tmp_path, cassette)))
    assert code == 1
    assert "::replays FAILED" in out
    assert "model requests follow the cassette:" in out
    assert f"request 1 diverges from the cassette {cassette} at messages[1].content" in out
    assert "recorded 'Read it all.', got 'Read the file about-agentrun.txt" in out


def test_recorded_calls_the_run_never_made_fail_the_test(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def add(data: dict[str, Any]) -> None:
        data["interactions"].append(
            {"request": {"messages": []}, "reply": {"content": "again", "tool_calls": []}}
        )

    cassette = hello_cassette(tmp_path, add)
    code, out, _ = agentrun_test(capsys, str(cassette_test(tmp_path, cassette)))
    assert code == 1
    assert f"model calls (the cassette {cassette} holds):" in out
    assert "-3" in out and "+2" in out


def test_a_missing_or_invalid_cassette_is_a_bad_test_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = cassette_test(tmp_path, tmp_path / "absent.yaml")
    code, out, err = agentrun_test(capsys, str(path))
    assert code == 2 and out == ""
    assert f"{path}:4:15: cassette {tmp_path / 'absent.yaml'}: no such file" in err
    (tmp_path / "absent.yaml").write_text("version: 1\ninteractions: {}\n", encoding="utf-8")
    code, _, err = agentrun_test(capsys, str(path))
    assert code == 2
    assert "interactions: expected a list, found {}" in err
    both = tmp_path / "both.yaml"
    both.write_text(
        f"spec: {AGENTS / 'hello.yaml'}\n"
        "tests:\n"
        "  - name: both\n"
        "    model: [{text: hi}]\n"
        "    cassette: absent.yaml\n"
        "    expect: {stop_reason: completed}\n",
        encoding="utf-8",
    )
    code, _, err = agentrun_test(capsys, str(both))
    assert code == 2
    assert "sets 'model' and 'cassette'; use only one of 'model' or 'cassette'" in err


def test_a_live_model_test_is_skipped_unless_asked_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = agentrun_test(capsys, str(AGENTS / "tests" / "hello.yaml"), "-k", "names the")
    assert code == 0
    assert "names the project SKIPPED (a live-model test: run with --live)" in out


@pytest.mark.local_model
def test_repeat_against_the_real_local_model_reports_a_pass_rate(tmp_path: Path) -> None:
    """``--live --repeat 3``: the embedded model answers three times; a pass rate per test.

    In a process of its own: the local model's server lives as long as its process.
    """
    import os

    from tests.helpers import run_cli

    pytest.importorskip("cyllama", reason="needs the [local] extra")
    junit = tmp_path / "live.xml"
    args = [str(AGENTS / "tests" / "hello.yaml"), "-k", "names the project", "--live"]
    done = run_cli(
        ["test", *args, "--repeat", "3", "--junit-xml", str(junit)],
        {**os.environ, "AGENTRUN_HOME": str(tmp_path / "home")},
    )
    rate = [line for line in done.stdout.splitlines() if "names the project: " in line]
    assert len(rate) == 1, done.stdout + done.stderr
    passed = int(rate[0].rsplit(": ", 1)[1].split("/")[0])
    assert rate[0].endswith(f"{passed}/3 ({100 * passed / 3:.0f}%)")
    assert done.returncode == (0 if passed == 3 else 1), done.stdout
    cases = ElementTree.parse(junit).getroot().findall("testsuite/testcase")
    assert len(cases) == 3
    failed = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    assert len(failed) == 3 - passed
