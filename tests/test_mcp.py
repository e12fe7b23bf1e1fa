"""MCP servers as tool sources: real servers, the loop, policy, failures and process cleanup.

Real servers nobody here wrote: ``mcp-server-time`` (PyPI, installed in the test's
virtualenv) and ``@modelcontextprotocol/server-filesystem`` (npm, run with the machine's
Node.js). CI installs them with::

    python -m pip install mcp-server-time==2026.10.19
    npm install --prefix .ci-node --no-audit --no-fund @modelcontextprotocol/server-filesystem@2026.8.31

(``AGENTRUN_TEST_NODE_PREFIX`` points at another ``--prefix`` folder.) The streamable-HTTP
server and the misbehaving ones are ``tests/mcp_servers/toy_server.py``, built on the SDK.

Every test that starts a server checks by PID that neither the server nor a child of it
survives.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types
import pytest

from runner.compiler import compile_agent
from runner.errors import SetupError, ToolError
from runner.events import StopReason
from runner.loop import run_agent
from runner.spec import AgentSpec, McpServerSpec, SandboxSpec, load_spec
from runner.store import RunStore
from runner.testing import ScriptedModel, call, text
from runner.tools import ToolRegistry
from runner.tools.mcp import (
    McpServer,
    McpTool,
    exposed_name,
    open_mcp_tools,
    result_text,
    schema_problem,
    tool_risk,
)
from tests.conftest import ROOT
from tests.helpers import write_spec

TOY = ROOT / "tests" / "mcp_servers" / "toy_server.py"
TIME_VERSION = "2026.10.19"
FILESYSTEM_PACKAGE = "@modelcontextprotocol/server-filesystem"
FILESYSTEM_VERSION = "2026.8.31"
#: Generous bounds that make a test end; nothing here measures speed.
DEADLINE = 20.0


# ---------------------------------------------------------------------------------------------
# helpers


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper is dead)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    parents[int(entry)] = int(stat.read().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def processes_mentioning(marker: str) -> set[int]:
    """Live processes whose command line contains ``marker``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    cmdline = handle.read().decode("utf-8", "replace")
            except OSError:
                continue
            if marker in cmdline and process_alive(int(entry)):
                found.add(int(entry))
    return found


def assert_all_dead(pids: set[int] | list[int]) -> None:
    """Every PID is gone (waiting at most DEADLINE seconds for the kernel to finish)."""
    deadline = time.monotonic() + DEADLINE
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [p for p in pids if process_alive(p)]
    assert not survivors, f"processes still running: {survivors}"


def toy_spec(
    tmp_path: Path,
    name: str = "toy",
    mode: str = "stdio",
    allow: tuple[str, ...] = ("*",),
    **options: Any,
) -> McpServerSpec:
    """The toy server over stdio; it starts a ``sleep`` child and writes its PID.

    ``sandbox: off`` unless given: these tests follow the server's processes by their PIDs on
    this machine, which a sandbox's PID namespace renumbers (tests/test_sandbox_hostile.py
    runs a server in the sandbox)."""
    args = (str(TOY), mode, "--child-pid-file", str(tmp_path / f"{name}.child"))
    options.setdefault("startup_timeout", DEADLINE)
    options.setdefault("sandbox", SandboxSpec(mode="off"))
    return McpServerSpec(name=name, allow=allow, command=sys.executable, args=args, **options)


def child_pid(tmp_path: Path, name: str = "toy") -> int:
    return int((tmp_path / f"{name}.child").read_text())


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=120))


def time_server_command() -> str:
    beside = Path(sys.executable).parent / "mcp-server-time"
    found = str(beside) if beside.exists() else shutil.which("mcp-server-time")
    if not found:
        pytest.skip(
            f"mcp-server-time is not installed: python -m pip install mcp-server-time=={TIME_VERSION}"
        )
    return found


