"""The ``shell`` tool (risk high): run an allowed command, directly, confined.

The model sends one command line (``argv``, a string). It is split into words the way
``shlex.split`` does (quotes group words; nothing is expanded) and the words are matched,
word by word, against the spec's ``commands`` patterns; the raw string is never matched.
(The grammar lives in :mod:`runner.spec.command_lines`, shared with success checks.)
A pattern is itself split with ``shlex``; each of its words is an ``fnmatch`` glob for one
word of the command (``*`` in a pattern word also matches ``/``), and a last pattern word
that is exactly ``*`` matches any number of further words, none included. So
``git log *`` allows ``git log`` and ``git log -n 5 --oneline`` but not ``git push``.

**No shell** (the default): the words are executed directly (``execve``), so nothing a
shell would do happens: no ``;``/``&&``/``||``/``|``/``&`` chaining, no ``$(...)`` or
backticks, no ``$VAR``, no redirections, no globbing (``rm *`` passes a literal ``*``).
Because a model writing those expects a shell, an *unquoted* ``;``, ``&``, ``|``, newline,
``<``, ``>``, ``(``, ``)``, backtick, ``$(``, ``${`` or ``$NAME`` (and a backtick or
``$``-expansion inside double quotes, where a shell would still expand it) is refused with
an error saying there is no shell. Inside single quotes, or escaped with a backslash, they
are ordinary characters (``grep 'a|b' notes.txt`` is fine).

**With** ``interpreter`` (for example ``/bin/sh``): the line may chain simple commands with
``;``, ``&&``, ``||``, ``|``, ``&`` and newlines. Every simple command must match a pattern
on its own; substitutions, expansions, redirections and subshells are still refused (what
they run could not be checked). The interpreter then runs ``[interpreter, "-c", line]``
where ``line`` is rebuilt from the matched words, each in single quotes (so not a keyword,
an assignment, a variable or a glob), joined by the operators: the shell gives meaning to
the operators and nothing else.

Confinement: the command starts in ``workdir`` (or the spec's ``cwd``, which must lie
inside it); its environment holds ``PATH`` and the variables named in the spec's ``env``
allowlist, nothing else; stdin is empty. It runs in its own session and process group;
when it times out the whole group gets SIGTERM, then SIGKILL, and when it ends normally
anything it left running in the group (background children) is killed too, so nothing the
tool started outlives the call, unless it left the group on purpose (a child calling
``setsid``): that one is out of reach, and the call returns without the rest of its output.
The patterns confine a cooperative model; against hostile code the command runs in the
spec's ``sandbox`` (:mod:`runner.sandbox`): under bubblewrap, with a read-only system, only
the declared paths writable, the home folder and agentrun's own home hidden, no network
but the egress proxy, and resource limits. There, when the command ends, everything it
started ends with it (its PID namespace goes), ``setsid`` or not. With ``sandbox: off`` (or
``auto`` where bubblewrap cannot run) an allowed command can read and write whatever the
user can. POSIX only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, NamedTuple

from ..errors import SetupError, ToolError
from ..processes import confined_environment
from ..sandbox import session as sandbox
from ..spec import ShellToolSpec
from ..spec.command_lines import (
    CHAIN_OPERATORS,
    allowed_commands,
    matches,
    parse_pattern,
    split_command_line,
)
from ..spec.vocabulary import Risk
from . import Tool

__all__ = [
    "CHAIN_OPERATORS",
    "CommandResult",
    "ShellTool",
    "matches",
    "parse_pattern",
    "split_command_line",
]

#: Seconds between SIGTERM and SIGKILL for a command that timed out.
KILL_GRACE = 2.0
#: Seconds to wait for the output pipe to close once the process group is gone.
OUTPUT_GRACE = 2.0
#: Bytes read from the output pipe at a time.
_CHUNK = 65_536


class CommandResult(NamedTuple):
    """How a command ended: its exit code and the text :meth:`ShellTool.run` returns.

    ``exit_code`` is negative when a signal killed it, None when it timed out (its process
    group was killed); ``text`` is the header line and the output, cut to size.
    """

    exit_code: int | None
    text: str


class _Capture:
    """Drains a pipe in a thread: keeps the first and the last ``limit`` bytes, counts all."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.closed = threading.Event()
        self._lock = threading.Lock()

    def drain(self) -> None:
        fd = self.stream.fileno()
        try:
            while chunk := os.read(fd, _CHUNK):
                with self._lock:
                    self.total += len(chunk)
                    room = self.limit - len(self.head)
                    if room > 0:
                        self.head += chunk[:room]
                        chunk = chunk[room:]
                    if chunk:
                        self.tail += chunk
                        if len(self.tail) > self.limit:
                            del self.tail[: len(self.tail) - self.limit]
        except (OSError, ValueError):
            pass
        finally:
            self.stream.close()
            self.closed.set()

    def render(self, budget: int) -> str:
        """The output as text in at most ``budget`` UTF-8 bytes, with a note when cut."""
        with self._lock:
            head, tail, total = bytes(self.head), bytes(self.tail), self.total
        whole = total == len(head) + len(tail)
        if whole and total <= budget:
            return _clip((head + tail).decode("utf-8", errors="replace"), budget)
        room = max(budget - 120, 0)
        first = room // 2
        last = room - first
        ending = (head + tail)[len(head) + len(tail) - last :] if whole else tail[-last:]
        if not last:
            ending = b""
        note = (
            f"\n[output truncated: {total} bytes, showing the first {first} and the last "
            f"{len(ending)}]\n"
        )
        text = (
            head[:first].decode("utf-8", errors="ignore")
            + note
            + ending.decode("utf-8", errors="ignore")
        )
        return _clip(text, budget)


