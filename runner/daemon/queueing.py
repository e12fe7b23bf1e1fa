"""The daemon's queue triggers: a consumer thread per trigger, reading a Redis stream.

Each queue trigger of a loaded spec gets a :class:`StreamConsumer`, a thread that reads its
stream in a consumer group, as Redis streams are meant to be consumed
(https://redis.io/docs/latest/develop/data-types/streams/):

1. ``XGROUP CREATE <stream> <group> $ MKSTREAM``: the group (and the stream) is created if
   missing, at the stream's end; an existing group keeps its position.
2. ``XREADGROUP ... <stream> 0``: first the entries this consumer read before and never
   acknowledged (its daemon died between reading and ``XACK``). The consumer's name is the
   daemon's (:func:`consumer_name`: host and home), so a restarted daemon finds its own.
3. ``XAUTOCLAIM <stream> <group> <consumer> <claim_after>``: entries another consumer read
   and left unacknowledged for longer than the trigger's ``claim_after`` (a daemon that died
   and did not come back) are claimed, at the start and every ``claim_after / 2`` seconds.
4. ``XREADGROUP ... <stream> > BLOCK 1000 COUNT 16``: new entries, oldest first.

Every entry becomes one fire, handed to the event loop's thread (the planner and the store
belong to it) and recorded there under the idempotency key of (stream, message id)
(:func:`runner.triggers.queue.fire_key`), so an entry delivered again is recorded once
(the second is a ``duplicate``, nothing done). ``XACK`` follows only once the loop has
answered: the fire is recorded (started, queued or skipped by the agent's concurrency
policy, or a duplicate of one recorded before). Delivery is thus at least once from Redis
and exactly once into the store. An entry whose payload cannot become valid inputs (not
JSON, a path the payload lacks, a value of the wrong type) is recorded as a ``failed`` fire
with the reason, kept in the store's notices, and acknowledged: it stays in the stream, where
``XRANGE <stream> <id> <id>`` finds it.

A lost or refused connection is retried with exponential backoff and jitter (tenacity's
``wait_exponential_jitter``, :data:`RETRY_INITIAL_S` to :data:`RETRY_MAX_S` seconds apart)
until the daemon stops; the first failure of each outage is a notice in the store (with the
URL's password masked). Nothing is lost meanwhile: unread entries wait in the stream, and
read-but-unacknowledged ones in the group's pending list, read again on reconnection.

:meth:`QueueConsumers.start` and :meth:`QueueConsumers.stop` begin and end consuming for
every loaded agent at once, so the lifecycle can consume only while it leads. redis-py and
tenacity are imported by the consumer threads, never by this module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..spec import TriggerKind
from ..store.location import redacted
from ..store.rows import FireOutcome
from .state import AgentState, Fire

log = logging.getLogger("agentrun.daemon")

#: How long one ``XREADGROUP`` waits for new entries, in seconds (and so how long a stopping
#: consumer may take to notice).
BLOCK_S = 1.0
#: Most entries read by one ``XREADGROUP`` or ``XAUTOCLAIM``.
BATCH = 16
#: First and longest wait between two attempts to reach Redis, in seconds.
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0
#: How long a socket may wait for Redis beyond the block time, in seconds.
SOCKET_TIMEOUT_S = 10.0


def consumer_name(home: Path) -> str:
    """The daemon's consumer name in every group: ``<host>.<8 hex digits of its home>``.

    The same for a daemon restarted on the same machine and home, so it reads again the
    entries it left pending; different for every other daemon.
    """
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}.{digest}"


@dataclass
class ConsumerState:
    """What ``daemon status`` shows of one consumer.

    Attributes:
        url: the Redis URL, its password masked.
        connected: whether the consumer reads now.
        error: the last failure to reach Redis or to read, "" when none since.
        acked: entries acknowledged since the daemon started.
    """

    url: str = ""
    connected: bool = False
    error: str = ""
    acked: int = 0


class StreamConsumer(threading.Thread):
    """Reads one queue trigger's stream for one agent (see the module docstring).

    Args:
        consumers: the daemon's :class:`QueueConsumers` (its callbacks into the event loop).
        agent: the agent, at the generation of its spec this consumer serves.
        index: the trigger's position in the spec's ``triggers``.
        consumer: this daemon's consumer name (:func:`consumer_name`).
    """

    def __init__(
        self, consumers: QueueConsumers, agent: AgentState, index: int, consumer: str
    ) -> None:
        queue = agent.spec.triggers[index].queue
        assert queue is not None  # only queue triggers get a consumer
        super().__init__(name=f"queue-{agent.name}-{index}", daemon=True)
        self.consumers = consumers
        self.agent = agent
        self.index = index
        self.queue = queue
        self.group = self.queue.group_of(agent.name)
        self.consumer = consumer
        self.stopped = threading.Event()
        self.state = ConsumerState()
        self.where = f"queue trigger {index + 1} of {agent.name} (stream {self.queue.stream!r})"

    # -- the thread ---------------------------------------------------------------------

    def run(self) -> None:
        """Connect, consume until stopped; reconnect after any failure."""
        try:
            self.serve()
        except Exception as error:  # a bug of ours: say so where the operator looks
            log.exception("%s stopped", self.where)
            self.notice("error", f"{self.where} stopped: {type(error).__name__}: {error}")

    def serve(self) -> None:
        """The thread's work (:meth:`run`)."""
        from ..triggers.queue import QueueUrlError, queue_url

        try:
            url = queue_url(self.queue.url, os.environ)
        except QueueUrlError as error:
            self.notice("error", f"{self.where} cannot start: {error}")
            self.state.error = str(error)
            return
        self.state.url = redacted(url)
        while not self.stopped.is_set():
            client = self.connect(url)
            if client is None:
                return
            try:
                self.consume(client)
                # Returned without a stop: the loop refused a fire (the agent is going or
                # its spec changed); the entry stays pending. Wait before reading again.
                self.stopped.wait(BLOCK_S)
            except Exception as error:  # a lost connection, or the store failing in the loop
                self.state.connected = False
                self.state.error = f"{type(error).__name__}: {error}"
                self.notice(
                    "warning",
                    f"{self.where}: stopped reading from {self.state.url}: {self.state.error}; "
                    "reconnecting (entries read and not acknowledged are read again)",
                )
                self.stopped.wait(RETRY_INITIAL_S)
            finally:
                self.state.connected = False
                with contextlib.suppress(Exception):
                    client.close()

    def connect(self, url: str) -> Any:
        """A client with the group made, retried with backoff; None once stopped.

        A URL redis-py cannot parse ends the consumer (a notice says so).
        """
        import redis
        from tenacity import (
            RetryCallState,
            RetryError,
            Retrying,
            retry_if_exception_type,
            stop_when_event_set,
            wait_exponential_jitter,
        )

        failures = 0

        def retrying(state: RetryCallState) -> None:
            nonlocal failures
            failures += 1
            error = state.outcome.exception() if state.outcome else None
            self.state.error = f"{type(error).__name__}: {error}"
            if failures == 1:
                self.notice(
                    "warning",
                    f"{self.where}: cannot reach Redis at {self.state.url}: {self.state.error}; "
                    f"retrying with backoff (at most {RETRY_MAX_S:.0f} s apart); the stream keeps "
                    "its entries meanwhile",
                )

        def attempt() -> Any:
            client = redis.Redis.from_url(
                url,
                socket_connect_timeout=SOCKET_TIMEOUT_S,
                socket_timeout=BLOCK_S + SOCKET_TIMEOUT_S,
            )
            try:
                client.xgroup_create(self.queue.stream, self.group, id="$", mkstream=True)
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    client.close()
                    raise
            except BaseException:
                client.close()
                raise
            return client

        try:
            client = Retrying(
                retry=retry_if_exception_type(redis.RedisError),
                wait=wait_exponential_jitter(
                    multiplier=RETRY_INITIAL_S, max=RETRY_MAX_S, jitter=RETRY_INITIAL_S
                ),
                stop=stop_when_event_set(self.stopped),
                sleep=self.pause,
                before_sleep=retrying,
            )(attempt)
        except RetryError:
            return None  # stopped while retrying
        except ValueError as error:  # redis-py refuses the URL itself
            self.notice("error", f"{self.where} cannot start: {self.state.url}: {error}")
            self.stopped.set()
            return None
        if failures:
            log.info(
                "%s: reached Redis at %s after %d failures", self.where, self.state.url, failures
            )
        self.state.connected, self.state.error = True, ""
        log.info(
            "%s: consuming as %r in group %r on %s",
            self.where,
            self.consumer,
            self.group,
            self.state.url,
        )
        return client

    def consume(self, client: Any) -> None:
        """Own pending entries, claimed ones, then new ones, until stopped.

        Raises:
            redis.RedisError: the connection was lost (the caller reconnects).
        """
        stream, group = self.queue.stream, self.group
        after = "0"
        while not self.stopped.is_set():  # this consumer's pending entries, oldest first
            read = client.xreadgroup(group, self.consumer, {stream: after}, count=BATCH)
            entries = read[0][1] if read else []
            if not entries:
                break
            for message_id, fields in entries:
                if not self.handle(client, message_id, fields):
                    return
                after = _text(message_id)
        claim_every = max(self.queue.claim_after / 2, BLOCK_S)
        next_claim = 0.0
        while not self.stopped.is_set():
            if time.monotonic() >= next_claim:
                if not self.claim(client):
                    return
                next_claim = time.monotonic() + claim_every
            read = client.xreadgroup(
                group, self.consumer, {stream: ">"}, count=BATCH, block=int(BLOCK_S * 1000)
            )
            for message_id, fields in read[0][1] if read else []:
                if not self.handle(client, message_id, fields):
                    return

    def claim(self, client: Any) -> bool:
        """Claim and handle the entries other consumers left pending over ``claim_after``."""
        start = "0-0"
        while not self.stopped.is_set():
            answer = client.xautoclaim(
                self.queue.stream,
                self.group,
                self.consumer,
                int(self.queue.claim_after * 1000),
                start_id=start,
                count=BATCH,
            )
            start, entries = _text(answer[0]), answer[1]
            for message_id, fields in entries:
                log.info("%s: claimed entry %s left pending", self.where, _text(message_id))
                if not self.handle(client, message_id, fields):
                    return False
            if start == "0-0":
                return True
        return False

    def handle(self, client: Any, raw_id: Any, fields: Mapping[Any, Any] | None) -> bool:
        """Fire one entry and acknowledge it once the loop recorded the fire.

        Returns False when the daemon stops or the agent's spec changed before the fire was
        recorded (the entry stays pending, read again by the next consumer).
        """
        message_id = _text(raw_id)
        if fields is None:  # deleted from the stream while it was pending: nothing to fire
            log.warning("%s: entry %s was deleted before it was handled", self.where, message_id)
            client.xack(self.queue.stream, self.group, message_id)
            return True
        fire, reason = self.fire_of(message_id, fields)
        outcome = self.consumers.in_loop(
            lambda: self.consumers.deliver(self.agent, fire, reason), self.stopped
        )
        if outcome is None:
            return False
        client.xack(self.queue.stream, self.group, message_id)
        self.state.acked += 1
        return True

    def fire_of(self, message_id: str, fields: Mapping[Any, Any]) -> tuple[Fire, str]:
        """The entry's fire and "", or a fire without inputs and why it cannot run."""
        from ..compiler import coerce_inputs
        from ..errors import UsageError
        from ..store import new_run_id
        from ..triggers.queue import fire_key, payload_of
        from ..triggers.webhook import PayloadError, inputs_from_payload

        stream = self.queue.stream
        fire = Fire(
            self.agent.name,
            TriggerKind.QUEUE,
            self.index,
            new_run_id(),
            key=fire_key(stream, message_id),
        )
        try:
            payload = payload_of(fields, self.queue.field)
            given = inputs_from_payload(self.queue.inputs, payload, "queue")
            fire.inputs = coerce_inputs(self.agent.spec, given)
        except (PayloadError, UsageError) as error:
            return fire, (
                f"message {message_id} of stream {stream!r} cannot become inputs: {error}; "
                f"it stays in the stream (XRANGE {stream} {message_id} {message_id})"
            )
        return fire, ""

    def notice(self, level: str, message: str) -> None:
        """Log ``message`` and keep it in the store's notices (from the event loop)."""
        (log.error if level == "error" else log.warning)("%s", message)
        self.consumers.in_loop(
            lambda: self.consumers.record_notice(level, message, agent=self.agent.name),
            self.stopped,
        )

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` between two attempts, or less if the consumer is stopped."""
        self.stopped.wait(seconds)

    def stop(self) -> None:
        """Ask the thread to end (within :data:`BLOCK_S` seconds, or a retry's wait)."""
        self.stopped.set()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class QueueConsumers:
    """Every queue trigger's :class:`StreamConsumer`, started and stopped together.

    Args:
        consumer: this daemon's consumer name (:func:`consumer_name`).
        agents: the installed agents (read in the event loop).
        fire: applies the agent's concurrency policy to a fire and records it
            (:meth:`runner.daemon.planner.Planner.fire`).
        record_failed: records a fire that cannot run, with its reason; False when its key
            was recorded before (``Planner.record_fire`` with ``failed``).
        record_notice: keeps a notice (:meth:`runner.store.RunStore.record_notice`).
        stopping: whether the daemon is stopping (then nothing fires).

    Consumers run only between :meth:`start` and :meth:`stop`; agents set up meanwhile
    (:meth:`consume_agent`) start theirs at once.
    """

    def __init__(
        self,
        consumer: str,
        agents: Callable[[], Mapping[str, AgentState]],
        fire: Callable[[Fire], FireOutcome],
        record_failed: Callable[[Fire, str], bool],
        record_notice: Callable[..., Any],
        stopping: Callable[[], bool],
    ) -> None:
        self.consumer = consumer
        self.agents = agents
        self.fire = fire
        self.record_failed = record_failed
        self.record_notice = record_notice
        self.stopping = stopping
        self.loop: asyncio.AbstractEventLoop | None = None
        self.watched: dict[str, AgentState] = {}
        self.threads: dict[str, list[StreamConsumer]] = {}
        self.ended: list[StreamConsumer] = []

    @staticmethod
    def has_queues(agent: AgentState) -> bool:
        """Whether the agent's spec has a queue trigger."""
        return any(t.kind == TriggerKind.QUEUE and t.queue for t in agent.spec.triggers)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin consuming for every agent set up (the lifecycle calls it once it serves)."""
        self.loop = loop
        for agent in list(self.watched.values()):
            self._start_agent(agent)

    def stop(self) -> None:
        """Stop every consumer (their entries in flight stay pending); :meth:`join` after."""
        self.loop = None
        for name in list(self.threads):
            self._stop_agent(name)

    def join(self, timeout_s: float = BLOCK_S + 2.0) -> None:
        """Wait for the stopped consumers' threads to end, each at most ``timeout_s`` seconds."""
        for thread in self.ended:
            thread.join(timeout=timeout_s)
        self.ended = [thread for thread in self.ended if thread.is_alive()]

    def consume_agent(self, agent: AgentState) -> None:
        """Set up (or again, for a reloaded spec) the agent's queue triggers."""
        self.remove_agent(agent.name)
        if self.has_queues(agent):
            self.watched[agent.name] = agent
            if self.loop is not None:
                self._start_agent(agent)

    def remove_agent(self, name: str) -> None:
        """Stop consuming for the agent (a removed or reloaded spec)."""
        self.watched.pop(name, None)
        self._stop_agent(name)

    def _start_agent(self, agent: AgentState) -> None:
        threads = [
            StreamConsumer(self, agent, trigger.index, self.consumer)
            for trigger in agent.spec.triggers
            if trigger.kind == TriggerKind.QUEUE and trigger.queue
        ]
        self.threads[agent.name] = threads
        for thread in threads:
            thread.start()

    def _stop_agent(self, name: str) -> None:
        for thread in self.threads.pop(name, []):
            thread.stop()
            self.ended.append(thread)

    def status(self, name: str, trigger: Any) -> dict[str, Any]:
        """What ``daemon status`` shows of agent ``name``'s queue trigger ``trigger``.

        ``stream``, ``group``, ``consumer``; and while its consumer runs, ``url`` (password
        masked), ``connected``, ``error`` ("" when none) and ``acked`` (entries since start).
        """
        queue = trigger.queue
        entry: dict[str, Any] = {
            "stream": queue.stream,
            "group": queue.group_of(name),
            "consumer": self.consumer,
            "consuming": False,
        }
        for thread in self.threads.get(name, []):
            if thread.index == trigger.index:
                entry.update(consuming=True, **asdict(thread.state))
        return entry

    # -- in the event loop ----------------------------------------------------------------

    def in_loop(self, call: Callable[[], Any], stopped: threading.Event) -> Any:
        """``call()`` run in the event loop's thread; its result, or None once stopped.

        Raises:
            Exception: what ``call`` raised.
        """
        loop = self.loop
        if loop is None:
            return None
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(call())
            except Exception as error:
                future.set_exception(error)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop is closed: the daemon is gone
            return None
        while True:
            try:
                return future.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                if stopped.is_set() and future.cancel():
                    return None

    def deliver(self, agent: AgentState, fire: Fire, reason: str) -> FireOutcome | None:
        """In the loop: fire (or record as failed, with ``reason``); None if it may not.

        It may not once the daemon stops, or when the agent is gone or its spec was
        reloaded since the consumer started (the entry stays pending for the next one).
        """
        current = self.agents().get(agent.name)
        if self.stopping() or current is None or current.generation != agent.generation:
            return None
        if not reason:
            return self.fire(fire)
        if not self.record_failed(fire, reason):
            return FireOutcome.DUPLICATE
        log.warning("failed queue fire of %s: %s", agent.name, reason)
        self.record_notice(
            "warning", f"queue fire of {agent.name} failed: {reason}", agent=agent.name
        )
        return FireOutcome.FAILED
