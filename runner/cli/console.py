"""`agentrun console`: the login link of the daemon's console, or the console over the run store.

When a daemon serves HTTP (``agentrun daemon --http``) for this AGENTRUN_HOME, the console
prints the daemon's URL with the login token and serves nothing itself; otherwise it serves
the app over the run store alone (runs, events, approvals; no agents) until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from .base import EXIT_ERROR, _fail, cli

#: The console's port unless ``--http`` says otherwise (``docs/console.md``).
DEFAULT_PORT = 8790
#: Seconds requests still running (event streams) get to end after Ctrl-C.
SHUTDOWN_GRACE_S = 2


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8790`` for IPv6) as a host and a port (0: any free port).

    Raises:
        UsageError: not that form, or a port outside 0-65535.
    """
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(
            f"--http {address!r} is not HOST:PORT (127.0.0.1:{DEFAULT_PORT}, [::1]:8080)"
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: ``localhost`` or a loopback address."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any interface


def _listen(host: str, port: int) -> Any:
    """A socket bound to ``host:port``; exits 1 with the reason when it cannot be."""
    from ..web.listener import listening_socket

    try:
        sock = listening_socket(host, port)
    except OSError as error:
        hint = (
            "; another program (or another agentrun console) uses it: choose another "
            "port with --http HOST:PORT"
            if port
            else ""
        )
        _fail(f"cannot listen on {host}:{port}: {error.strerror or error}{hint}", EXIT_ERROR)
    sock.set_inheritable(True)
    return sock


def daemon_url(home: Path) -> str | None:
    """The URL of the daemon's HTTP server for ``home`` (AGENTRUN_HOME), if one serves.

    The daemon writes it to ``home/daemon.url`` (owner-only) once it listens and removes it
    when it stops; a file left by a daemon that was killed is ignored (no daemon holds the
    lock).
    """
    from ..daemon.lifecycle import daemon_running

    try:
        url = (home / "daemon.url").read_text().strip()
    except OSError:
        return None
    return url if url and daemon_running(home) else None


def _has_browser() -> bool:
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


@cli.command()
@click.option(
    "--http",
    "address",
    default=f"127.0.0.1:{DEFAULT_PORT}",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to listen (port 0: any free port).",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a HOST other than this machine (then put TLS in front: docs/console.md).",
)
@click.option("--no-browser", is_flag=True, help="Print the login link; do not open it.")
def console(address: str, allow_remote: bool, no_browser: bool) -> None:
    """Serve the HTTP API over the run store until Ctrl-C, and print the login link.

    The link holds the token kept in AGENTRUN_HOME/console.token (made owner-only when
    missing); API clients send it as 'Authorization: Bearer TOKEN'. It opens in a browser
    when there is one and stdout is a terminal. When a daemon serves HTTP (agentrun daemon
    --http), it prints the daemon's link instead; without one it serves runs, their events
    and approvals.
    """
    from ..paths import home

    served = daemon_url(home())
    if served is not None:
        from ..web.auth import load_token

        token = load_token(home() / "console.token").token
        url = f"{served}/login?token={token}"
        click.echo(f"agentrun console: the daemon serves the console and the API at {served}")
        click.echo("open this link to log in (the token is in AGENTRUN_HOME/console.token):")
        click.echo(f"    {url}")
        click.echo(f"API: {served}/api/v1/ (reference: docs/reference/api.md)")
        sys.stdout.flush()
        if not no_browser and sys.stdout.isatty() and _has_browser():
            import webbrowser

            webbrowser.open(url)
        return
    host, port = parse_address(address)
    if not (is_loopback(host) or allow_remote):
        raise UsageError(
            f"--http {address!r} would accept connections from other machines; pass "
            "--allow-remote to allow it, and put TLS in front (docs/console.md)"
        )
    import uvicorn

    from ..store.location import redacted, store_location
    from ..web.app import create_app

    sock = _listen(host, port)
    location = store_location()
    app = create_app(location, home())
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/login?token={app.state.web.credential.token}"
    click.echo(f"agentrun console: serving the API over {redacted(location)} (Ctrl-C stops)")
    click.echo("open this link to log in (the token is in AGENTRUN_HOME/console.token):")
    click.echo(f"    {url}")
    click.echo(f"API: http://{shown}:{bound}/api/v1/ (reference: docs/reference/api.md)")
    sys.stdout.flush()
    if not no_browser and sys.stdout.isatty() and _has_browser():
        import webbrowser

        webbrowser.open(url)
    feed = app.state.feed

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            feed.close_threadsafe()  # end the event streams, so the shutdown need not wait
            super().handle_exit(sig, frame)

    server = Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            # A request still running after the streams ended (none should) is cancelled
            # after this; uvicorn would wait for it forever otherwise.
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
    )
    # uvicorn shuts down on Ctrl-C, then raises the signal again for its caller: here that
    # is the expected way to stop, not an interruption (exit 0, not 6).
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    click.echo("agentrun console: stopped")
