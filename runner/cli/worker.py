"""`agentrun worker`: a Celery worker that runs the daemon's runs (``--executor celery``)."""

from __future__ import annotations

import os
import re
import sys

import click

from ..errors import UsageError
from .base import cli

#: A queue name, as the spec's ``executor.queue`` takes it.
_QUEUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_queues(text: str) -> list[str]:
    """The queue names of ``--queues`` (comma-separated).

    Raises:
        UsageError: an empty list or a name that is not a queue name.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UsageError(f"--queues {text!r} names no queue (e.g. --queues agentrun,gpu)")
    for name in names:
        if not _QUEUE.match(name):
            raise UsageError(
                f"--queues: {name!r} is not a queue name (letters, digits, '_', '-', '.', "
                "at most 64 characters)"
            )
    return names


@cli.command("worker")
@click.option(
    "--queues",
    default="agentrun",
    show_default=True,
    metavar="LIST",
    help="The Celery queues to take runs from, comma-separated (a spec's executor.queue; "
    "'agentrun' is the queue of specs that name none).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Runs at once: pool processes, each pre-warmed. Default: the number of CPUs.",
)
@click.option(
    "--broker",
    default=None,
    metavar="URL",
    help="The Redis broker the daemon sends runs to; default: AGENTRUN_BROKER.",
)
@click.option(
    "--model-path",
    type=click.Choice(["litellm", "direct"]),
    default="litellm",
    show_default=True,
    help="What to warm: litellm (any model) or direct (OpenAI-compatible endpoints only, "
    "never imports litellm).",
)
@click.option(
    "--hostname",
    default=None,
    metavar="NAME",
    help="The worker's name in `agentrun daemon status` (Celery's node name, e.g. gpu1@%h).",
)
def worker(
    queues: str, concurrency: int | None, broker: str | None, model_path: str, hostname: str | None
) -> None:
    """Run a Celery worker taking the daemon's runs (`agentrun daemon --executor celery`).

    It runs them against the run store in AGENTRUN_STORE, which must be the daemon's.
    SIGTERM stops it after the runs in progress end; a worker killed mid-run has its runs
    delivered again to another worker, which continues them from their journals.
    """
    from ..daemon.celery_app import broker_url
    from ..daemon.celery_worker import start_worker
    from ..store.location import redacted, store_location

    names = parse_queues(queues)
    url = broker_url(broker)
    click.echo(
        f"agentrun worker: broker {redacted(url)}, queues {', '.join(names)}, "
        f"store {redacted(store_location())}",
        err=True,
    )
    code = start_worker(names, concurrency or os.cpu_count() or 1, url, model_path, hostname)
    sys.exit(code)
