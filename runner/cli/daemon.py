"""`agentrun daemon [DIR...]`, `daemon status`, `daemon stop`, and `agentrun trigger`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from .base import (
    EXIT_ERROR,
    EXIT_TIMEOUT,
    STOP_EXIT_CODES,
    _fail,
    cli,
)

# ---------------------------------------------------------------------------------------------
# daemon, trigger


class _DaemonGroup(click.Group):
    """`agentrun daemon [DIR...]` starts it; `daemon status` and `daemon stop` talk to it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `agentrun daemon --help` is the group's help; anything else not a subcommand
        # (no arguments, folders, options) goes to `start`.
        if (not args or args[0] not in self.commands) and args[:1] not in (["-h"], ["--help"]):
            args = ["start", *args]
        return super().parse_args(ctx, args)


def _home() -> Path:
    from ..paths import home

    return home()


@cli.group(cls=_DaemonGroup)
def daemon() -> None:
    """The scheduler: `agentrun daemon [DIR...]` runs agents on their triggers.

    `agentrun daemon status` shows agents, triggers and runs; `agentrun daemon stop`
    stops it gracefully.
    """


@daemon.command("start")
@click.argument("dirs", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    help="Warm worker processes kept idle for each model path the specs use (direct, litellm).",
)
@click.option(
    "--http",
    "address",
    default=None,
    metavar="HOST:PORT",
    help="Serve webhooks (/hooks/<agent>), the JSON API (/api/v1/) and the console on this "
    "address, e.g. 127.0.0.1:8790 (the console's port; docs/console.md).",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow an --http HOST other than this machine (then put TLS in front: "
    "docs/operations/systemd.md).",
)
@click.option(
    "--webhook-port",
    type=int,
    default=None,
    help="Deprecated: use --http. Starts the same server on --webhook-host:PORT.",
)
@click.option(
    "--webhook-host",
    default="127.0.0.1",
    show_default=True,
    help="Deprecated: use --http. The address of --webhook-port.",
)
@click.option(
    "--poll", is_flag=True, help="Poll folders instead of OS notifications (network filesystems)."
)
@click.option(
    "--grace", default=30.0, show_default=True, help="Seconds running runs get to finish on stop."
)
@click.option(
    "--notify",
    "notify_urls",
    multiple=True,
    metavar="URL",
    help="A default notification channel for every agent: an Apprise URL, secrets as "
    "${NAME} from the environment; repeatable (docs/concepts/notifications.md).",
)
@click.option(
    "--notify-events",
    default="approval_waiting,question_waiting,run_escalated,run_failed",
    show_default=True,
    metavar="LIST",
    help="The events the --notify channels hear of, comma-separated (also: run_completed).",
)
@click.option(
    "--public-url",
    default=None,
    metavar="URL",
    help="The console's URL as people reach it (behind a proxy), for links in notifications; "
    "default: the --http address.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "celery"]),
    default="local",
    show_default=True,
    help="Where runs execute: warm worker processes on this machine, or Celery tasks for "
    "`agentrun worker` processes anywhere (broker: --broker or AGENTRUN_BROKER).",
)
@click.option(
    "--broker",
    default=None,
    metavar="URL",
    help="The Redis broker of --executor celery, e.g. redis://127.0.0.1:6379/0; "
    "default: AGENTRUN_BROKER.",
)
@click.option(
    "--lease-ttl",
    "lease_ttl",
    default=15.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="How long the leadership lease lasts unless renewed (every third of it). Daemons "
    "sharing one store (AGENTRUN_STORE): one leads, the others take over within "
    "SECONDS * 4/3 of its death (docs/operations/deployment.md).",
)
@click.option(
    "--link-max-age",
    default="24h",
    show_default=True,
    metavar="DURATION",
    help="How long a decision link in a notification works (30m, 24h).",
)
def daemon_start(
    dirs: tuple[Path, ...],
    log_format: str,
    workers: int,
    address: str | None,
    allow_remote: bool,
    webhook_port: int | None,
    webhook_host: str,
    poll: bool,
    grace: float,
    notify_urls: tuple[str, ...],
    notify_events: str,
    public_url: str | None,
    link_max_age: str,
    lease_ttl: float,
    executor: str,
    broker: str | None,
) -> None:
    """Run the daemon in the foreground on the specs in DIRS (default: agents/).

    With --http it serves one HTTP server: webhooks, the JSON API and the console, every
    request but a webhook's authenticated with the token in AGENTRUN_HOME/console.token
    (`agentrun console` prints the login link).
    """
    import asyncio

    from ..daemon.lifecycle import Daemon, configure_logging
    from .console import is_loopback, parse_address

    folders = list(dirs) or [Path("agents")]
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"{str(folder)!r} is not a folder of spec files")
    http: tuple[str, int] | None = None
    if address is not None and webhook_port:
        raise UsageError("give --http or --webhook-port (deprecated), not both")
    if address is not None:
        http = parse_address(address)
        shown = address
    elif webhook_port:
        http = (webhook_host, webhook_port)
        shown = f"--webhook-host {webhook_host!r}"
    if http is not None and not (is_loopback(http[0]) or allow_remote):
        raise UsageError(
            f"--http {shown} would accept connections from other machines; pass "
            "--allow-remote to allow it, and put TLS in front (docs/operations/systemd.md)"
        )
    notify = _notify_settings(notify_urls, notify_events, public_url, link_max_age)
    configure_logging(log_format)
    server = Daemon(
        folders,
        _home(),
        pool_size=workers,
        http=http,
        poll=poll,
        shutdown_grace_s=grace,
        notify=notify,
        executor=executor,
        broker=broker,
        lease_ttl_s=lease_ttl,
    )
    asyncio.run(server.run())