def filesystem_server_script() -> Path:
    prefix = Path(os.environ.get("AGENTRUN_TEST_NODE_PREFIX", ROOT / ".ci-node"))
    script = prefix / "node_modules" / FILESYSTEM_PACKAGE / "dist" / "index.js"
    if not script.exists():
        pytest.skip(
            f"{FILESYSTEM_PACKAGE} is not installed: npm install --prefix .ci-node "
            f"{FILESYSTEM_PACKAGE}@{FILESYSTEM_VERSION}"
        )
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    return script


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def http_server() -> Iterator[str]:
    """The toy server over streamable HTTP on a free loopback port; its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(TOY), "http", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    assert process.stderr is not None
                    pytest.fail(f"the HTTP toy server did not start: {process.stderr.read()!r}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def agent_spec(tmp_path: Path, mcp_yaml: str, extra: str = "") -> AgentSpec:
    """A spec with the given ``tools.mcp`` block (YAML, indented under ``mcp:``).

    ``sandbox: off``, as for :func:`toy_spec`: these tests follow PIDs on this machine."""
    body = textwrap.dedent(
        """
        version: 1
        name: mcp-tester
        model: openai/scripted
        goal: Use the tools.
        autonomy: approve-writes
        unattended: fail
        sandbox: "off"
        tools:
          mcp:
        """
    )
    body += textwrap.indent(textwrap.dedent(mcp_yaml), "    ") + textwrap.dedent(extra)
    return load_spec(write_spec(tmp_path, body))


async def run_with_mcp(spec: AgentSpec, model: ScriptedModel, store: RunStore) -> Any:
    """Start the spec's MCP servers, run the agent with them, stop them; the RunFinished."""
    async with contextlib.AsyncExitStack() as stack:
        tools, _ = await open_mcp_tools(spec, stack)
        agent = compile_agent(spec)
        agent = dataclasses.replace(agent, tools=ToolRegistry([*agent.tools, *tools]))
        return await run_agent(agent, model, store=store)


# ---------------------------------------------------------------------------------------------
# names, risk, schemas, results (no server)


def test_exposed_names_fit_every_provider() -> None:
    pattern = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
    assert exposed_name("time", "get_current_time") == "time__get_current_time"
    assert exposed_name("fs", "files.read/v2") == "fs__files_read_v2"
    long_a = exposed_name("server", "t" * 100 + "a")
    long_b = exposed_name("server", "t" * 100 + "b")
    assert long_a != long_b
    for name in (long_a, long_b, exposed_name("s", "x y.z")):
        assert pattern.match(name), name


def _tool(read_only: bool | None = None, destructive: bool | None = None) -> mcp_types.Tool:
    annotations = (
        None
        if read_only is None and destructive is None
        else mcp_types.ToolAnnotations(read_only_hint=read_only, destructive_hint=destructive)
    )
    return mcp_types.Tool(name="t", input_schema={"type": "object"}, annotations=annotations)


@pytest.mark.parametrize(
    ("trusted", "override", "read_only", "destructive", "expected"),
    [
        (True, None, True, None, "low"),
        (True, None, True, True, "low"),
        (True, None, False, False, "medium"),
        (True, None, None, False, "medium"),
        (True, None, False, True, "high"),
        (True, None, False, None, "high"),
        (True, None, None, None, "high"),
        (False, None, True, None, "high"),
        (False, None, False, False, "high"),
        (False, "low", False, True, "low"),
        (True, "medium", True, None, "medium"),
    ],
)
def test_risk_comes_from_annotations_only_for_trusted_servers(
    trusted: bool,
    override: str | None,
    read_only: bool | None,
    destructive: bool | None,
    expected: str,
) -> None:
    spec = McpServerSpec(name="s", allow=("*",), command="x", trusted=trusted, risk=override)
    assert tool_risk(spec, _tool(read_only, destructive)) == expected


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {"type": "string"}}}, None),
        ({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}, None),
        ({"type": "object", "properties": {"a": {"type": "bogus"}}}, "not a valid JSON Schema"),
        ({"type": "object", "required": "a"}, "not a valid JSON Schema"),
        ({"type": "string"}, "arguments object"),
        ({"type": "object", "properties": {"a": {"$ref": "https://x.test/s"}}}, "outside"),
    ],
)
def test_schema_problems(schema: dict[str, Any], problem: str | None) -> None:
    found = schema_problem(schema)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_result_text_converts_every_content_kind() -> None:
    result = mcp_types.CallToolResult(
        content=[
            mcp_types.TextContent(type="text", text="hello"),
            mcp_types.ImageContent(type="image", data="AAAA", mime_type="image/png"),
            mcp_types.AudioContent(type="audio", data="AAAAAAAA", mime_type="audio/wav"),
            mcp_types.EmbeddedResource(
                type="resource",
                resource=mcp_types.TextResourceContents(uri="file:///a.txt", text="inside"),
            ),
            mcp_types.ResourceLink(type="resource_link", name="doc", uri="file:///doc.pdf"),
        ],
        structured_content={"n": 1},
    )
    assert result_text(result).splitlines() == [
        "hello",
        "[image: image/png, 3 bytes, not shown]",
        "[audio: audio/wav, 6 bytes, not shown]",
        "[resource file:///a.txt]",
        "inside",
        "[resource link doc <file:///doc.pdf>]",
        "{",
        '  "n": 1',
        "}",
    ]
    # Structured content that a text block already repeats is not said twice.
    mirrored = mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text='{"n": 1}')], structured_content={"n": 1}
    )
    assert result_text(mirrored) == '{"n": 1}'
    wrapped = mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text="4")], structured_content={"result": 4}
    )
    assert result_text(wrapped) == "4"