def _clip(text: str, budget: int) -> str:
    data = text.encode("utf-8", errors="replace")
    if len(data) <= budget:
        return text
    return data[: max(budget, 0)].decode("utf-8", errors="ignore")


def _literal(word: str) -> str:
    """``word`` in single quotes, always: never a keyword, an assignment or a glob."""
    return "'" + word.replace("'", "'\\''") + "'"


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to the command's process group.

    The command leads its own session and group, so it cannot leave the group (only its
    children can, with ``setsid``); the group id stays reserved until the command is
    reaped (see :func:`_has_exited`).
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _has_exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether the process has ended, *without reaping it* where the system allows.

    Leaving the zombie unreaped keeps its process-group id reserved, so signalling the
    group afterwards can never hit an unrelated group that reused the number.
    """
    if process.returncode is not None:
        return True
    if hasattr(os, "waitid"):
        try:
            info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return process.poll() is not None
        return info is not None
    return process.poll() is not None


def _wait_exit(process: subprocess.Popen[bytes], deadline: float, closed: threading.Event) -> bool:
    """Wait until the process ends or ``deadline`` (monotonic) passes; whether it ended.

    Polls with a growing interval (1 ms to 50 ms); the output closing, which usually
    means the command is exiting, wakes the wait early and restarts the interval at 1 ms.
    """
    delay = 0.001
    was_closed = closed.is_set()
    while not _has_exited(process):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if was_closed:
            time.sleep(min(delay, remaining))
        elif closed.wait(min(delay, remaining)):
            was_closed, delay = True, 0.0005
        delay = min(delay * 2, 0.05)
    return True


class ShellTool(Tool):
    """Run one allowed command (or, with an interpreter, a chain of allowed commands).

    Args:
        spec: the spec's ``tools.shell``: ``commands`` patterns, optional ``interpreter``
            and ``cwd`` (relative to ``workdir``).
        workdir: the agent's working directory (absolute).
        env_allow: names of the environment variables the command may see besides
            ``PATH`` (the spec's ``env``); values are read from ``os.environ`` at each call.
        timeout_s: seconds before the command's process group is killed.
        max_output: most UTF-8 bytes of the result text (exit code line and note included).

    Raises:
        SetupError: a pattern that cannot be parsed, or a ``cwd`` outside ``workdir``.
    """

    name = "shell"
    risk = Risk.HIGH

    def __init__(
        self,
        spec: ShellToolSpec,
        workdir: Path,
        env_allow: tuple[str, ...],
        timeout_s: float,
        max_output: int,
    ) -> None:
        self.spec = spec
        self.patterns = [parse_pattern(pattern) for pattern in spec.commands]
        self.interpreter: str | None = spec.interpreter or None
        base = Path(os.path.realpath(workdir))
        self.workdir = base
        self.cwd = Path(os.path.realpath(base / (spec.cwd or ".")))
        if not (self.cwd == base or self.cwd.is_relative_to(base)):
            raise SetupError(
                f"the shell tool's cwd {spec.cwd!r} is outside the agent's workdir {str(base)!r}"
            )
        self.env_allow = tuple(env_allow)
        self.timeout_s = float(timeout_s)
        self.max_output = max(int(max_output), 1)
        allowed = ", ".join(f"`{pattern}`" for pattern in spec.commands)
        if self.interpreter:
            how = (
                f"Runs through {self.interpreter}: you may chain allowed commands with ;, &&, "
                "||, | and &, but every word is taken literally (no $VAR, $(...), globs or "
                "redirections)."
            )
        else:
            how = (
                "There is no shell: one command per call, run directly; ;, &&, |, $(...), "
                "$VAR, redirections and globs have no effect (quote such characters if an "
                "argument needs them)."
            )
        self.description = (
            f"Run a command. Allowed commands: {allowed} (a last word `*` allows any further "
            f"arguments). {how} The output (stdout and stderr) and exit code are returned; "
            f"commands are stopped after {self.timeout_s:g} s."
        )
        self.parameters = {
            "type": "object",
            "properties": {
                "argv": {
                    "type": "string",
                    "minLength": 1,
                    "description": "The command line, for example `git log -n 5`. Words are "
                    "split as a POSIX shell would (quotes group words).",
                }
            },
            "required": ["argv"],
            "additionalProperties": False,
        }

    def check(self, line: str) -> list[str]:
        """The argv to execute for ``line``, once every command in it is allowed.

        Args:
            line: the model's command line.

        Returns:
            The words themselves (no interpreter), or ``[interpreter, "-c", rebuilt]``.

        Raises:
            ToolError: refused syntax (see :func:`split_command_line`) or a command that
                matches no pattern.
        """
        commands, operators = allowed_commands(
            line, self.patterns, self.spec.commands, self.interpreter is not None
        )
        if self.interpreter is None:
            return commands[0]
        parts: list[str] = []
        for index, words in enumerate(commands):
            parts.append(" ".join(_literal(word) for word in words))
            if index < len(operators):
                parts.append(";" if operators[index] == "\n" else operators[index])
        return [self.interpreter, "-c", " ".join(parts)]

    def refusal(self, arguments: dict[str, Any]) -> str | None:
        """Why the command line would be refused (:meth:`check`), or None; runs nothing."""
        line = arguments.get("argv")
        if not isinstance(line, str):
            return None
        try:
            self.check(line)
        except ToolError as error:
            return str(error)
        return None

    def environment(self) -> dict[str, str]:
        """``PATH`` plus the allowlisted variables that are set, from ``os.environ``."""
        return confined_environment(self.env_allow)

    def run(self, arguments: dict[str, Any]) -> str:
        """Check and run the command; enforces :attr:`timeout_s` itself.

        Args:
            arguments: ``{"argv": str}``, the command line.

        Returns:
            ``"exit code N"`` (with the signal's name when one ended it), a newline, then
            stdout and stderr interleaved as written, at most :attr:`max_output` bytes in
            all; a note in the middle says how much was cut.

        Raises:
            ToolError: a refused or disallowed command, a command that cannot be started,
                or a timeout (the process group was killed; the partial output follows).
        """
        result = self.execute(arguments["argv"])
        if result.exit_code is None:
            raise ToolError(result.text)
        return result.text

    def execute(self, line: str, source: str = "shell") -> CommandResult:
        """Check and run the command line ``line``; how it ended (see :meth:`run`).

        The same confinement as a call of the tool (patterns, cwd, environment, timeout,
        process group, the sandbox of ``spec.sandbox``); a success check's ``command`` runs
        through here with ``source="check"``.

        Raises:
            ToolError: a refused or disallowed command, one that cannot be started, or a
                ``required`` sandbox that cannot be enforced.
        """
        argv = self.check(line)
        if not self.cwd.is_dir():
            raise ToolError(f"the working folder {str(self.cwd)!r} does not exist")
        environment = self.environment()  # one snapshot: looked up on the PATH it runs with
        if shutil.which(argv[0], path=environment["PATH"]) is None:
            raise ToolError(f"command not found: {argv[0]!r}")
        try:
            launch = sandbox.launch(
                self.spec.sandbox,
                argv,
                cwd=self.cwd,
                env=environment,
                workdir=self.workdir,
                source=source,
            )
        except SetupError as error:
            raise ToolError(str(error)) from None
        try:
            process = subprocess.Popen(
                launch.argv,
                cwd=self.cwd,
                env=launch.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            raise ToolError(f"command not found: {argv[0]!r}") from None
        except OSError as error:
            raise ToolError(f"cannot run {argv[0]!r}: {error.strerror or error}") from None
        launch.started(process.pid)
        assert process.stdout is not None
        capture = _Capture(process.stdout, self.max_output)
        reader = threading.Thread(target=capture.drain, name="shell-output", daemon=True)
        reader.start()
        deadline = time.monotonic() + self.timeout_s
        finished = _wait_exit(process, deadline, capture.closed)
        if not finished:
            if not launch.terminate():  # the sandbox's processes get it, or the group does
                _signal_group(process, signal.SIGTERM)
            _wait_exit(process, time.monotonic() + KILL_GRACE, threading.Event())
        # The leader is not reaped yet, so its group id is still reserved: kill the whole
        # group (background children included) before reaping it.
        _signal_group(process, signal.SIGKILL)
        code = process.wait()
        launch.ended(code if finished else None)
        reader.join(OUTPUT_GRACE)
        incomplete = (
            ""
            if capture.closed.is_set()
            else (
                "\n[output may be incomplete: a process that left the command's process group "
                "still holds it open]"
            )
        )
        if not finished:
            header = (
                f"command timed out after {self.timeout_s:g} s; it and every process it "
                "started were killed. Output so far:"
            )
        elif code < 0:
            header = f"exit code {code} (killed by {_signal_name(-code)})"
        else:
            header = f"exit code {code}"
        incomplete += launch.note()
        budget = self.max_output - len(header.encode()) - len(incomplete.encode()) - 1
        body = capture.render(max(budget, 0)) if capture.total else "(no output)"
        text = _clip(f"{header}\n{body}{incomplete}", self.max_output)
        return CommandResult(code if finished else None, text)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