def _notify_settings(urls: tuple[str, ...], events: str, public: str | None, age: str) -> Any:
    """The daemon's :class:`~runner.daemon.notifying.NotifySettings` from its options.

    Raises:
        UsageError: a bad channel, event, public URL or duration (the message says which).
    """
    from ..daemon.notifying import NotifySettings
    from ..notify.channels import daemon_channels
    from ..spec import parse_duration
    from ..web.links import MAX_LINK_AGE_S

    if public is not None and not public.startswith(("http://", "https://")):
        raise UsageError(f"--public-url {public!r} is not an http:// or https:// URL")
    try:
        max_age = float(parse_duration(age))
    except ValueError as error:
        raise UsageError(f"--link-max-age {age!r}: {error}") from None
    if not 0 < max_age <= MAX_LINK_AGE_S:
        raise UsageError(f"--link-max-age {age!r} must be more than 0 and at most 720h")
    return NotifySettings(daemon_channels(urls, events) if urls else (), public, max_age)


@daemon.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's answer as JSON.")
def daemon_status(as_json: bool) -> None:
    """Show each agent, its triggers, next fire times, running runs and last outcome."""
    from ..daemon.control import control_request

    answer = control_request(_home(), {"op": "status"})
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(
        f"daemon pid {answer['pid']}, up since {answer['started']}, "
        f"{answer['workers_idle']} warm workers"
    )
    click.echo(_leadership_line(answer))
    if answer.get("executor") == "celery":
        workers = answer.get("workers") or []
        click.echo(f"executor celery: {len(workers)} workers seen")
        for seen in workers:
            active = ", ".join(seen["active"]) or "idle"
            queues = ", ".join(seen["queues"])
            click.echo(f"  worker {seen['hostname']} (queues {queues}): {active}")
    if answer.get("url"):
        click.echo(f"serving HTTP on {answer['url']} (webhooks, API, console: agentrun console)")
    for agent in answer["agents"]:
        click.echo(f"{agent['name']}  ({agent['path']})")
        for trigger in agent["triggers"]:
            if trigger["kind"] == "cron":
                click.echo(
                    f"  cron {trigger['cron']!r} {trigger['timezone']}: next {trigger['next']}"
                )
            elif trigger["kind"] == "watch":
                click.echo(f"  watch {', '.join(trigger['paths'])}")
            elif trigger["kind"] == "webhook":
                click.echo(f"  webhook {trigger['path']}")
            elif trigger["kind"] == "queue":
                click.echo(f"  queue {_queue_line(trigger)}")
            else:
                click.echo(f"  {trigger['kind']}")
        if agent["running"]:
            click.echo(f"  running: {', '.join(agent['running'])}")
        if agent["queued"]:
            click.echo(f"  queued: {', '.join(agent['queued'])}")
        click.echo(f"  last: {agent['last'] or '-'}")
    for error in answer["errors"]:
        click.echo(f"spec error: {error}", err=True)