def test_importing_the_module_does_not_import_the_sdk() -> None:
    probe = "import sys, runner.tools.mcp; print('mcp' in sys.modules, 'mcp_types' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert output.strip() == "False False"


# ---------------------------------------------------------------------------------------------
# real servers nobody here wrote


def test_mcp_server_time_from_pypi(tmp_path: Path) -> None:
    command = time_server_command()
    spec = McpServerSpec(
        name="time",
        allow=("get_current_time",),
        command=command,
        args=("--local-timezone", "UTC"),
        trusted=True,
    )

    async def scenario() -> tuple[list[McpTool], str, int | None]:
        async with McpServer(spec, tmp_path) as server:
            assert {t.name for t in server.listed} >= {"get_current_time", "convert_time"}
            tools, warnings = server.expose(timeout=DEADLINE)
            assert warnings == []
            output = await tools[0].call({"timezone": "Europe/Paris"})
            return tools, output, server.pid

    tools, output, pid = run(scenario())
    [tool] = tools
    assert (tool.name, tool.qualified_name, tool.source) == (
        "time__get_current_time",
        "time.get_current_time",
        "mcp:time",
    )
    assert tool.risk == "low"  # trusted, readOnlyHint
    assert "timezone" in tool.parameters["properties"]
    assert json.loads(output)["timezone"] == "Europe/Paris"
    assert pid is not None
    assert_all_dead([pid])


def test_filesystem_server_from_npm_runs_on_node(tmp_path: Path) -> None:
    script = filesystem_server_script()
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_text("hello from a file\n")
    (tmp_path / "outside.txt").write_text("private")
    spec = McpServerSpec(
        name="fs",
        allow=("read_text_file", "list_directory", "write_file", "create_directory"),
        command="node",
        args=(str(script), str(root)),
        trusted=True,
        # The package lives in this checkout's .ci-node, which a sandbox hides when the
        # checkout is in /tmp or a home folder: readable, as a user would list it.
        sandbox=SandboxSpec(readable=(str(script.parents[4]),)),
    )

    async def scenario() -> tuple[dict[str, McpTool], str, str, set[int]]:
        async with McpServer(spec, tmp_path) as server:
            tools, warnings = server.expose(timeout=DEADLINE)
            assert warnings == []
            by_name = {t.mcp_name: t for t in tools}
            content = await by_name["read_text_file"].call({"path": str(root / "notes.txt")})
            with pytest.raises(ToolError) as refused:
                await by_name["read_text_file"].call({"path": str(tmp_path / "outside.txt")})
            assert server.pid is not None
            group = {server.pid, *descendants(server.pid)}
            return by_name, content, str(refused.value), group

    by_name, content, refused, group = run(scenario())
    assert sorted(by_name) == sorted(spec.allow)
    assert {name: tool.risk for name, tool in by_name.items()} == {
        "read_text_file": "low",  # readOnlyHint
        "list_directory": "low",
        "create_directory": "medium",  # destructiveHint: false
        "write_file": "high",  # destructiveHint: true
    }
    assert content == "hello from a file\n"
    assert "fs.read_text_file failed" in refused and "outside" in refused.lower()
    assert_all_dead(group)


