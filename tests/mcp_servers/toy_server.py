"""A small MCP server built on the official SDK, for agentrun's MCP client tests.

Usage::

    python toy_server.py stdio [--child-pid-file F]   # stdio server
    python toy_server.py http --port N                # streamable HTTP on 127.0.0.1:N/mcp
    python toy_server.py stall [--child-pid-file F]   # never answers initialize
    python toy_server.py exit                         # writes to stderr and exits 3

Tools: ``echo`` (read-only), ``add`` (not destructive), ``wipe`` (destructive),
``hang`` (never returns), ``crash`` (the process exits mid-call), ``fail`` (an error
result), ``huge`` (``size`` bytes of text), ``mixed`` (image, embedded resources, a link
and structured content), ``env`` (the server's environment variable names), ``bad_schema``
(its input schema is not a valid JSON Schema), ``header`` (an HTTP request header's
value) and ``secret`` (never in an allow list).
With ``--child-pid-file`` the server also starts a ``sleep`` child in its own process
group and writes the child's PID to the file (to check that children die with the server).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer

TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


class ToyServer(MCPServer[Any]):
    async def list_tools(self) -> list[types.Tool]:
        tools = await super().list_tools()
        tools.append(
            types.Tool(
                name="bad_schema",
                description="A tool whose input schema is broken.",
                input_schema={"type": "object", "properties": {"x": {"type": "bogus"}}},
            )
        )
        return tools


def build() -> ToyServer:
    server = ToyServer("toy", version="1.0", log_level="WARNING")
    read_only = types.ToolAnnotations(read_only_hint=True)

    @server.tool(description="Echo the text back.", annotations=read_only)
    def echo(text: str) -> str:
        return text

    @server.tool(
        description="Add two numbers.",
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=False),
    )
    def add(a: int, b: int) -> str:
        return str(a + b)

    @server.tool(
        description="Pretend to delete everything.",
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=True),
    )
    def wipe() -> str:
        return "wiped"

    @server.tool(description="Never returns.", annotations=read_only)
    async def hang() -> str:
        await anyio.sleep(3600)
        return "woke up"

    @server.tool(description="Kills the server process mid-call.")
    def crash() -> str:
        print("toy server: crashing on purpose", file=sys.stderr, flush=True)
        os._exit(7)

    @server.tool(description="Fails with an error result.")
    def fail() -> str:
        raise ValueError("the toy tool failed on purpose")

    @server.tool(description="Returns `size` bytes of text.", annotations=read_only)
    def huge(size: int) -> str:
        return "x" * size

    @server.tool(description="Returns every kind of content.", annotations=read_only)
    def mixed() -> types.CallToolResult:
        return types.CallToolResult(
            content=[
                types.TextContent(type="text", text="plain text"),
                types.ImageContent(type="image", data=TINY_PNG, mime_type="image/png"),
                types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri="file:///notes.txt", mime_type="text/plain", text="embedded text"
                    ),
                ),
                types.EmbeddedResource(
                    type="resource",
                    resource=types.BlobResourceContents(
                        uri="file:///blob.bin", mime_type="application/octet-stream", blob="AAEC"
                    ),
                ),
                types.ResourceLink(type="resource_link", name="report", uri="file:///report.pdf"),
            ],
            structured_content={"answer": 42},
        )

    @server.tool(description="Names of the server's environment variables.", annotations=read_only)
    def env() -> str:
        return " ".join(sorted(os.environ))

    @server.tool(description="The value of an HTTP request header.", annotations=read_only)
    def header(name: str, ctx: Context) -> str:
        headers = ctx.headers or {}
        return headers.get(name.lower(), "(not sent)")

    @server.tool(description="Never allowed.", annotations=read_only)
    def secret() -> str:
        return "the secret"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["stdio", "http", "stall", "exit"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--child-pid-file", default="")
    options = parser.parse_args()
    if options.mode == "exit":
        print("toy server: cannot start: missing configuration TOY_CONFIG", file=sys.stderr)
        sys.exit(3)
    if options.child_pid_file:
        # The child inherits stdout: the MCP pipe stays open if the server dies.
        child = subprocess.Popen(["sleep", "600"])
        with open(options.child_pid_file, "w", encoding="utf-8") as handle:
            handle.write(str(child.pid))
    if options.mode == "stall":
        print("toy server: warming up forever", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)
    server = build()
    if options.mode == "http":
        server.run("streamable-http", host="127.0.0.1", port=options.port)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