def _leadership_line(answer: dict[str, Any]) -> str:
    """This daemon's role and the leadership lease, for ``daemon status``."""
    lease = answer.get("lease")
    if lease is None:
        return f"{answer['role']}: no daemon has held the leadership lease yet"
    if not lease["held"]:
        return (
            f"{answer['role']}: the leadership lease is free (last held by {lease['holder']}, "
            f"term {lease['term']}, expired {lease['expires']})"
        )
    who = "this daemon" if lease["holder"] == answer["holder"] else lease["holder"]
    return (
        f"{answer['role']}: leader {who}, lease term {lease['term']}, expires "
        f"{lease['expires']} (in {lease['remaining_s']:.1f} s; TTL {answer['lease_ttl_s']:g} s)"
    )


def _queue_line(trigger: dict[str, Any]) -> str:
    """A queue trigger in ``daemon status``: stream, group, and how its consumer fares."""
    line = f"stream {trigger['stream']!r} group {trigger['group']!r}"
    if not trigger.get("consuming"):
        return line + ": not consuming"
    if trigger.get("connected"):
        return line + f" on {trigger['url']}: consuming, {trigger['acked']} acknowledged"
    return line + f" on {trigger['url'] or '?'}: not connected: {trigger['error'] or '-'}"


@daemon.command("stop")
@click.option("--wait", is_flag=True, help="Wait until the daemon has exited.")
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    help="With --wait: seconds to wait before giving up (exit 6).",
)
def daemon_stop(wait: bool, timeout: float) -> None:
    """Stop the daemon: no new runs; running runs finish within the grace period.

    With --wait, return once the daemon has exited (exit 0), or exit 6 if it still runs
    after --timeout seconds (its runs' grace period may be longer: see `daemon --grace`).
    """
    from ..daemon.control import control_request

    answer = control_request(_home(), {"op": "stop"})
    running = answer.get("running") or []
    click.echo(
        "daemon stopping" + (f"; waiting for {len(running)} running runs" if running else "")
    )
    if not wait:
        return
    from ..daemon.lifecycle import wait_until_stopped

    if not wait_until_stopped(_home(), timeout):
        _fail(f"the daemon is still running after {timeout:g} s", EXIT_TIMEOUT)
    click.echo("daemon stopped")


@cli.command()
@click.argument("name")
@click.option(
    "--input", "-i", "inputs", multiple=True, metavar="KEY=VALUE", help="Set an input; repeatable."
)
@click.option("--wait", is_flag=True, help="Wait for the run to end; exit with its exit code.")
@click.option(
    "--key", default=None, help="Idempotency key: a repeated key does not start a second run."
)
def trigger(name: str, inputs: tuple[str, ...], wait: bool, key: str | None) -> None:
    """Start a manual run of agent NAME in the running daemon."""
    import time

    from ..compiler import parse_input_flags
    from ..daemon.control import DaemonError, control_request, new_idempotency_key

    request = {
        "op": "trigger",
        "agent": name,
        "inputs": parse_input_flags(inputs),
        "key": key or new_idempotency_key(),
    }
    for attempt in range(3):
        try:
            answer = control_request(_home(), request)
            break
        except DaemonError:
            if attempt == 2 or not (_home() / "daemon.sock").exists():
                raise
            time.sleep(0.2)  # the same key: a retry cannot start a second run
    run_id = answer["run_id"]
    duplicate = " (already started by this key)" if answer.get("duplicate") else ""
    click.echo(f"run {run_id}: {answer['outcome']}{duplicate}")
    if not wait or answer["outcome"] == "skipped":
        return
    from ..store import RunStore

    store = RunStore.default()
    checked = time.monotonic()
    while True:
        row = store.run(run_id)
        if row is not None and row.status != "running":
            break
        fire = store.fire_of_run(run_id)
        if row is None and fire is not None and fire.outcome == "failed":
            _fail(f"run {run_id} could not start: {fire.reason}", EXIT_ERROR)
        if row is None and fire is not None and fire.outcome in ("cancelled", "skipped"):
            # Replaced while it waited for a worker, or skipped on recovery: it never runs.
            _fail(f"run {run_id} will not run: {fire.outcome} ({fire.reason})", EXIT_TIMEOUT)
        if row is None and time.monotonic() - checked > 5:
            checked = time.monotonic()
            try:
                control_request(_home(), {"op": "status"})
            except DaemonError:
                _fail(f"the daemon stopped before run {run_id} began", EXIT_ERROR)
        time.sleep(0.2)
    stop = row.stop_reason or row.status
    if row.final:
        click.echo(row.final)
    click.echo(f"[{stop}] run {run_id}", err=True)
    sys.exit(STOP_EXIT_CODES.get(stop, EXIT_ERROR))