def test_streamable_http_server_with_a_header_from_the_environment(
    tmp_path: Path, http_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TOKEN", "token-from-env")
    spec = McpServerSpec(
        name="web",
        allow=("echo", "header", "huge"),
        url=http_server,
        headers_env={"X-Toy-Token": "TOY_TOKEN"},
    )

    async def scenario() -> tuple[list[McpTool], list[str]]:
        async with McpServer(spec, tmp_path) as server:
            assert server.pid is None
            tools, _ = server.expose(timeout=DEADLINE)
            by_name = {t.mcp_name: t for t in tools}
            outputs = [
                await by_name["echo"].call({"text": "over HTTP"}),
                await by_name["header"].call({"name": "X-Toy-Token"}),
                await by_name["huge"].call({"size": 3_000_000}),  # more than one 1 MiB event
            ]
            return tools, outputs

    tools, [echo, header, huge] = run(scenario())
    assert {t.risk for t in tools} == {"high"}  # untrusted: annotations are ignored
    assert (echo, header, len(huge)) == ("over HTTP", "token-from-env", 3_000_000)


def test_a_missing_header_variable_is_a_setup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOY_TOKEN", raising=False)
    spec = McpServerSpec(
        name="web", allow=("*",), url="http://127.0.0.1:9/mcp", headers_env={"X-T": "TOY_TOKEN"}
    )
    with pytest.raises(SetupError, match="TOY_TOKEN"):
        run(McpServer(spec, tmp_path).start())


def test_an_http_server_that_is_not_there_is_a_setup_error_naming_it(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    spec = McpServerSpec(name="web", allow=("*",), url=url, startup_timeout=DEADLINE)
    with pytest.raises(SetupError) as failure:
        run(McpServer(spec, tmp_path).start())
    assert f"MCP server 'web' ({url})" in str(failure.value)


# ---------------------------------------------------------------------------------------------
# through agentrun's loop


def test_a_run_calls_a_real_mcp_tool_and_records_the_result(tmp_path: Path) -> None:
    command = time_server_command()
    spec = agent_spec(
        tmp_path,
        f"""
        time:
          command: {json.dumps(command)}
          args: [--local-timezone, UTC]
          allow: [get_current_time]
          trusted: true
        """,
    )
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [call("time__get_current_time", {"timezone": "Asia/Tokyo"}), text("It is late in Tokyo.")]
    )
    finished = run(run_with_mcp(spec, model, store))
    assert finished.stop_reason is StopReason.COMPLETED
    offered = [t["function"]["name"] for t in model.requests[0][1]]
    assert offered == ["time__get_current_time"]  # convert_time is not allowed
    [row] = store.tool_calls(finished.run_id)
    assert (row["tool"], row["status"], row["risk"], row["decision"]) == (
        "time__get_current_time",
        "ok",
        "low",
        "allow",
    )
    assert json.loads(row["result"])["timezone"] == "Asia/Tokyo"
    assert processes_mentioning(command) == set()


def test_high_risk_mcp_tool_needs_approval_and_unlisted_tools_are_never_offered(
    tmp_path: Path,
) -> None:
    spec = agent_spec(
        tmp_path,
        f"""
        toy:
          command: {json.dumps(sys.executable)}
          args: [{json.dumps(str(TOY))}, stdio]
          allow: [echo, add]
        """,
    )
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [call("toy__secret"), call("toy__echo", {"text": "hi"}), text("never reached")]
    )
    finished = run(run_with_mcp(spec, model, store))
    offered = sorted(t["function"]["name"] for t in model.requests[0][1])
    assert offered == ["toy__add", "toy__echo"]
    assert finished.stop_reason is StopReason.APPROVAL_REQUIRED
    assert "toy__echo" in finished.message
    rows = store.tool_calls(finished.run_id)
    assert (rows[0]["tool"], rows[0]["status"], rows[0]["decision"]) == (
        "toy__secret",
        "refused",
        "deny",
    )
    assert "no tool named 'toy__secret'" in rows[0]["result"]
    assert all(r["status"] != "ok" for r in rows)  # echo (untrusted: high) never ran
    assert len(model.requests) == 2
    assert processes_mentioning(str(TOY)) == set()


