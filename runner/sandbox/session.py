"""One run's sandbox: every process started on the agent's behalf goes through :func:`launch`.

The run (:mod:`runner.loop`) opens a :class:`RunSandbox` and makes it current
(:func:`enter`) for the run's task; the tool calls copy that context into the threads
they run in. A caller that starts a process (the shell tool, an MCP server, a command guard)
asks :func:`launch` for a :class:`Launch`: the argv and environment to execute, which
bubblewrap confines when the policy says so, and the hooks that watch the process
(:meth:`Launch.started`, :meth:`Launch.ended`).

What happens in a sandbox is collected here, from whatever thread sees it (the egress
proxy's reader, a watchdog, a tool's thread) and handed to the run's record only from the
run's own task (:meth:`RunSandbox.take`, before each event the run emits, and
:meth:`RunSandbox.flush` at its end): the run emits :class:`ConnectionDecided`,
:class:`LimitHit` and a :class:`RunNotice` when ``auto`` could not sandbox.

Modes (the spec's ``sandbox.mode``):

- ``off``: the process runs as it is, with no limits;
- ``auto``: bubblewrap when :func:`~runner.sandbox.bwrap.unavailable` says it works,
  otherwise the process runs with the rlimits only (when ``prlimit`` exists) and the run
  records a warning notice saying why, once per cause;
- ``required``: where bubblewrap cannot run, nothing starts: :meth:`RunSandbox.check`
  refuses at run start and :func:`launch` raises :class:`~runner.errors.SetupError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SetupError
from ..events import ConnectionDecided, Event, LimitHit, RunNotice
from . import bwrap
from .policy import SandboxPolicy, resolve

if TYPE_CHECKING:
    from ..spec import AgentSpec, SandboxSpec
    from .proxy import EgressDecision, EgressProxy

#: Seconds between two counts of a sandbox's processes.
WATCH_INTERVAL_S = 0.05

_RUN: contextvars.ContextVar[RunSandbox | None] = contextvars.ContextVar(
    "agentrun_sandbox", default=None
)
_CALL: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agentrun_sandbox_call", default=None
)


def current() -> RunSandbox | None:
    """The sandbox of the run this code runs for, or None outside a run."""
    return _RUN.get()


def enter(sandbox: RunSandbox) -> contextvars.Token[RunSandbox | None]:
    """Make ``sandbox`` current in this context (the run's task and what it starts).

    Returns:
        The token :func:`leave` takes to put the previous one back.
    """
    return _RUN.set(sandbox)


def leave(token: contextvars.Token[RunSandbox | None]) -> None:
    """Undo an :func:`enter`."""
    _RUN.reset(token)


@contextlib.contextmanager
def calling(call_id: str | None) -> Iterator[None]:
    """Attribute what the sandbox records in this context to tool call ``call_id``."""
    token = _CALL.set(call_id)
    try:
        yield
    finally:
        _CALL.reset(token)


def record_connection(
    source: str, host: str, port: int, allowed: bool, address: str | None, reason: str = ""
) -> None:
    """Record a connection decided outside a sandbox (``http_request``); no-op outside a run."""
    sandbox = current()
    if sandbox is not None:
        sandbox.add(
            ConnectionDecided(
                sandbox.run_id, source, _CALL.get(), host, port, allowed, address, reason
            )
        )


class RunSandbox:
    """The sandbox state of one run: its proxies, its pending records, its notices.

    Args:
        run_id: the run whose record gets what happens.
        agent: the agent's name (notices carry it).
    """

    def __init__(self, run_id: str, agent: str) -> None:
        self.run_id = run_id
        self.agent = agent
        self._pending: list[Event] = []
        self._lock = threading.Lock()
        self._proxies: dict[tuple[str, tuple[str, ...]], EgressProxy] = {}
        self._calls: dict[str, str | None] = {}  # source -> the call its proxy serves now
        self._noticed: set[str] = set()
        self._closed = False

    # -- the record ----------------------------------------------------------------------

    def add(self, event: Event) -> None:
        """Keep ``event`` for the next :meth:`flush` (any thread)."""
        with self._lock:
            self._pending.append(event)

    def take(self) -> list[Event]:
        """Every pending record, oldest first, now no longer pending (any thread)."""
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def flush(self, emit: Callable[[Event], None]) -> None:
        """Hand every pending record to ``emit``, in order (call from the run's task)."""
        for event in self.take():
            emit(event)

    def notice_once(self, key: str, message: str) -> None:
        """Keep a warning notice for the run's record, once per ``key``."""
        with self._lock:
            if key in self._noticed:
                return
            self._noticed.add(key)
        self.add(RunNotice(self.run_id, self.agent, message))

    # -- checks at run start -------------------------------------------------------------

    def check(self, spec: AgentSpec) -> None:
        """Refuse a run whose ``required`` sandbox cannot be enforced here.

        Looks at every source of processes the spec declares: the shell tool (and checks),
        each stdio MCP server, command guards (under the agent's sandbox).

        Raises:
            SetupError: naming the source and why bubblewrap cannot run.
        """
        for source, sandbox in sources(spec):
            if sandbox.mode != "required":
                continue
            reason = bwrap.unavailable()
            if reason is None and sandbox.network:
                reason = bwrap.network_unavailable()
            if reason is not None:
                raise SetupError(
                    f"{source} has sandbox: required, which cannot be enforced on this "
                    f"machine: {reason}. Nothing was run."
                )

    # -- processes -----------------------------------------------------------------------

    def proxy_socket(self, source: str, allow: tuple[str, ...]) -> Path:
        """The Unix socket of the egress proxy serving ``source`` with ``allow`` (started once).

        Raises:
            SetupError: the proxy cannot be started.
        """
        from .proxy import EgressProxy

        key = (source, allow)
        with self._lock:
            if self._closed:
                raise SetupError("the run's sandbox is closed")
            proxy = self._proxies.get(key)
        if proxy is None:
            proxy = EgressProxy(allow, lambda decision: self._decided(source, decision))
            socket = proxy.start()
            with self._lock:
                self._proxies[key] = proxy
            return socket
        return proxy.socket_path

    def serving(self, source: str, call_id: str | None) -> None:
        """Attribute the connections ``source``'s proxy sees from now on to ``call_id``."""
        with self._lock:
            self._calls[source] = call_id

    def serving_call(self, source: str) -> str | None:
        """The call ``source`` serves now (see :meth:`serving`), or None."""
        with self._lock:
            return self._calls.get(source)

    def _decided(self, source: str, decision: EgressDecision) -> None:
        with self._lock:
            call_id = self._calls.get(source)
        self.add(
            ConnectionDecided(
                self.run_id,
                source,
                call_id,
                decision.host,
                decision.port,
                decision.allowed,
                decision.address,
                decision.reason,
            )
        )

    def close(self) -> None:
        """Stop every egress proxy of the run (idempotent)."""
        with self._lock:
            self._closed = True
            proxies, self._proxies = list(self._proxies.values()), {}
        for proxy in proxies:
            proxy.close()


def sources(spec: AgentSpec) -> list[tuple[str, SandboxSpec]]:
    """Every source of processes ``spec`` declares and its effective sandbox.

    ``shell`` (the shell tool and check commands), ``mcp:NAME`` for each stdio server, and
    ``guard`` when a guard runs a command.
    """
    found: list[tuple[str, SandboxSpec]] = []
    if spec.tools.shell is not None:
        found.append(("shell", spec.tools.shell.sandbox))
    for name, server in spec.tools.mcp.items():
        if server.command:
            found.append((f"mcp:{name}", server.sandbox))
    if any(guard.command for guard in spec.guards):
        found.append(("guard", spec.sandbox))
    return found


@dataclass
class Launch:
    """How to start one process on the agent's behalf, and the hooks that watch it.

    Attributes:
        argv: what to execute (bubblewrap's command line, or the program's own).
        env: the environment to execute it with (the program's, plus the proxy variables).
        sandboxed: whether bubblewrap confines it.
        source: ``shell``, ``check``, ``guard`` or ``mcp:NAME``.
    """

    argv: list[str]
    env: dict[str, str]
    sandboxed: bool
    source: str
    policy: SandboxPolicy | None = None
    run: RunSandbox | None = None
    call_id: str | None = None
    hit: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None
    _pid: int | None = None

    def started(self, pid: int) -> None:
        """Watch the process count of the sandbox whose bubblewrap is ``pid``.

        Over ``limits.processes``, the sandbox's first process is killed (the kernel then
        kills the rest of its PID namespace) and a :class:`LimitHit` is recorded.
        """
        self._pid = pid
        if not self.sandboxed or self.policy is None or self._watcher is not None:
            return
        self._watcher = threading.Thread(
            target=self._watch, args=(pid,), name="sandbox-watch", daemon=True
        )
        self._watcher.start()

    def _watch(self, pid: int) -> None:
        assert self.policy is not None
        limit = self.policy.limits.processes
        namespace = None
        while not self._stop.wait(WATCH_INTERVAL_S):
            if namespace is None:
                namespace = _sandbox_namespace(pid)
                if namespace is None:
                    continue
            init, inode = namespace
            count = _count_in_namespace(inode)
            if count > limit:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(init, 9)
                self._hit("processes", f"more than {limit} processes at once; all were killed")
                return

    def terminate(self) -> bool:
        """Send SIGTERM to every process inside the sandbox (not to bubblewrap itself).

        bubblewrap dies of a SIGTERM without passing it on, and its death kills the sandbox
        at once (``--die-with-parent``); a program that handles SIGTERM gets it this way.

        Returns:
            Whether the sandbox was found (False unsandboxed: signal the group instead).
        """
        if not self.sandboxed or self._pid is None:
            return False
        namespace = _sandbox_namespace(self._pid)
        if namespace is None:
            return False
        init, inode = namespace
        for pid in _pids_in_namespace(inode):
            if pid != init:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, 15)
        return True

    def _hit(self, limit: str, detail: str) -> None:
        self.hit = self.hit or limit
        if self.run is not None:
            # A server started before any call: the call its source serves now, if one.
            call_id = self.call_id or self.run.serving_call(self.source)
            self.run.add(LimitHit(self.run.run_id, self.source, call_id, limit, detail))

    def ended(self, returncode: int | None) -> str | None:
        """Stop watching; the limit the process hit (recorded), or None.

        Args:
            returncode: how the process (bubblewrap, when sandboxed) ended; None if unknown.
        """
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(1.0)
        if self.hit is None and self.policy is not None:
            limit = bwrap.limit_signal(returncode, self.sandboxed)
            if limit is not None:
                limits = self.policy.limits
                value = (
                    f"{limits.cpu_time:g} s of CPU time"
                    if limit == "cpu_time"
                    else f"files of at most {limits.file_size} bytes"
                )
                self._hit(limit, f"stopped by the sandbox's limit: {value}")
        return self.hit

    def note(self) -> str:
        """A line for the tool's result naming the limit hit, or ""."""
        if self.hit is None:
            return ""
        return f"\n[the sandbox stopped it: limit {self.hit} reached]"


def _sandbox_namespace(pid: int) -> tuple[int, int] | None:
    """(host pid of the sandbox's init, inode of its PID namespace), once bwrap forked it."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
            pids = children.read().split()
    except OSError:
        return None
    for child in pids:
        with contextlib.suppress(OSError):
            inode = os.stat(f"/proc/{child}/ns/pid").st_ino
            if inode != os.stat(f"/proc/{pid}/ns/pid").st_ino:
                return int(child), inode
    return None


def _pids_in_namespace(inode: int) -> list[int]:
    """The host pids of the processes that live in the PID namespace ``inode``."""
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry.name}/ns/pid").st_ino == inode:
                    found.append(int(entry.name))
    return found


def _count_in_namespace(inode: int) -> int:
    """How many processes on this machine live in the PID namespace ``inode``."""
    return len(_pids_in_namespace(inode))


def launch(
    spec: SandboxSpec,
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    workdir: Path,
    source: str,
) -> Launch:
    """How to start ``argv`` under ``spec``: bubblewrap's command line, or the program's own.

    Args:
        spec: the effective sandbox of the source.
        argv: the program and its arguments.
        cwd: its working folder (absolute).
        env: its whole environment (``PATH`` and the spec's ``env`` names).
        workdir: the agent's working folder, which relative sandbox paths start from.
        source: ``shell``, ``check``, ``guard`` or ``mcp:NAME`` (records name it).

    Raises:
        SetupError: ``required`` where bubblewrap cannot run, a path in the policy that
            does not exist or would expose agentrun's home, or an egress proxy that does
            not start.
    """
    run = current()
    call_id = _CALL.get()
    if spec.mode == "off":
        return Launch(list(argv), dict(env), False, source, run=run, call_id=call_id)
    policy = resolve(spec, workdir)
    reason = bwrap.unavailable()
    if reason is None and policy.network_allow:
        reason = bwrap.network_unavailable()
    if reason is not None:
        if spec.mode == "required":
            raise SetupError(
                f"{source}: sandbox: required cannot be enforced on this machine: {reason}"
            )
        if run is not None:
            run.notice_once(
                f"unavailable:{source}",
                f"sandbox: auto could not sandbox {source} on this machine ({reason}); "
                "its processes ran without file, network or process isolation, with "
                "resource limits only",
            )
        prefix = bwrap.limits_prefix(policy)
        return Launch([*prefix, *argv], dict(env), False, source, policy, run, call_id)
    _visible_program(policy, argv[0], env, source)
    socket = None
    environment = dict(env)
    if policy.network_allow:
        holder = run if run is not None else _standalone()
        proxy_source = source if source != "check" else "shell"
        socket = holder.proxy_socket(proxy_source, policy.network_allow)
        holder.serving(proxy_source, call_id)
        environment.update(bwrap.proxy_environment())
    command = bwrap.command(policy, list(argv), cwd, socket)
    return Launch(command, environment, True, source, policy, run, call_id)


def _visible_program(policy: SandboxPolicy, program: str, env: dict[str, str], source: str) -> None:
    """Refuse a program that lives where the sandbox hides it (a tool in the home folder).

    Raises:
        SetupError: naming the program, the hidden folder and the ``readable`` key.
    """
    import shutil

    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        return  # not found at all: the caller's own "command not found" applies
    path = Path(os.path.realpath(found))
    shown = (policy.workdir, *policy.readable, *policy.writable)
    if any(path == place or path.is_relative_to(place) for place in shown):
        return
    for folder in (*policy.hidden_first, *policy.hidden_last):
        if path.is_relative_to(folder):
            raise SetupError(
                f"{source}: {program!r} is {str(path)!r}, inside {str(folder)!r}, which the "
                "sandbox hides; list the folder it needs in sandbox.readable, or install it "
                "elsewhere"
            )


_STANDALONE: RunSandbox | None = None
_STANDALONE_LOCK = threading.Lock()


def _standalone() -> RunSandbox:
    """The sandbox of processes started outside any run (a tool used on its own)."""
    global _STANDALONE
    with _STANDALONE_LOCK:
        if _STANDALONE is None:
            import atexit

            _STANDALONE = RunSandbox("", "")
            atexit.register(_STANDALONE.close)
        return _STANDALONE
