"""MCP tool calls: agentrun's added latency per call, and server startup time.

One stdio server is started through :class:`runner.tools.mcp.McpServer`. The same tool of
the same server is then called N times each way, alternating: directly with the SDK's
``ClientSession.call_tool`` on agentrun's own session, and through ``McpTool.call`` (the
path the loop takes: the stopped-server check, the call with its timeout, the result
turned into text). The figure is the median of the per-pair differences (wall clock).

Startup is timed both ways too, K times each: ``McpServer.start()`` up to "tools listed"
(agentrun: environment filtering, the ``sh`` wrapper that reports the PID, initialize,
every ``tools/list`` page) against the bare SDK (``stdio_client`` + ``initialize`` +
``list_tools``), and ``close()`` (which waits for the process group to be gone).

Run: python bench/mcp_latency.py [--server toy|time] [--calls 500] [--starts 5]
  toy:  tests/mcp_servers/toy_server.py, tool ``echo`` (no install needed)
  time: ``mcp-server-time`` from PyPI (pip install mcp-server-time==2026.10.19),
        tool ``get_current_time``
Target: under 2 ms added per call.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from runner.spec import McpServerSpec  # noqa: E402
from runner.tools.mcp import McpServer, McpTool  # noqa: E402


def server_spec(kind: str) -> tuple[McpServerSpec, str, dict[str, Any]]:
    """The server's spec, the tool to call and its arguments."""
    if kind == "time":
        beside = Path(sys.executable).parent / "mcp-server-time"
        command = str(beside) if beside.exists() else shutil.which("mcp-server-time")
        if not command:
            sys.exit("mcp-server-time is not installed: pip install mcp-server-time==2026.10.19")
        spec = McpServerSpec(
            name="time",
            allow=("get_current_time",),
            command=command,
            args=("--local-timezone", "UTC"),
            trusted=True,
        )
        return spec, "get_current_time", {"timezone": "UTC"}
    toy = ROOT / "tests" / "mcp_servers" / "toy_server.py"
    spec = McpServerSpec(
        name="toy", allow=("echo",), command=sys.executable, args=(str(toy), "stdio")
    )
    return spec, "echo", {"text": "hello"}


async def time_calls(
    spec: McpServerSpec, tool_name: str, arguments: dict[str, Any], calls: int
) -> dict[str, float]:
    async with McpServer(spec, Path(tempfile.gettempdir())) as server:
        [tool], _ = server.expose(timeout=60.0)
        assert isinstance(tool, McpTool)
        session = server.session
        for _ in range(20):  # warm up both paths
            await session.call_tool(tool_name, arguments)
            await tool.call(arguments)
        direct: list[float] = []
        through: list[float] = []
        for index in range(calls):
            order = (0, 1) if index % 2 == 0 else (1, 0)
            for which in order:
                started = time.perf_counter()
                if which == 0:
                    await session.call_tool(tool_name, arguments)
                    direct.append(time.perf_counter() - started)
                else:
                    await tool.call(arguments)
                    through.append(time.perf_counter() - started)
    added = [b - a for a, b in zip(direct, through, strict=True)]
    return {
        "direct": statistics.median(direct),
        "agentrun": statistics.median(through),
        "added": statistics.median(added),
    }


async def time_startup(spec: McpServerSpec, starts: int) -> dict[str, float]:
    ours: list[float] = []
    closes: list[float] = []
    bare: list[float] = []
    assert spec.command is not None
    parameters = StdioServerParameters(command=spec.command, args=list(spec.args))
    for _ in range(starts):
        server = McpServer(spec, Path(tempfile.gettempdir()))
        try:
            started = time.perf_counter()
            await server.start()
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            await server.close()
            closes.append(time.perf_counter() - started)
        finally:
            await server.close()  # a no-op once closed; stops the server if anything failed

        started = time.perf_counter()
        async with stdio_client(parameters) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            await s.list_tools()
            bare.append(time.perf_counter() - started)
    return {
        "agentrun": statistics.median(ours),
        "sdk": statistics.median(bare),
        "close": statistics.median(closes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["toy", "time"], default="toy")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--starts", type=int, default=5)
    options = parser.parse_args()
    spec, tool_name, arguments = server_spec(options.server)

    calls = asyncio.run(time_calls(spec, tool_name, arguments, options.calls))
    print(f"server: {options.server} ({spec.command}), tool {tool_name}, {options.calls} calls")
    print(f"  one call, SDK ClientSession.call_tool: {calls['direct'] * 1000:8.3f} ms (median)")
    print(f"  one call, agentrun McpTool.call:       {calls['agentrun'] * 1000:8.3f} ms (median)")
    verdict = "OK" if calls["added"] < 0.002 else "OVER TARGET"
    print(
        f"  added by agentrun:                     {calls['added'] * 1000:8.3f} ms "
        f"(median of pairs; target < 2 ms: {verdict})"
    )

    startup = asyncio.run(time_startup(spec, options.starts))
    print(f"startup ({options.starts} runs, median):")
    print(f"  agentrun McpServer.start():            {startup['agentrun'] * 1000:8.1f} ms")
    print(f"  bare SDK stdio_client + initialize:    {startup['sdk'] * 1000:8.1f} ms")
    print(f"  agentrun McpServer.close():            {startup['close'] * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