def test_a_hanging_tool_times_out_and_the_server_still_answers(tmp_path: Path) -> None:
    spec = agent_spec(
        tmp_path,
        f"""
        toy:
          command: {json.dumps(sys.executable)}
          args: [{json.dumps(str(TOY))}, stdio, --child-pid-file, {json.dumps(str(tmp_path / "toy.child"))}]
          allow: [hang, echo]
          trusted: true
        """,
        "budgets:\n  tool_timeout: 1s\n",
    )
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [call("toy__hang"), call("toy__echo", {"text": "still here"}), text("done")]
    )
    finished = run(run_with_mcp(spec, model, store))
    assert finished.stop_reason is StopReason.COMPLETED
    hang, echo = store.tool_calls(finished.run_id)
    assert (hang["status"], echo["status"], echo["result"]) == ("error", "ok", "still here")
    assert "within 1 s" in hang["result"]
    assert hang["duration_s"] < DEADLINE
    assert_all_dead([child_pid(tmp_path)])
    assert processes_mentioning(str(tmp_path / "toy.child")) == set()


def test_a_server_that_crashes_mid_run_becomes_a_tool_error(tmp_path: Path) -> None:
    spec = agent_spec(
        tmp_path,
        f"""
        toy:
          command: {json.dumps(sys.executable)}
          args: [{json.dumps(str(TOY))}, stdio, --child-pid-file, {json.dumps(str(tmp_path / "toy.child"))}]
          allow: [crash, echo]
          risk: low
        """,
        "budgets:\n  tool_timeout: 30s\n",
    )
    store = RunStore(tmp_path / "runs.db")
    model = ScriptedModel(
        [call("toy__crash"), call("toy__echo", {"text": "anyone?"}), text("it broke")]
    )
    finished = run(run_with_mcp(spec, model, store))
    assert finished.stop_reason is StopReason.COMPLETED
    crash, echo = store.tool_calls(finished.run_id)
    assert crash["status"] == echo["status"] == "error"
    assert "MCP server 'toy' stopped unexpectedly" in crash["result"]
    assert "crashing on purpose" in crash["result"]  # the tail of its stderr
    assert echo["result"] == crash["result"]  # later calls fail at once, the same way
    assert crash["duration_s"] < DEADLINE  # ended long before tool_timeout
    assert_all_dead([child_pid(tmp_path)])
    assert processes_mentioning(str(tmp_path / "toy.child")) == set()


def test_a_crash_seen_by_the_client_kills_the_servers_children_at_once(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path, allow=("crash",))

    async def scenario() -> tuple[int, set[int]]:
        async with McpServer(spec, tmp_path) as server:
            assert server.pid is not None
            family = {server.pid, *descendants(server.pid)}
            [crash], _ = server.expose(timeout=DEADLINE)
            with pytest.raises(ToolError, match="stopped unexpectedly"):
                await crash.call({})
            assert_all_dead(family)  # before the server is closed
            return server.pid, family

    pid, family = run(scenario())
    assert child_pid(tmp_path) in family and pid in family


# ---------------------------------------------------------------------------------------------
# servers that do not start


def test_a_server_that_never_starts_fails_with_its_stderr_and_others_are_stopped(
    tmp_path: Path,
) -> None:
    spec = agent_spec(
        tmp_path,
        f"""
        good:
          command: {json.dumps(sys.executable)}
          args: [{json.dumps(str(TOY))}, stdio, --child-pid-file, {json.dumps(str(tmp_path / "good.child"))}]
          allow: ["*"]
        stuck:
          command: {json.dumps(sys.executable)}
          args: [{json.dumps(str(TOY))}, stall, --child-pid-file, {json.dumps(str(tmp_path / "stuck.child"))}]
          allow: ["*"]
          startup_timeout: 3s
        """,
    )

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            await open_mcp_tools(spec, stack)

    with pytest.raises(SetupError) as failure:
        run(scenario())
    message = str(failure.value)
    assert "MCP server 'stuck'" in message
    assert "did not start within 3 s" in message
    assert "warming up forever" in message  # the tail of its stderr
    assert_all_dead([child_pid(tmp_path, "stuck")])
    if (tmp_path / "good.child").exists():  # it may have been stopped before spawning it
        assert_all_dead([child_pid(tmp_path, "good")])
    assert processes_mentioning(str(tmp_path)) == set()


