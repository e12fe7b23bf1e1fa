"""MCP servers as tool sources, on the official ``mcp`` SDK (stdio and streamable HTTP).

:class:`McpServer` runs one server of the spec's ``tools.mcp`` for the length of a run:

- **stdio** (``command``, ``args``, ``cwd`` relative to the workdir): the server runs in the
  server's ``sandbox`` (:mod:`runner.sandbox`), in its own session and process group, with
  an environment of ``PATH``, ``HOME`` and the variables its ``env`` lists (values from
  ``os.environ``) and nothing else; its stderr goes to a temporary file whose tail names
  the cause when it fails. On close the SDK closes its stdin, then terminates the group;
  agentrun then kills whatever is left of the group (a child the server left behind), and
  an ``atexit`` hook kills every group still alive when the interpreter exits.
- **streamable HTTP** (``url``): header values are read from the environment variables
  ``headers_env`` names, never from the spec. When the run's telemetry is on, each request
  carries the W3C ``traceparent`` of the run's current span (:mod:`runner.telemetry`).

Startup (initialize, then every page of ``tools/list``) must end within
``startup_timeout``; a server that does not start, or exits first, raises
:class:`~runner.errors.SetupError` naming it and the tail of its stderr.

:meth:`McpServer.expose` turns the listed tools into :class:`McpTool` objects: only tools
the ``allow`` globs match (``*``: all), named ``SERVER__TOOL`` (OpenAI and Anthropic accept
only ``[A-Za-z0-9_-]{1,64}`` as a function name, so neither ``.`` nor ``/`` can separate
the parts; :attr:`McpTool.qualified_name` keeps the ``SERVER.TOOL`` form spec rules use).
A tool whose input schema is not a valid JSON Schema (draft 2020-12) for an arguments
object is skipped with a warning. Risk: the spec's ``risk`` wins; else, for a server marked
``trusted``, the annotations decide (``readOnlyHint`` → low, ``destructiveHint: false`` →
medium, otherwise high); an untrusted server's tools are high risk.

:meth:`McpTool.call` calls the tool with the run's ``tool_timeout`` and turns the result
into text (images and binary resources as placeholders, structured content as JSON). An
error result, a timeout, or a server that stopped mid-run raises
:class:`~runner.errors.ToolError`; once a server has stopped, every later call fails at
once with the same message.

:func:`open_mcp_tools` starts every server of a spec in parallel and registers their
cleanup on the caller's :class:`contextlib.AsyncExitStack`.

The ``mcp`` package is imported only when a server starts: importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from .. import telemetry
from ..errors import SetupError, ToolError
from ..processes import kill_group, process_alive
from ..sandbox import session as sandbox
from ..sandbox.session import Launch
from ..spec.vocabulary import Risk
from . import Tool

if TYPE_CHECKING:
    import anyio
    import mcp_types
    from mcp import ClientSession
    from mcp.client._transport import Transport, TransportStreams

    from ..spec import AgentSpec, McpServerSpec

#: Separator between the server's name and the tool's name in the name the model calls.
SEPARATOR = "__"
#: Longest function name OpenAI accepts (Anthropic: 128).
MAX_TOOL_NAME = 64
#: Most ``tools/list`` pages read from one server (a paginator that never ends cannot hang).
MAX_LIST_PAGES = 100
#: Lines and bytes of a server's stderr quoted in an error.
STDERR_TAIL_LINES = 20
STDERR_TAIL_BYTES = 4096
#: Largest server-sent event accepted over streamable HTTP (the SDK's default is 1 MiB,
#: which would turn a large tool result into an error; the loop truncates it instead).
MAX_SSE_EVENT_BYTES = 64 * 1024 * 1024

#: Seconds between two checks that a stdio server's process is still alive.
WATCH_INTERVAL = 0.2

_PID_MARK = "agentrun-mcp-pid "
_NAME_INVALID = re.compile(r"[^A-Za-z0-9_-]")
_GLOB = re.compile(r"[*?\[]")
#: Variables the SDK's stdio client always passes from ``os.environ``; agentrun removes
#: those other than PATH and HOME unless the server's ``env`` lists them.
_SDK_DEFAULT_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")

#: Process groups of stdio servers that are running: killed at interpreter exit.
_LIVE_GROUPS: set[int] = set()
_atexit_registered = False


def _kill_live_groups() -> None:
    for pgid in list(_LIVE_GROUPS):
        _kill_group(pgid)


def _kill_group(pgid: int) -> None:
    kill_group(pgid)
    _LIVE_GROUPS.discard(pgid)


def _track_group(pgid: int) -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_kill_live_groups)
        _atexit_registered = True
    _LIVE_GROUPS.add(pgid)


# ---------------------------------------------------------------------------------------------
# naming, schemas, risk, results


def exposed_name(server: str, tool: str) -> str:
    """The name the model calls for ``tool`` of ``server``: ``SERVER__TOOL``.

    Characters outside ``[A-Za-z0-9_-]`` become ``_``; a name longer than 64 characters is
    cut and ends with a hash of the full name, so it stays unique.
    """
    name = f"{server}{SEPARATOR}{_NAME_INVALID.sub('_', tool)}"
    if len(name) <= MAX_TOOL_NAME:
        return name
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:8]
    return f"{name[: MAX_TOOL_NAME - 9]}_{digest}"


def tool_risk(spec: McpServerSpec, tool: mcp_types.Tool) -> Risk:
    """The risk of ``tool``: the spec's override, else annotations if trusted, else high."""
    if spec.risk:
        return spec.risk
    if not spec.trusted or tool.annotations is None:
        return Risk.HIGH
    if tool.annotations.read_only_hint is True:
        return Risk.LOW
    if tool.annotations.destructive_hint is False:
        return Risk.MEDIUM
    return Risk.HIGH


