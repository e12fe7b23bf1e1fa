"""The Celery application both sides share: the broker, the task's name, delivery settings.

The daemon (:mod:`runner.daemon.celery_executor`) sends tasks by name with this app and
never imports the task's module; the worker (:mod:`runner.daemon.celery_worker`) registers
the task on the same app. What makes delivery safe, in Celery's terms:

- **Late acknowledgement** (``task_acks_late``, Celery's ``acks_late``): a task's message is
  acknowledged when the run has ended, not when a worker takes it. A worker that dies
  mid-run never acknowledges it, so the broker delivers it again.
- **Rejected on worker lost** (``task_reject_on_worker_lost``): a pool process killed under
  a task (SIGKILL, the OOM killer) puts the message back at once instead of failing it.
- **Prefetch 1** (``worker_prefetch_multiplier``): a worker reserves only the tasks it runs;
  queued runs wait in the broker, where any worker can take them.
- **Visibility timeout** (Redis only, kombu's ``visibility_timeout``): how long a message
  taken by a worker that vanished (the whole worker killed, its machine lost) stays
  invisible before Redis hands it to another worker. The trade-off: short, and a lost run
  is taken up again quickly, but a run longer than it is delivered a second time while it
  still runs (the second delivery sees the run's fresh heartbeat and waits, so it is not
  run twice, but it polls); long, and a run whose worker vanished waits that long. Set it
  above the longest ``max_duration`` of your agents. Default :data:`VISIBILITY_TIMEOUT_S`.

The run journal is what makes a second delivery harmless: the run continues from its
recorded steps, the in-flight rule of ``agentrun resume`` deciding a call that was running
(:mod:`runner.resume`).
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import SetupError

#: The environment variable holding the broker's URL (``redis://host:6379/0``).
BROKER_VARIABLE = "AGENTRUN_BROKER"
#: The Celery task that runs (or continues) one run; its argument is the daemon's job.
TASK_NAME = "agentrun.run"
#: The queue of an agent whose spec names none (``executor: {queue: ...}``).
DEFAULT_QUEUE = "agentrun"
#: Seconds a message taken by a vanished worker stays invisible (kombu's Redis
#: ``visibility_timeout``; Celery's default is the same hour). Environment:
#: ``AGENTRUN_VISIBILITY_TIMEOUT``.
VISIBILITY_TIMEOUT_S = 3600.0
#: Seconds the broker's connection may take to open before it counts as unreachable.
CONNECT_TIMEOUT_S = 5.0


def broker_url(given: str | None = None) -> str:
    """The broker's URL: ``given``, else ``AGENTRUN_BROKER``.

    Raises:
        SetupError: neither is set, or the URL is not a ``redis://`` / ``rediss://`` URL.
    """
    from ..store.location import redacted

    url = given or os.environ.get(BROKER_VARIABLE, "")
    if not url:
        raise SetupError(
            f"no broker: set {BROKER_VARIABLE} (or --broker) to the Redis URL the daemon and "
            "its workers share, e.g. redis://127.0.0.1:6379/0"
        )
    if not url.startswith(("redis://", "rediss://")):
        raise SetupError(
            f"broker URL {redacted(url)!r} is not a redis:// or rediss:// URL "
            "(the Celery executor speaks to Redis)"
        )
    return url


def visibility_timeout_s() -> float:
    """:data:`VISIBILITY_TIMEOUT_S`, or ``AGENTRUN_VISIBILITY_TIMEOUT`` (seconds) when set.

    Raises:
        SetupError: the variable is not a positive number of seconds.
    """
    text = os.environ.get("AGENTRUN_VISIBILITY_TIMEOUT")
    if not text:
        return VISIBILITY_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise SetupError(
            f"AGENTRUN_VISIBILITY_TIMEOUT={text!r} is not a positive number of seconds"
        )
    return value


def check_broker(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Ping the Redis broker at ``url`` once.

    Raises:
        SetupError: it cannot be reached in ``timeout_s`` seconds, or refuses us; the
            message names the URL without its password.
    """
    import redis

    from ..store.location import redacted

    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as error:
        raise SetupError(
            f"cannot reach the broker at {redacted(url)}: {error} "
            f"(is Redis running there? {BROKER_VARIABLE} or --broker names it)"
        ) from None


def make_app(url: str, visibility_s: float | None = None) -> Any:
    """The Celery app on broker ``url``, with the delivery settings of the module doc.

    No result backend: a run's outcome is its row in the run store, which the daemon reads.
    """
    from celery import Celery

    visibility = visibility_timeout_s() if visibility_s is None else visibility_s
    app = Celery("agentrun", broker=url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=CONNECT_TIMEOUT_S,
        broker_transport_options={
            "visibility_timeout": visibility,
            # Sweep for messages of vanished workers about four times a timeout, at most
            # every 10 s (kombu's default), so a short timeout is honoured.
            "unacked_restore_interval": max(min(visibility / 4, 10.0), 0.5),
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "socket_timeout": 30.0,
        },
        worker_send_task_events=False,
        worker_enable_remote_control=True,
    )
    return app