def test_a_server_that_exits_at_once_names_itself_and_its_stderr(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path, mode="exit")
    with pytest.raises(SetupError) as failure:
        run(McpServer(spec, tmp_path).start())
    message = str(failure.value)
    assert "MCP server 'toy'" in message and "before it started" in message
    assert "missing configuration TOY_CONFIG" in message
    assert "agentrun-mcp-pid" not in message


def test_a_missing_command_or_cwd_is_a_setup_error(tmp_path: Path) -> None:
    missing = McpServerSpec(name="nope", allow=("*",), command="agentrun-no-such-mcp-server")
    with pytest.raises(SetupError, match="'agentrun-no-such-mcp-server' was not found"):
        run(McpServer(missing, tmp_path).start())
    bad_cwd = McpServerSpec(name="nope", allow=("*",), command=sys.executable, cwd="absent")
    with pytest.raises(SetupError, match="working directory"):
        run(McpServer(bad_cwd, tmp_path).start())


def test_a_run_that_crashes_still_stops_its_servers(tmp_path: Path) -> None:
    spec = agent_spec(
        tmp_path,
        f"""
        toy:
          command: {json.dumps(sys.executable)}
          args: [{json.dumps(str(TOY))}, stdio, --child-pid-file, {json.dumps(str(tmp_path / "toy.child"))}]
          allow: [echo]
        """,
    )
    family: set[int] = set()

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            [tool], _ = await open_mcp_tools(spec, stack)
            assert isinstance(tool, McpTool) and tool.server.pid is not None
            family.update({tool.server.pid, *descendants(tool.server.pid)})
            raise RuntimeError("the run crashed")

    with pytest.raises(RuntimeError, match="the run crashed"):
        run(scenario())
    assert child_pid(tmp_path) in family
    assert_all_dead(family)


def test_a_cancelled_run_stops_its_servers_during_a_call(tmp_path: Path) -> None:
    spec = agent_spec(
        tmp_path,
        f"""
        toy:
          command: {json.dumps(sys.executable)}
          args: [{json.dumps(str(TOY))}, stdio, --child-pid-file, {json.dumps(str(tmp_path / "toy.child"))}]
          allow: [hang]
        """,
    )
    family: set[int] = set()
    calling = asyncio.Event()

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            [tool], _ = await open_mcp_tools(spec, stack)
            assert isinstance(tool, McpTool) and tool.server.pid is not None
            family.update({tool.server.pid, *descendants(tool.server.pid)})
            calling.set()
            await tool.call({})  # never returns

    async def main() -> None:
        task = asyncio.create_task(scenario())
        await calling.wait()
        await asyncio.sleep(0.2)  # the call is on its way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert child_pid(tmp_path) in family
    assert_all_dead(family)


