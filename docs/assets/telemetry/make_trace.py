"""Send one real run's trace to a local OTLP/HTTP receiver, for docs/telemetry.md's picture.

Runs the ``inbox-triage`` example (a copy, with its mailbox) through ``agentrun run`` at a
pseudo-terminal, so each ``write_file`` asks for approval and is approved by typing ``y``.
The model is :class:`runner.testing.FakeOpenAIServer` on loopback: litellm's real path, a
scripted conversation, no provider and no API key. Telemetry is turned on the standard way,
by ``OTEL_EXPORTER_OTLP_ENDPOINT``.

Usage (a viewer such as Arize Phoenix listening on port 6006)::

    python docs/assets/telemetry/make_trace.py http://127.0.0.1:6006
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from runner.testing import FakeOpenAIServer, Scripted, call, calls, text

REPO = Path(__file__).resolve().parents[3]
MESSAGES = ["inbox/2026-03-02-export-crash.md", "inbox/2026-03-02-invoice-question.md"]
NOTES = [
    "category: bug\nurgency: high\nsummary: CSV export crashes.\nreply: We are on it.\n",
    "category: billing\nurgency: normal\nsummary: A question on an invoice.\n"
    "reply: We will check the invoice and write back.\n",
]
PROMPT = b"[y] approve once"


def script() -> list[Scripted]:
    """The model's turns: list, read both messages, write both notes, answer."""
    return [
        call("list_dir", {"path": "inbox"}),
        calls(*[("read_file", {"path": message}) for message in MESSAGES]),
        call("write_file", {"path": MESSAGES[0].replace("inbox/", "triage/"), "content": NOTES[0]}),
        call("write_file", {"path": MESSAGES[1].replace("inbox/", "triage/"), "content": NOTES[1]}),
        text("Triaged 2 messages: one bug (high), one billing question (normal)."),
    ]


def copy_example(folder: Path, api_base: str) -> Path:
    """The inbox-triage example and its mailbox in ``folder``, its model at ``api_base``."""
    shutil.copytree(REPO / "agents" / "fixtures" / "mailbox", folder / "fixtures" / "mailbox")
    spec = yaml.safe_load((REPO / "agents" / "inbox-triage.yaml").read_text())
    spec["model"] = {**spec["model"], "api_base": api_base}
    path = folder / "inbox-triage.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_at_a_terminal(argv: list[str], env: dict[str, str], timeout_s: float = 120) -> int:
    """Run ``argv`` with a pseudo-terminal as stdin and stderr, answering ``y`` to each prompt."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(argv, stdin=terminal, stderr=terminal, env=env)
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the run is ending
            break
        sys.stderr.write(chunk.decode(errors="replace"))
        seen += chunk
        if PROMPT in seen:
            seen = b""
            os.write(controller, b"y\n")
    code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    os.close(controller)
    return code


def main() -> int:
    """Run the example once with telemetry to ``sys.argv[1]``; return its exit code."""
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:6006"
    with tempfile.TemporaryDirectory() as temporary, FakeOpenAIServer(script()) as model:
        folder = Path(temporary)
        spec = copy_example(folder / "agents", model.api_base)
        env = {
            **os.environ,
            "AGENTRUN_HOME": str(folder / "home"),
            "OPENAI_API_KEY": "not-a-real-key",  # the fake server ignores it
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_SERVICE_NAME": "inbox-triage",
        }
        agentrun = str(Path(sys.executable).with_name("agentrun"))
        return run_at_a_terminal([agentrun, "run", str(spec)], env)


if __name__ == "__main__":
    sys.exit(main())