def _remote_refs(schema: Any) -> list[str]:
    """``$ref`` values that point outside the schema (they would need fetching)."""
    found: list[str] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                found.append(ref)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` cannot be a tool's input schema, or None when it can.

    It must be a valid JSON Schema (draft 2020-12, the dialect arguments are checked
    with) describing an object, with no ``$ref`` outside itself.
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict):
        return "it is not a JSON object"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(part) for part in error.absolute_path)
        return f"it is not a valid JSON Schema ({where + ': ' if where else ''}{error.message})"
    if schema.get("type") != "object":
        return "it does not describe an arguments object (type: object)"
    remote = _remote_refs(schema)
    if remote:
        return f"it refers to schemas outside itself ({remote[0]})"
    return None


def result_text(result: mcp_types.CallToolResult) -> str:
    """A tool result as the text the model reads.

    Text blocks as they are; images and audio as ``[image: MIME, N bytes]``; embedded
    text resources with their URI; binary resources and resource links as placeholders;
    structured content as JSON unless a text block already holds the same value.
    """
    import mcp_types

    parts: list[str] = []
    texts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
            texts.append(block.text)
        elif isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
            size = len(block.data) * 3 // 4
            parts.append(f"[{block.type}: {block.mime_type}, {size} bytes, not shown]")
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            mime = f", {resource.mime_type}" if resource.mime_type else ""
            if isinstance(resource, mcp_types.TextResourceContents):
                parts.append(f"[resource {resource.uri}{mime}]\n{resource.text}")
            else:
                size = len(resource.blob) * 3 // 4
                parts.append(f"[resource {resource.uri}{mime}, {size} bytes, not shown]")
        elif isinstance(block, mcp_types.ResourceLink):
            about = f": {block.description}" if block.description else ""
            parts.append(f"[resource link {block.name} <{block.uri}>{about}]")
        else:  # a content type newer than this code
            parts.append(f"[{getattr(block, 'type', 'unknown')} content, not shown]")
    structured = result.structured_content
    if structured is not None and not _mirrored(structured, texts):
        parts.append(json.dumps(structured, ensure_ascii=False, indent=2))
    return "\n".join(parts)


def _mirrored(structured: Any, texts: list[str]) -> bool:
    """Whether the text blocks already say what ``structured`` says.

    Servers are asked to repeat structured content as JSON text; many wrap a plain value
    as a one-key object (``{"result": value}``, ``{"content": text}``) next to its text.
    """
    candidates = [structured]
    if isinstance(structured, dict) and len(structured) == 1:
        candidates.extend(structured.values())
    for text in [*texts, "\n".join(texts)] if len(texts) > 1 else texts:
        if text in candidates:
            return True
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if value in candidates:
            return True
    return False


def _leaf_error(error: BaseException) -> BaseException:
    """The first meaningful exception inside (possibly nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        inner = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)]
        error = (inner or list(error.exceptions))[0]
    return error


# ---------------------------------------------------------------------------------------------
# the tool


class McpTool(Tool):
    """One allowed tool of a running :class:`McpServer`.

    Attributes:
        server: the server it belongs to.
        mcp_name: the tool's name on the server.
        qualified_name: ``SERVER.TOOL``, the form spec rules use.
        timeout: seconds one call may take (None: no limit of its own).
        annotations: the server's annotations (hints; they set the risk only if trusted).
    """

    def __init__(
        self,
        server: McpServer,
        tool: mcp_types.Tool,
        name: str,
        risk: Risk,
        timeout: float | None,
    ) -> None:
        self.server = server
        self.mcp_name = tool.name
        self.qualified_name = f"{server.name}.{tool.name}"
        self.name = name
        self.description = tool.description or tool.title or ""
        self.parameters = dict(tool.input_schema)
        self.risk = risk
        self.source = f"mcp:{server.name}"
        self.timeout = timeout
        self.annotations = tool.annotations

    @property
    def rule_name(self) -> str:
        """``SERVER.TOOL``: the name spec rules use."""
        return self.qualified_name

    def run(self, arguments: dict[str, Any]) -> str:
        """Not used: MCP tools are called with :meth:`call` on the run's event loop."""
        raise NotImplementedError("MCP tools are asynchronous; use call()")

    async def call(self, arguments: dict[str, Any]) -> str:
        """Call the tool on its server; the result as text.

        Raises:
            ToolError: an error result, a timeout, or a server that stopped.
        """
        result = await self.server.call_tool(self.mcp_name, arguments, self.timeout)
        text = result_text(result)
        if result.is_error:
            raise ToolError(f"{self.qualified_name} failed: {text or 'no details given'}")
        return text


# ---------------------------------------------------------------------------------------------
# the server


class McpServer:
    """One MCP server of a spec, started by :meth:`start` and stopped by :meth:`close`.

    Use ``async with McpServer(spec, workdir) as server:`` or :func:`open_mcp_tools`.
    Start and stop happen in a task of its own, which owns the SDK's transport and
    session (anyio requires them to be entered and left by the same task), so the server
    may be started and stopped from different tasks.

    Attributes:
        spec: the server's spec.
        name: its name in the spec.
        pid: the stdio server's process id, which is also its process group (None over
            HTTP, or before it started).
        listed: every tool the server lists (allowed or not), once started.
    """

    def __init__(self, spec: McpServerSpec, workdir: Path) -> None:
        self.spec = spec
        self.name = spec.name
        self.workdir = Path(workdir)
        self.pid: int | None = None
        self._launch: Launch | None = None
        self.listed: list[mcp_types.Tool] = []
        self._session: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None
        self._stopped: str | None = None
        self._closing = False
        self._stderr: TextIO | None = None
        self._group_killed = False

    async def __aenter__(self) -> McpServer:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> ClientSession:
        """The SDK session (for direct use, such as the latency benchmark)."""
        if self._session is None:
            raise RuntimeError(f"MCP server {self.name!r} is not running")
        return self._session

    # -- start and stop -----------------------------------------------------------------

    async def start(self) -> None:
        """Start the server, initialize the session and list its tools.

        Raises:
            SetupError: the server cannot be started, exits, or does not answer within
                ``startup_timeout``; the message names the server and quotes the tail of
                its stderr.
        """
        if self._task is not None:
            raise RuntimeError(f"MCP server {self.name!r} was already started")
        transport = self._transport()  # configuration errors come first, as SetupError
        self._task = asyncio.create_task(self._serve(transport), name=f"mcp-server-{self.name}")
        await self._ready.wait()
        if self._session is not None:
            return
        await asyncio.shield(self._task)  # let the transport finish stopping the process
        message = self._startup_message(self._failure)
        await self.close()
        raise SetupError(message)

    async def close(self) -> None:
        """Stop the server and kill its process group; safe to call more than once."""
        self._closing = True
        self._stopped = self._stopped or f"MCP server {self.name!r} has been stopped"
        task = self._task
        try:
            if task is not None and not task.done():
                if self._scope is not None:
                    self._scope.cancel()
                else:  # the task has not begun: nothing is running yet
                    task.cancel()
                try:
                    await asyncio.shield(task)
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # close() itself was cancelled; the group dies below
                    # else the server's task was cancelled from outside: it has ended
        finally:
            self._kill_group()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    async def _serve(self, transport: Transport) -> None:
        """The server's task: connect, start, then wait to be cancelled by :meth:`close`."""
        import anyio
        from mcp import ClientSession
        from mcp.types import Implementation

        from .. import __version__

        try:
            if self._closing:
                return
            with anyio.CancelScope() as self._scope:
                async with (
                    transport as (read_stream, write_stream),
                    ClientSession(
                        read_stream,
                        write_stream,
                        client_info=Implementation(name="agentrun", version=__version__),
                    ) as session,
                ):
                    with anyio.fail_after(self.spec.startup_timeout):
                        await session.initialize()
                        self.listed = await self._list_tools(session)
                    self._session = session
                    self.pid = self._read_pid()
                    if self.pid is not None:
                        _track_group(self.pid)
                        if self._launch is not None:
                            self._launch.started(self.pid)
                    self._ready.set()
                    await self._watch()
        except Exception as error:
            self._failure = _leaf_error(error)
        finally:
            self._session = None
            if self._stopped is None and self._ready.is_set():
                self._stopped = self._crash_message()
            if self.pid is None:
                self.pid = self._read_pid()
            self._kill_group()
            if self._launch is not None:
                self._launch.ended(None)
            self._ready.set()

    async def _watch(self) -> None:
        """Wait until cancelled, or until the stdio server's process has died.

        A dead server's output pipe may stay open (a child that inherited it), so the end
        of the stream alone does not reveal a crash: the process itself is watched, and
        leaving the session makes every pending call fail at once.
        """
        import anyio

        pid = self.pid
        if pid is None:
            await anyio.sleep_forever()
            return
        while process_alive(pid):
            await anyio.sleep(WATCH_INTERVAL)
        self._mark_stopped()

    async def _list_tools(self, session: ClientSession) -> list[mcp_types.Tool]:
        import mcp_types

        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    def _kill_group(self) -> None:
        """Kill what is left of the stdio server's process group (children it left behind).

        Once only: after that the group is gone and its id may be reused.
        """
        if self.pid is not None and not self._group_killed and sys.platform != "win32":
            self._group_killed = True
            _kill_group(self.pid)

    # -- transports ----------------------------------------------------------------------

    def _transport(self) -> Transport:
        if self.spec.command:
            return self._stdio_transport(self.spec.command)
        if self.spec.url:
            return self._http_transport(self.spec.url)
        raise SetupError(f"MCP server {self.name!r} has neither a command nor a url")

    def environment(self) -> dict[str, str]:
        """The stdio server's environment: PATH, HOME and the variables its ``env`` lists."""
        env: dict[str, str] = {}
        for variable in ("PATH", "HOME", *self.spec.env):
            value = os.environ.get(variable)
            if value is not None:
                env[variable] = value
        return env

    def _stdio_transport(self, command: str) -> Transport:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        cwd = (self.workdir / self.spec.cwd) if self.spec.cwd else self.workdir
        if not cwd.is_dir():
            raise SetupError(
                f"MCP server {self.name!r}: its working directory {str(cwd)!r} does not exist"
            )
        env = self.environment()
        if os.sep in command or (os.altsep and os.altsep in command):
            program = Path(command) if Path(command).is_absolute() else cwd / command
            found = os.access(program, os.X_OK) and program.is_file()
        else:
            found = shutil.which(command, path=env.get("PATH", os.defpath)) is not None
        if not found:
            raise SetupError(
                f"MCP server {self.name!r}: command {command!r} was not found"
                + ("" if os.sep in command else " on PATH")
                + "; install it or fix 'command' in the spec"
            )
        # Closed by close(); the server writes to it for as long as it runs.
        stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._stderr = cast(TextIO, stderr)
        if sys.platform == "win32":  # no process groups: run the command as it is
            program_name, args = command, list(self.spec.args)
        else:
            # The spec's sandbox (bubblewrap's command line, or the command as it is).
            self._launch = sandbox.launch(
                self.spec.sandbox,
                [command, *self.spec.args],
                cwd=cwd,
                env=env,
                workdir=self.workdir,
                source=f"mcp:{self.name}",
            )
            env = self._launch.env
            # A POSIX shell reports its PID (the server's, or bubblewrap's, after exec) on
            # stderr and drops the variables the SDK adds beyond PATH and HOME; values
            # never go on argv.
            drop = [v for v in _SDK_DEFAULT_ENV if v not in ("PATH", "HOME", *self.spec.env)]
            script = (f"unset {' '.join(drop)}; " if drop else "") + (
                f'echo "{_PID_MARK}$$" >&2; exec "$@"'
            )
            program_name = "/bin/sh"
            args = ["-c", script, f"agentrun-mcp-{self.name}", *self._launch.argv]
        parameters = StdioServerParameters(command=program_name, args=args, env=env, cwd=cwd)
        return stdio_client(parameters, errlog=self._stderr)

    def _http_transport(self, url: str) -> Transport:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        headers: dict[str, str] = {}
        for header, variable in self.spec.headers_env.items():
            value = os.environ.get(variable)
            if value is None:
                raise SetupError(
                    f"MCP server {self.name!r}: header {header!r} needs environment variable "
                    f"{variable}, which is not set"
                )
            headers[header] = value

        # The run's trace context (runner.telemetry), read at each request: the tool call in
        # flight, else the run. The SDK sends from tasks of its own, which do not see the
        # run's context change, so the run's TraceState is held here by reference.
        trace = telemetry.current()
        hooks: dict[str, list[Any]] = {}
        if trace is not None:

            async def traceparent(request: httpx2.Request) -> None:
                request.headers.update(trace.headers())

            hooks["request"] = [traceparent]

        @contextlib.asynccontextmanager
        async def connect() -> AsyncIterator[TransportStreams]:
            # The SDK's default timeouts (30 s, 300 s to read a stream); calls have their own.
            timeout = httpx2.Timeout(30.0, read=300.0)
            async with (
                httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks=hooks) as client,
                streamable_http_client(
                    url, http_client=client, max_sse_event_size=MAX_SSE_EVENT_BYTES
                ) as streams,
            ):
                yield streams

        return connect()

    # -- stderr and messages -------------------------------------------------------------

    def _stderr_bytes(self, size: int, offset: int | None = None) -> bytes:
        if self._stderr is None:
            return b""
        with contextlib.suppress(OSError, ValueError):
            fd = self._stderr.fileno()
            end = os.fstat(fd).st_size
            start = max(end - size, 0) if offset is None else offset
            return os.pread(fd, size, start)
        return b""

    def _read_pid(self) -> int | None:
        first = self._stderr_bytes(64, offset=0).decode("utf-8", "replace").split("\n", 1)[0]
        if first.startswith(_PID_MARK) and first[len(_PID_MARK) :].strip().isdigit():
            return int(first[len(_PID_MARK) :])
        return None

    def stderr_tail(self) -> str:
        """The last lines of the stdio server's stderr ("" over HTTP, or when silent)."""
        text = self._stderr_bytes(STDERR_TAIL_BYTES).decode("utf-8", "replace")
        lines = [line for line in text.splitlines() if not line.startswith(_PID_MARK)]
        return "\n".join(lines[-STDERR_TAIL_LINES:]).strip()

    def _with_stderr(self, message: str) -> str:
        tail = self.stderr_tail()
        if tail:
            return f"{message}; its stderr ends with:\n{tail}"
        if self.spec.command:
            return f"{message}; it wrote nothing to stderr"
        return message

    def _startup_message(self, failure: BaseException | None) -> str:
        from mcp.shared.exceptions import MCPError

        what = f"MCP server {self.name!r} ({self.spec.command or self.spec.url})"
        if isinstance(failure, TimeoutError):
            reason = (
                f"did not start within {self.spec.startup_timeout:g} s (startup_timeout): "
                "it did not answer the MCP initialize request and list its tools in time"
            )
        elif isinstance(failure, MCPError) and self.spec.command:
            reason = f"exited or closed its output before it started ({failure.message})"
        elif isinstance(failure, MCPError):
            reason = f"refused to start: {failure.message}"
        elif failure is None:
            reason = "stopped before it started"
        else:
            reason = f"could not be started: {type(failure).__name__}: {failure}"
        return self._with_stderr(f"{what} {reason}")

    def _crash_message(self) -> str:
        return self._with_stderr(
            f"MCP server {self.name!r} stopped unexpectedly during the run; "
            "its tools cannot be called any more"
        )

    # -- calls ---------------------------------------------------------------------------

    async def call_tool(
        self, name: str, arguments: dict[str, Any], timeout: float | None = None
    ) -> mcp_types.CallToolResult:
        """Call tool ``name`` (its server-side name) within ``timeout`` seconds.

        Raises:
            ToolError: the server stopped (now or earlier), the call timed out, or the
                server answered with a protocol error or an invalid result.
        """
        import anyio
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
        from pydantic import ValidationError

        session = self._session
        if self._stopped is not None or session is None:
            raise ToolError(self._stopped or f"MCP server {self.name!r} is not running")
        qualified = f"{self.name}.{name}"
        try:
            return await session.call_tool(name, arguments, read_timeout_seconds=timeout)
        except MCPError as error:
            if error.code == CONNECTION_CLOSED:
                raise ToolError(self._mark_stopped()) from None
            if error.code == REQUEST_TIMEOUT:
                raise ToolError(
                    f"{qualified} did not answer within {timeout:g} s and was cancelled"
                ) from None
            raise ToolError(f"{qualified} failed: {error.message}") from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            raise ToolError(self._mark_stopped()) from None
        except ValidationError as error:
            raise ToolError(f"{qualified} returned an invalid result: {error}") from None
        except RuntimeError as error:  # the SDK's output-schema check, input requests
            raise ToolError(f"{qualified} failed: {error}") from None

    def _mark_stopped(self) -> str:
        """Record that the server stopped by itself; kill any children it left behind."""
        if self._stopped is None:
            self._stopped = self._crash_message()
            self._kill_group()
        return self._stopped

    # -- exposure ------------------------------------------------------------------------

    def expose(
        self, timeout: float | None = None, taken: set[str] | None = None
    ) -> tuple[list[McpTool], list[str]]:
        """The allowed tools as :class:`McpTool` objects, and warnings about skipped ones.

        Args:
            timeout: seconds one call may take (the spec's ``budgets.tool_timeout``).
            taken: names already used by other tools; a tool whose name would collide is
                skipped with a warning. Names given out here are added to it.
        """
        taken = set() if taken is None else taken
        tools: list[McpTool] = []
        warnings: list[str] = []
        allow = self.spec.allow
        offered = [t.name for t in self.listed]
        for pattern in allow:
            if not _GLOB.search(pattern) and pattern not in offered:
                warnings.append(
                    f"MCP server {self.name!r}: allowed tool {pattern!r} is not offered by the "
                    f"server (it offers: {', '.join(offered) or 'no tools'})"
                )
        for tool in self.listed:
            if not any(fnmatch.fnmatchcase(tool.name, pattern) for pattern in allow):
                continue
            problem = schema_problem(tool.input_schema)
            if problem:
                warnings.append(
                    f"MCP server {self.name!r}: tool {tool.name!r} skipped: its input schema "
                    f"is unusable: {problem}"
                )
                continue
            name = exposed_name(self.name, tool.name)
            if name in taken:
                warnings.append(
                    f"MCP server {self.name!r}: tool {tool.name!r} skipped: its name {name!r} "
                    "is already used by another tool"
                )
                continue
            taken.add(name)
            tools.append(McpTool(self, tool, name, tool_risk(self.spec, tool), timeout))
        return tools, warnings


# ---------------------------------------------------------------------------------------------
# the entry point of a run


async def open_mcp_tools(
    spec: AgentSpec, stack: contextlib.AsyncExitStack
) -> tuple[list[Tool], list[str]]:
    """Start every MCP server of ``spec`` (in parallel); their allowed tools and warnings.

    Each server's :meth:`McpServer.close` is pushed on ``stack`` before it starts, so
    closing the stack stops every server on every exit path, including when this
    function raises.

    Raises:
        SetupError: a server could not be started (the first failure; the others are
            cancelled and stopped when the stack closes).
    """
    servers = [McpServer(server, spec.workdir) for server in spec.tools.mcp.values()]
    for server in servers:
        stack.push_async_callback(server.close)
    try:
        async with asyncio.TaskGroup() as group:
            for server in servers:
                group.create_task(server.start())
    except BaseExceptionGroup as errors:
        setup: list[BaseException] = [e for e in errors.exceptions if isinstance(e, SetupError)]
        raise (setup or list(errors.exceptions))[0] from None
    taken = set(spec.tools.builtin_names()) | set(spec.tools.functions)
    tools: list[Tool] = []
    warnings: list[str] = []
    for server in servers:
        exposed, notes = server.expose(spec.budgets.tool_timeout, taken)
        tools.extend(exposed)
        warnings.extend(notes)
    return tools, warnings


__all__ = [
    "MAX_TOOL_NAME",
    "SEPARATOR",
    "McpServer",
    "McpTool",
    "exposed_name",
    "open_mcp_tools",
    "result_text",
    "schema_problem",
    "tool_risk",
]
