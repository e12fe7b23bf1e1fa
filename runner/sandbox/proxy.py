"""The egress proxy: a proxy.py process on a Unix socket, applying a sandbox's allowlist.

A sandbox with ``network: {allow: [...]}`` has no network of its own. Its processes reach
this proxy instead (the sandbox binds the socket in and bridges it to ``127.0.0.1:3128``,
with ``HTTP_PROXY``/``HTTPS_PROXY`` set), and the proxy lets through only what
:mod:`runner.sandbox.egress` allows: CONNECT tunnels (``https``) and plain HTTP requests in
absolute form, each to a listed host and port, at an address the proxy resolved and
checked itself (:mod:`runner.sandbox.proxy_plugin`). Refused requests get ``403
Forbidden``; every decision, allowed or refused, is reported.

Two sides:

- :func:`main`, the proxy's own process, ``python -m runner.sandbox.proxy --socket PATH
  --allow ENTRY...``: runs proxy.py (abhinavsingh/proxy.py), prints ``{"ready": PATH}``
  once it listens, then one JSON line per decision, and stops cleanly on SIGTERM, SIGINT,
  SIGHUP or when its standard input closes (its parent is gone). proxy.py's data folder is
  a private temporary folder, removed on exit: nothing is written to the home folder.
- :class:`EgressProxy`, in agentrun: starts that process, waits until it is ready, turns
  its lines into :class:`EgressDecision` values, and stops it.

This module does not import proxy.py; only the proxy's own process does.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

from ..errors import SetupError
from .egress import parse_allow

#: Seconds :meth:`EgressProxy.start` waits for the proxy to listen.
START_TIMEOUT_S = 10.0
#: Seconds :meth:`EgressProxy.close` waits after SIGTERM before killing the process group.
STOP_TIMEOUT_S = 5.0
#: Longest Unix socket path (``sun_path`` is 108 bytes on Linux, with its final NUL).
MAX_SOCKET_PATH = 107
#: Seconds a connection may sit idle before the proxy drops it (proxy.py's ``--timeout``,
#: 10 s by default, would cut a server that thinks for a while before answering).
IDLE_TIMEOUT_S = 300
#: Lines of the proxy's standard error kept for error messages.
_STDERR_LINES = 40


class EgressDecision(NamedTuple):
    """One connection the proxy allowed or refused.

    Attributes:
        host: the host as requested (a name or an address).
        port: the TCP port requested.
        allowed: whether the proxy connected.
        address: the address connected to (allowed), or None.
        reason: why it was refused, in plain words; empty when allowed.
    """

    host: str
    port: int
    allowed: bool
    address: str | None
    reason: str


class EgressProxy:
    """One egress proxy process, listening on a Unix socket in a private folder.

    Args:
        allow: the allowlist entries (:func:`runner.sandbox.egress.parse_allow` forms).
        on_decision: called with each :class:`EgressDecision`, from a reader thread (make
            it thread-safe).

    Raises:
        SetupError: an entry of ``allow`` is not one of the forms (nothing is started).
    """

    def __init__(
        self, allow: tuple[str, ...], on_decision: Callable[[EgressDecision], None]
    ) -> None:
        try:
            parse_allow(allow)
        except ValueError as error:
            raise SetupError(f"the sandbox's network allowlist is invalid: {error}") from None
        self.allow = tuple(allow)
        self.on_decision = on_decision
        self._folder: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._threads: list[threading.Thread] = []
        self._socket: Path | None = None

    @property
    def socket_path(self) -> Path:
        """The socket :meth:`start` returned.

        Raises:
            SetupError: the proxy was not started.
        """
        if self._socket is None:
            raise SetupError("the egress proxy was not started")
        return self._socket

    @property
    def pid(self) -> int | None:
        """The proxy process's id, None before :meth:`start`."""
        return self._process.pid if self._process is not None else None

    def start(self) -> Path:
        """Start the proxy process and wait until it listens (at most :data:`START_TIMEOUT_S`).

        Returns:
            The path of its Unix socket, in a new folder only this user can enter (0700).

        Raises:
            SetupError: the process did not start, exited, or was not ready in time; the
                message names the cause and ends with the last lines of its standard error.
        """
        if self._process is not None:
            return self.socket_path
        self._folder = _private_folder()
        socket_path = self._folder / "egress.sock"
        # -P and a private cwd: no `proxy` module of the working folder shadows proxy.py's.
        command = [sys.executable, "-P", "-m", "runner.sandbox.proxy"]
        command += ["--socket", str(socket_path), "--allow", *self.allow]
        root = str(Path(__file__).resolve().parents[2])  # where `runner` is imported from
        path = os.environ.get("PYTHONPATH")
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self._folder,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, path]))},
                start_new_session=True,  # a terminal's Ctrl-C is the parent's to handle
            )
        except OSError as error:
            self.close()
            raise SetupError(f"cannot start the egress proxy: {error}") from None
        ready = threading.Event()
        failure: list[str] = []
        stdout, stderr = self._process.stdout, self._process.stderr
        if stdout is None or stderr is None:  # never: both are pipes
            self.close()
            raise SetupError("the egress proxy's output could not be read")
        self._threads = [
            threading.Thread(
                target=self._read_decisions,
                args=(stdout, ready, failure),
                name="egress-proxy-stdout",
                daemon=True,
            ),
            threading.Thread(
                target=self._read_stderr,
                args=(stderr,),
                name="egress-proxy-stderr",
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()
        if not ready.wait(START_TIMEOUT_S) or failure:
            cause = failure[0] if failure else f"not ready after {START_TIMEOUT_S:g} s"
            self.close()
            raise SetupError(f"the egress proxy did not start: {cause}{self._stderr_tail()}")
        self._socket = socket_path
        return socket_path

    def close(self) -> None:
        """Stop the process (SIGKILL to its group) and remove its folder.

        Idempotent; never raises.
        """
        process, self._process = self._process, None
        if process is not None:
            _stop(process)
        for thread in self._threads:
            thread.join(timeout=STOP_TIMEOUT_S)
        self._threads = []
        if process is not None:
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        folder, self._folder = self._folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _read_decisions(
        self, stream: IO[bytes], ready: threading.Event, failure: list[str]
    ) -> None:
        """Read the ready line, then each decision line, until the process's output ends."""
        for raw in stream:
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # not ours (a library printing); the stderr tail explains failures
            if not isinstance(line, dict):
                continue
            if "ready" in line:
                ready.set()
            elif "host" in line:
                try:
                    self.on_decision(_decision(line))
                except Exception:  # the caller's bug; reading must go on, or the proxy blocks
                    continue
        if not ready.is_set():
            failure.append("the process exited before listening")
            ready.set()

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self._stderr.append(raw.decode("utf-8", errors="replace").rstrip())

    def _stderr_tail(self) -> str:
        lines = [line for line in self._stderr if line]
        return "; its last output:\n" + "\n".join(lines[-10:]) if lines else ""


def _decision(line: dict[str, Any]) -> EgressDecision:
    address, port = line.get("address"), line.get("port")
    return EgressDecision(
        str(line.get("host", "")),
        port if isinstance(port, int) else 0,
        bool(line.get("allowed")),
        str(address) if address else None,
        str(line.get("reason") or ""),
    )


def _private_folder() -> Path:
    """A new folder (0700) for the socket, short enough for a Unix socket path.

    Raises:
        SetupError: no temporary folder gives a short enough path.
    """
    for parent in (None, "/tmp"):
        folder = Path(tempfile.mkdtemp(prefix="agentrun-egress-", dir=parent))
        if len(str(folder / "egress.sock").encode()) <= MAX_SOCKET_PATH:
            return folder
        folder.rmdir()
    raise SetupError(
        f"the temporary folder {tempfile.gettempdir()!r} gives a socket path longer than "
        f"{MAX_SOCKET_PATH} bytes; set TMPDIR to a shorter folder"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the proxy's whole group (its acceptor process too), and reap it.

    Nothing is lost: each decision line was flushed when it was made, and the reader
    drains the pipe to its end. (A graceful stop cost about 1.1 s: proxy.py's threaded
    acceptor notices a shutdown only at its next poll.)
    """
    with contextlib.suppress(OSError):
        if process.stdin is not None:
            process.stdin.close()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the session it leads
    process.wait()


# -- the proxy's own process ---------------------------------------------------------------


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runner.sandbox.proxy",
        description="agentrun's egress proxy: proxy.py on a Unix socket, allowing only the "
        "listed hosts; one JSON line per connection decided, on standard output.",
    )
    parser.add_argument("--socket", required=True, help="the Unix socket to listen on")
    parser.add_argument(
        "--allow",
        nargs="+",
        required=True,
        metavar="ENTRY",
        help="allowed hosts: host, *.domain, IPv4, [IPv6] or localhost, each with an "
        "optional :PORT",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the egress proxy until SIGTERM, SIGINT, SIGHUP or the end of standard input.

    Returns:
        0 after a clean stop; 2 for a bad allowlist entry (the message on standard error).
    """
    arguments = _arguments(argv)
    try:
        parse_allow(arguments.allow)
    except ValueError as error:
        print(f"agentrun egress proxy: {error}", file=sys.stderr)
        return 2
    from .proxy_plugin import ALLOW_VARIABLE

    os.environ[ALLOW_VARIABLE] = json.dumps(arguments.allow)
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="agentrun-proxypy-") as data:
        server = _proxy_server(arguments.socket, data)
        server.setup()  # binds the socket, forks the acceptor, sets proxy.py's handlers
        try:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, lambda *_: stop.set())
            threading.Thread(target=_until_end_of_input, args=(stop,), daemon=True).start()
            os.write(1, json.dumps({"ready": arguments.socket}).encode() + b"\n")
            stop.wait()
        finally:
            with contextlib.suppress(FileNotFoundError):  # the socket already removed
                server.shutdown()
    return 0


def _proxy_server(socket_path: str, data: str) -> Any:
    """proxy.py's server for ``socket_path``, with its files under ``data`` (not set up)."""
    import proxy  # the proxy's own process only

    return proxy.Proxy(
        [
            "--unix-socket-path",
            socket_path,
            "--plugins",
            "runner.sandbox.proxy_plugin.EgressFilter",
            "--num-acceptors",
            "1",
            # A thread per connection: threadless mode waits up to 25 ms for each
            # connection's events (28.9 ms a request against 3.4 ms, bench/sandbox.py).
            "--threaded",
            "--log-level",
            "WARNING",
            "--timeout",
            str(IDLE_TIMEOUT_S),
            "--data-dir",
            data,
            "--ca-cert-dir",
            os.path.join(data, "certificates"),
            "--cache-dir",
            os.path.join(data, "cache"),
        ]
    )


def _until_end_of_input(stop: threading.Event) -> None:
    """Set ``stop`` when standard input ends: the parent closed it, or is gone."""
    with contextlib.suppress(OSError, ValueError):
        while sys.stdin.buffer.read(4096):
            pass
    stop.set()


if __name__ == "__main__":
    sys.exit(main())
