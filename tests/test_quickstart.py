"""docs/quickstart.md is run as a reader would, command by command, and its samples checked.

The page is read in order, as a script:

- every line of a ```sh block is a command (``# ...`` comments are bash's); the Install block
  is the README's first command without its run, so it is compared with it, not run again
  (tests/test_docs.py checks that command against .ci/run);
- ``export NAME=value`` sets the variable for the commands after it;
- a ```yaml block that is not a whole spec shows part of ``my-agent.yaml``: its keys are
  written into the file before the commands after it;
- a ```text block titled with a command (```text title="agentrun run agents/hello.yaml"``)
  is that command's output: its progress lines (stderr) must have the real output's shape (run
  ids, token counts, seconds and costs may differ; nothing else), and its
  other lines stand for the answer (stdout, not empty); a sample that shows a spec error at
  ``file:line:col`` with the line itself (``   28 | tool:``) is made real by writing that line
  into the file, and the output must be the sample exactly;
- a run id in a command (``agentrun runs show 01M8WGYH``) stands for the latest run's.

Every command runs in a temporary copy of the checkout with AGENTRUN_HOME in a temporary
folder, and must exit 0. Hosted models are answered by the package's fake OpenAI-compatible
server (``OPENAI_BASE_URL``). ``agentrun run`` on a ``local/`` model runs the embedded model in
the ``local_model`` test; in the other, the spec's model is pointed at the fake server for
that command, so every other command and sample is checked on every run of the suite.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from runner.testing import FakeOpenAIServer, call, text
from tests.conftest import ROOT
from tests.test_docs import local_runtime_missing, readme_commands, steps

PAGE = ROOT / "docs" / "quickstart.md"
BIN = Path(sys.executable).parent
ULID = re.compile(r"\b01[0-9A-HJKMNP-TV-Z]{6,24}\b")
_BLOCK = re.compile(r'^```(\w+)(?: title="([^"]*)")?\n(.*?)^```$', re.DOTALL | re.MULTILINE)


@dataclass
class Block:
    """One fenced block of the page: its language, title (a command, for samples) and body."""

    language: str
    title: str
    body: str


def page_blocks() -> list[Block]:
    return [
        Block(match.group(1), match.group(2) or "", match.group(3))
        for match in _BLOCK.finditer(PAGE.read_text(encoding="utf-8"))
    ]


def commands(block: Block) -> list[str]:
    """The command lines of a ```sh block (blank and comment-only lines left out)."""
    return [line for line in block.body.splitlines() if line.strip() and not line.startswith("#")]


def install_block() -> Block:
    [block] = [b for b in page_blocks() if b.language == "sh" and "pip install" in b.body]
    return block


# ---------------------------------------------------------------------------------------------
# the walk through the page


@dataclass
class Walk:
    """The state a reader has after each command: folder, variables, outputs, run ids."""

    work: Path
    env: dict[str, str]
    server: FakeOpenAIServer
    real_local_model: bool
    outputs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def run(
        self, command: str, expect: int = 0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        for shown in ULID.findall(command):
            assert self.run_ids, f"{command!r} names a run before any ran"
            command = command.replace(shown, self.run_ids[-1][: len(shown)])
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.work,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        assert done.returncode == expect, f"$ {command}\n{done.stdout}{done.stderr}"
        self.run_ids += re.findall(r"^\[\w+\] run ([0-9A-Z]{26})\b", done.stderr, re.MULTILINE)
        self.ran.append(command)
        return done

    def command(self, line: str) -> None:
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            for word in words[1:]:
                name, _, value = word.partition("=")
                self.env[name] = value
            return
        model = self.run_model(words)
        if model is None or not model.startswith("local/") or self.real_local_model:
            if model is not None and not model.startswith("local/"):
                # a hosted model: the fake server answers with a read, then the answer
                self.server.script.extend(
                    [call("read_file", {"path": "README.md"}), text("agentrun.")]
                )
            self.outputs[line_key(line)] = self.run(line)
            return
        # the embedded model's stand-in: the same spec, its model served by the fake server
        spec = self.work / words[2]
        original = spec.read_text(encoding="utf-8")
        pointed = re.sub(r"^(model:|\s+id:)(\s*)local/", r"\1\2openai/", original, flags=re.M)
        assert pointed != original, f"no local/ model id to point at the fake server in {spec}"
        spec.write_text(pointed, encoding="utf-8")
        # a read of the first path the spec allows, as the embedded model does
        first = yaml.safe_load(original)["tools"]["read_file"]["paths"][0]
        self.server.script.extend([call("read_file", {"path": first}), text("agentrun.")])
        try:
            done = self.run(line, env={"OPENAI_API_KEY": "sk-fake"})
        finally:
            spec.write_text(original, encoding="utf-8")
        # what differs only because of the stand-in: the model's id, and its price (the
        # embedded model costs $0; litellm knows no price for openai/smollm2)
        stderr = done.stderr.replace(" openai/", " local/").replace(
            " · unknown · ", " · $0.000000 · "
        )
        self.outputs[line_key(line)] = subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout, stderr
        )

    def run_model(self, words: list[str]) -> str | None:
        """The model id an ``agentrun run SPEC`` command uses; None for other commands."""
        if words[:2] != ["agentrun", "run"]:
            return None
        data = yaml.safe_load((self.work / words[2]).read_text(encoding="utf-8"))
        model = data["model"]["id"] if isinstance(data["model"], dict) else data["model"]
        return str(model)

    def spec_part(self, block: Block) -> None:
        """Write the keys a partial ```yaml block shows into my-agent.yaml."""
        shown = yaml.safe_load(block.body)
        path = self.work / "my-agent.yaml"
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec.update(shown)
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")

    def sample(self, block: Block) -> None:
        error = re.search(r"^(\S+?):(\d+):\d+: .*\n {2,}(\d+) \| (.*)$", block.body, re.MULTILINE)
        if error:
            self.spec_error_sample(block, error)
            return
        key = line_key(block.title)
        assert key in self.outputs, f"the sample of {block.title!r} comes before its command"
        check_shape(block.body, self.outputs[key])

    def spec_error_sample(self, block: Block, error: re.Match[str]) -> None:
        path = self.work / error.group(1)
        number = int(error.group(2))
        assert int(error.group(3)) == number
        original = path.read_text(encoding="utf-8")
        lines = original.splitlines(keepends=True)
        lines[number - 1] = error.group(4) + "\n"
        path.write_text("".join(lines), encoding="utf-8")
        try:
            done = self.run(block.title, expect=2)
        finally:
            path.write_text(original, encoding="utf-8")
        assert block.body.rstrip() in done.stdout + done.stderr


def line_key(command: str) -> str:
    return " ".join(shlex.split(command, comments=True))


def shape(line: str) -> str:
    """A progress line as a pattern: run ids and numbers (tokens, seconds, USD) may vary."""
    pattern = ""
    for part in re.split(r"(\b01[0-9A-HJKMNP-TV-Z]{24}\b|\d[\d,]*(?:\.\d+)?)", line):
        if ULID.fullmatch(part):
            pattern += r"[0-9A-HJKMNP-TV-Z]{26}"
        elif re.fullmatch(r"\d[\d,]*(?:\.\d+)?", part):
            pattern += r"\d[\d,]*(?:\.\d+)?"
        else:
            pattern += re.escape(part)
    return pattern


def is_progress(line: str) -> bool:
    return line.startswith(("▶", " ", "[")) and bool(line.strip())


def check_shape(sample: str, done: subprocess.CompletedProcess[str]) -> None:
    """The sample's progress lines match stderr's, line for line; its answer means stdout."""
    shown = [line for line in sample.splitlines() if is_progress(line)]
    real = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(real) == len(shown), f"sample:\n{sample}\nreal stderr:\n{done.stderr}"
    for expected, actual in zip(shown, real, strict=True):
        assert re.fullmatch(shape(expected), actual), f"{expected!r}\n{actual!r}"
    if any(not is_progress(line) for line in sample.splitlines()):
        assert done.stdout.strip(), "the sample shows an answer; the run printed none"


def walk_page(tmp_path: Path, real_local_model: bool) -> Walk:
    work = tmp_path / "checkout"
    work.mkdir(parents=True)
    for name in ("agents", "docs"):
        shutil.copytree(ROOT / name, work / name)
    shutil.copy(ROOT / "README.md", work / "README.md")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["AGENTRUN_HOME"] = str(tmp_path / "home")
    with FakeOpenAIServer([]) as server:
        env["OPENAI_BASE_URL"] = server.api_base
        walk = Walk(work, env, server, real_local_model)
        install = install_block()
        for block in page_blocks():
            if block.body == install.body:
                continue
            if block.language == "sh":
                for line in commands(block):
                    walk.command(line)
            elif block.language == "yaml" and not re.search(r"^version:", block.body, re.M):
                walk.spec_part(block)
            elif block.language == "text" and block.title:
                walk.sample(block)
    return walk


# ---------------------------------------------------------------------------------------------
# tests


def test_the_install_block_is_the_readmes_first_command_without_its_run() -> None:
    readme = steps(readme_commands()[0].strip())
    page = [step for line in commands(install_block()) for step in steps(line)]
    assert page == readme[:-1]
    assert readme[-1][:2] == ["agentrun", "run"]


def test_the_goal_shown_is_the_starter_specs(tmp_path: Path) -> None:
    section = PAGE.read_text(encoding="utf-8").split("## Write your own agent")[1]
    shown = yaml.safe_load(section.split("```yaml\n")[1].split("```")[0])
    subprocess.run(
        [str(BIN / "agentrun"), "init", "my-agent"], cwd=tmp_path, check=True, capture_output=True
    )
    starter = yaml.safe_load((tmp_path / "my-agent.yaml").read_text(encoding="utf-8"))
    assert shown == {"goal": starter["goal"]}


def test_every_quickstart_command_runs_and_its_samples_hold(tmp_path: Path) -> None:
    walk = walk_page(tmp_path, real_local_model=False)
    every = [
        line
        for block in page_blocks()
        if block.language == "sh" and block.body != install_block().body
        for line in commands(block)
    ]
    exports = [line for line in every if line.startswith("export ")]
    titled = [b for b in page_blocks() if b.title and b.title.startswith("agentrun validate")]
    assert len(walk.ran) == len(every) - len(exports) + len(titled)
    assert len(walk.ran) >= 10
    assert (walk.work / "my-agent.yaml").exists()
    # the hosted model's run went to the fake server, with the key the page exported
    hosted = [r for r in walk.server.requests if r.get("model") == "gpt-4o-mini"]
    assert hosted, "the hosted section's run did not reach the (fake) provider"


@pytest.mark.local_model
@pytest.mark.slow
def test_every_quickstart_command_runs_on_the_local_model(tmp_path: Path) -> None:
    if missing := local_runtime_missing():
        pytest.skip(missing)
    walk = walk_page(tmp_path, real_local_model=True)
    assert any(command.startswith("agentrun run agents/hello.yaml") for command in walk.ran)


def test_a_failing_command_fails_the_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        PAGE.read_text(encoding="utf-8").replace(
            "agentrun validate agents/\n", "agentrun validate agents/ nowhere.yaml\n"
        )
    )
    monkeypatch.setattr(sys.modules[__name__], "PAGE", page)
    with pytest.raises(AssertionError, match="validate agents/ nowhere.yaml"):
        walk_page(tmp_path / "walk", real_local_model=False)


def test_a_sample_of_another_shape_fails() -> None:
    sample = "▶ hello · local/smollm2 · run 01M8WGYHSYS71RVXCPCXKQ17D8\nThe answer.\n"
    real = "▶ hello · local/smollm2 · run 01M8X000000000000000000000\n"
    check_shape(sample, subprocess.CompletedProcess([], 0, "answer\n", real))
    with pytest.raises(AssertionError):
        check_shape(sample, subprocess.CompletedProcess([], 0, "answer\n", "▶ hello · x\n"))
    with pytest.raises(AssertionError, match="printed none"):
        check_shape(sample, subprocess.CompletedProcess([], 0, "", real))
