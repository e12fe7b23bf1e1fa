"""http_request's connections are recorded in the run, as the egress proxy's are.

A run through the scripted model makes two http_request calls: one to a host listed as an
address (reached), one to a listed name that resolves to an internal address (refused);
each leaves a ConnectionDecided in the run store's ``sandbox_events``, with its call.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.compiler import compile_agent
from runner.events import StopReason
from runner.loop import run_agent
from runner.spec import load_spec
from runner.store import RunStore
from runner.testing import ScriptedModel, call, text
from tests.helpers import write_spec
from tests.receivers import hello_server


@pytest.fixture
def port() -> Iterator[int]:
    with hello_server() as port:
        yield port


@pytest.fixture
def internal_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """A name that resolves to loopback, as a split-horizon name or a rebinding answer would."""
    real = socket.getaddrinfo

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        internal = host in ("internal.test", b"internal.test")  # anyio passes bytes
        return real("127.0.0.1" if internal else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return "internal.test"


def test_an_allowed_and_a_refused_connection_are_recorded_with_their_calls(
    tmp_path: Path, port: int, internal_name: str
) -> None:
    spec = load_spec(
        write_spec(
            tmp_path,
            f"""
            version: 1
            name: fetcher
            model: openai/scripted
            goal: Fetch the pages.
            autonomy: autonomous
            tools:
              http_request:
                hosts: ["127.0.0.1", "{internal_name}"]
            """,
        )
    )
    model = ScriptedModel(
        [
            call("http_request", {"url": f"http://127.0.0.1:{port}/hello"}),
            call("http_request", {"url": f"http://{internal_name}:{port}/hello"}),
            text("done"),
        ]
    )
    store = RunStore.default()
    try:
        finished = asyncio.run(run_agent(compile_agent(spec), model, store=store))
        assert finished.stop_reason is StopReason.COMPLETED
        rows = store.sandbox_events(finished.run_id)
    finally:
        store.close()
    assert [(row["kind"], row["source"], row["host"], row["port"]) for row in rows] == [
        ("connection", "http_request", "127.0.0.1", port),
        ("connection", "http_request", internal_name, port),
    ]
    allowed, refused = rows
    assert (allowed["allowed"], allowed["address"], allowed["detail"]) == (1, "127.0.0.1", "")
    assert (refused["allowed"], refused["address"]) == (0, None)
    assert refused["detail"] == f"{internal_name} resolves to 127.0.0.1, not a public address"
    assert allowed["call_id"] and refused["call_id"]
    assert allowed["call_id"] != refused["call_id"]