def test_an_interpreter_that_exits_without_closing_kills_its_servers(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from runner.spec import McpServerSpec, SandboxSpec
        from runner.tools.mcp import McpServer

        spec = McpServerSpec(
            name="toy", allow=("*",), command=sys.executable,
            args=({str(TOY)!r}, "stdio", "--child-pid-file", {str(tmp_path / "toy.child")!r}),
            sandbox=SandboxSpec(mode="off"),
        )
        loop = asyncio.new_event_loop()
        server = McpServer(spec, Path({str(tmp_path)!r}))
        loop.run_until_complete(server.start())
        print(server.pid, flush=True)
        raise SystemExit(3)  # the run dies; nothing closes the server
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    pid = int(result.stdout.split()[0])
    assert_all_dead([pid, child_pid(tmp_path)])


# ---------------------------------------------------------------------------------------------
# exposure, environment, results


def test_exposure_follows_allow_and_skips_invalid_schemas_with_a_warning(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path, allow=("e*", "bad_schema", "wipe", "not_there"), trusted=True)

    async def scenario() -> tuple[list[McpTool], list[str], list[McpTool], list[str]]:
        async with McpServer(spec, tmp_path) as server:
            tools, warnings = server.expose(timeout=5)
            clashing, clash_warnings = server.expose(timeout=5, taken={"toy__echo"})
            return tools, warnings, clashing, clash_warnings

    tools, warnings, clashing, clash_warnings = run(scenario())
    assert sorted(t.name for t in tools) == ["toy__echo", "toy__env", "toy__wipe"]
    assert {t.name: t.risk for t in tools} == {
        "toy__echo": "low",
        "toy__env": "low",
        "toy__wipe": "high",
    }
    assert len(warnings) == 2
    assert any("'bad_schema' skipped" in w and "not a valid JSON Schema" in w for w in warnings)
    assert any("'not_there' is not offered" in w for w in warnings)
    assert "toy__echo" not in {t.name for t in clashing}
    assert any("already used" in w for w in clash_warnings)
    assert_all_dead([child_pid(tmp_path)])


def test_open_mcp_tools_returns_warnings_and_skips_names_of_other_tools(tmp_path: Path) -> None:
    spec = agent_spec(
        tmp_path,
        f"""
        toy:
          command: {json.dumps(sys.executable)}
          args: [{json.dumps(str(TOY))}, stdio]
          allow: [echo, bad_schema]
        """,
    )

    async def scenario() -> tuple[list[str], list[str]]:
        async with contextlib.AsyncExitStack() as stack:
            tools, warnings = await open_mcp_tools(spec, stack)
            return [t.name for t in tools], warnings

    names, warnings = run(scenario())
    assert names == ["toy__echo"]
    assert len(warnings) == 1 and "bad_schema" in warnings[0]


def test_stdio_servers_see_only_path_home_and_listed_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_LISTED", "yes")
    monkeypatch.setenv("TOY_SECRET", "no")
    for name in ("USER", "LOGNAME", "SHELL", "TERM"):
        monkeypatch.setenv(name, "someone")
    spec = toy_spec(tmp_path, allow=("env",), env=("TOY_LISTED", "TERM"))

    async def scenario() -> str:
        async with McpServer(spec, tmp_path) as server:
            [tool], _ = server.expose(timeout=DEADLINE)
            return await tool.call({})

    names = set(run(scenario()).split())
    assert {"PATH", "HOME", "TOY_LISTED", "TERM"} <= names
    assert not names & {"TOY_SECRET", "USER", "LOGNAME", "SHELL"}
    # What remains is what the server's own shell and interpreter set for themselves.
    assert names - {"PATH", "HOME", "TOY_LISTED", "TERM"} <= {"PWD", "LC_CTYPE", "SHLVL", "_"}


def test_results_errors_and_huge_outputs(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path, allow=("mixed", "fail", "huge", "echo"))

    async def scenario() -> tuple[str, str, int, str]:
        async with McpServer(spec, tmp_path) as server:
            tools, _ = server.expose(timeout=DEADLINE)
            by_name = {t.mcp_name: t for t in tools}
            mixed = await by_name["mixed"].call({})
            with pytest.raises(ToolError) as failed:
                await by_name["fail"].call({})
            huge = await by_name["huge"].call({"size": 5_000_000})
            after = await by_name["echo"].call({"text": "fine"})
            return mixed, str(failed.value), len(huge), after

    mixed, failed, huge_size, after = run(scenario())
    assert mixed.splitlines() == [
        "plain text",
        "[image: image/png, 72 bytes, not shown]",
        "[resource file:///notes.txt, text/plain]",
        "embedded text",
        "[resource file:///blob.bin, application/octet-stream, 3 bytes, not shown]",
        "[resource link report <file:///report.pdf>]",
        "{",
        '  "answer": 42',
        "}",
    ]
    assert failed.startswith("toy.fail failed:")
    assert (huge_size, after) == (5_000_000, "fine")


def test_calls_after_close_fail_at_once(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path, allow=("echo",))

    async def scenario() -> McpTool:
        async with McpServer(spec, tmp_path) as server:
            [tool], _ = server.expose(timeout=DEADLINE)
        with pytest.raises(ToolError, match="has been stopped"):
            await tool.call({"text": "late"})
        return tool

    run(scenario())
    assert_all_dead([child_pid(tmp_path)])
