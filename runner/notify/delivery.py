"""Delivering notifications: Apprise in a thread pool, retried with backoff, every attempt recorded.

:class:`Sender` takes a message for a channel and returns at once; a worker thread claims
the notification in the run store (the unique ``(event_key, channel)``: a claim that loses
means another process sends it, and this one does nothing), resolves the channel's
``${NAME}`` secrets from the environment, and sends it with Apprise, each attempt with a
socket timeout (Apprise's ``cto``/``rto``), up to :data:`ATTEMPTS` attempts with exponential
backoff (tenacity). Each attempt is recorded (``pending`` → ``sent`` or ``failed``, the count
of attempts, the error's text with the secrets masked). Nothing here raises into the caller:
a channel that is down, hangs or is misconfigured is a ``failed`` row, never a failed run.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .channels import Channel, ChannelError, mask
from .messages import Message

if TYPE_CHECKING:
    from ..store import RunStore
    from ..store.location import StoreLocation

log = logging.getLogger("agentrun.notify")

#: Seconds each attempt may wait to connect, and then for each read (Apprise's cto and rto).
SEND_TIMEOUT_S = 10.0
#: Attempts per notification, the first included.
ATTEMPTS = 3
#: Seconds before the second attempt; doubled before each next one (at most 30 s).
BACKOFF_S = 1.0
#: Worker threads sending at once.
WORKERS = 4
#: The most characters of an error kept in the store.
MAX_ERROR_CHARS = 500


class SendFailed(Exception):
    """One attempt failed; the message is the error's text with secrets masked."""


class Sender:
    """Sends notifications off the caller's path and records them in the run store.

    Args:
        store_path: the run store's location (:mod:`runner.store.location`); the sender
            opens its own connection (used by its threads, one at a time).
        environ: where ``${NAME}`` values come from (default: the process environment).
        timeout_s: seconds each attempt may wait to connect and for each read.
        attempts: attempts per notification.
        backoff_s: seconds before the second attempt, doubled each time after.
        open_store: opens the store (tests pass their own); default
            :func:`runner.store.location.open_store`.
    """

    def __init__(
        self,
        store_path: StoreLocation,
        environ: Mapping[str, str] | None = None,
        timeout_s: float = SEND_TIMEOUT_S,
        attempts: int = ATTEMPTS,
        backoff_s: float = BACKOFF_S,
        open_store: Callable[[StoreLocation], RunStore] | None = None,
    ) -> None:
        self.store_path = store_path
        self.environ = os.environ if environ is None else environ
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self._open_store = open_store
        self._store: RunStore | None = None
        self._store_lock = threading.Lock()
        # Daemon threads, not a ThreadPoolExecutor: the interpreter joins an executor's
        # threads at exit, so a receiver that hangs would hold `agentrun run` open through
        # every retry (measured: 7.4 s past close() with 2 s timeouts). A send still going
        # when the process ends is dropped and stays `pending` in the store.
        self._jobs: queue.SimpleQueue[tuple[str, str, str, Channel, Message] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._pending = 0
        self._idle = threading.Condition()
        self._closed = False

    # -- the caller's side ------------------------------------------------------------------

    def submit(
        self, run_id: str, event: str, event_key: str, channel: Channel, message: Message
    ) -> None:
        """Queue ``message`` for ``channel`` about ``event`` of ``run_id``; returns at once."""
        with self._idle:
            if self._closed:
                return
            self._pending += 1
            if len(self._threads) < min(WORKERS, self._pending):
                thread = threading.Thread(target=self._work, name="agentrun-notify", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._jobs.put((run_id, event, event_key, channel, message))

    def wait(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` seconds for the queued sends; True when none is left."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout_s)

    def close(self, wait_s: float = 0.0) -> None:
        """Stop taking sends; wait up to ``wait_s`` seconds for those under way, drop the rest."""
        self.wait(wait_s)
        with self._idle:
            self._closed = True
            threads = len(self._threads)
        for _ in range(threads):
            self._jobs.put(None)  # each idle thread ends; a busy one ends after its send
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if not self._closed:  # queued but not started when closed: dropped
                    self._deliver(*job)
            except Exception as error:  # a bug of ours: logged, never raised into a run
                log.error("notification thread failed: %s", type(error).__name__)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    # -- the worker's side ------------------------------------------------------------------

    def _with_store(self, action: Callable[[RunStore], Any]) -> Any:
        with self._store_lock:
            if self._store is None:
                if self._open_store is not None:
                    self._store = self._open_store(self.store_path)
                else:
                    from ..store.location import open_store

                    self._store = open_store(self.store_path)
            return action(self._store)

    def _deliver(
        self, run_id: str, event: str, event_key: str, channel: Channel, message: Message
    ) -> None:
        try:
            url, secrets = channel.resolve(self.environ)
        except ChannelError as error:
            why = str(error)  # names the variable, never a value
        else:
            why = ""
        if why:
            # No value was substituted: the template (${NAME} as written) is what is stored.
            shown = _shown_url(None, channel.url, [])
            unsent = self._with_store(
                lambda s: s.claim_notification(run_id, event, event_key, shown)
            )
            if unsent is not None:
                self._with_store(lambda s: s.notification_attempted(unsent, "failed", 0, why))
                log.warning("notification %s of run %s not sent: %s", event, run_id, why)
            return
        plugin = _instantiate(url, self.timeout_s)
        shown = _shown_url(plugin, url, secrets)
        claimed = self._with_store(lambda s: s.claim_notification(run_id, event, event_key, shown))
        if claimed is None:
            return  # another process (or an earlier look) sends it
        if plugin is None:
            why = f"not an Apprise URL Apprise can use: {shown}"
            self._with_store(lambda s: s.notification_attempted(claimed, "failed", 0, why))
            log.warning("notification %s of run %s not sent: %s", event, run_id, why)
            return
        self._send_with_retries(claimed, plugin, message, secrets, run_id, event, shown)

    def _send_with_retries(
        self,
        claimed: int,
        plugin: Any,
        message: Message,
        secrets: list[str],
        run_id: str,
        event: str,
        shown: str,
    ) -> None:
        from tenacity import (
            RetryError,
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential,
        )

        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            try:
                _send_once(plugin, message, secrets)
            except SendFailed as failure:
                if attempts < self.attempts:
                    text = str(failure)
                    self._with_store(
                        lambda s: s.notification_attempted(claimed, "pending", attempts, text)
                    )
                raise

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, max=30),
            retry=retry_if_exception_type(SendFailed),
            reraise=False,
        )
        try:
            retrying(attempt)
        except RetryError as error:
            last = error.last_attempt.exception()
            text = str(last)[:MAX_ERROR_CHARS] if last is not None else "failed"
            self._with_store(lambda s: s.notification_attempted(claimed, "failed", attempts, text))
            log.warning(
                "notification %s of run %s to %s failed after %d attempts: %s",
                event,
                run_id,
                shown,
                attempts,
                text,
            )
            return
        self._with_store(lambda s: s.notification_attempted(claimed, "sent", attempts, None))
        log.info("notification %s of run %s sent to %s", event, run_id, shown)


def _instantiate(url: str, timeout_s: float) -> Any:
    """Apprise's plugin object for ``url`` with the timeouts set, or None when it is no URL."""
    apprise = import_apprise()
    with _ApprisLogCapture():  # Apprise logs the URL it cannot parse: keep it out of logs
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if not plugin:
        return None
    plugin.socket_connect_timeout = timeout_s
    plugin.socket_read_timeout = timeout_s
    return plugin


_import_lock = threading.Lock()


def import_apprise() -> Any:
    """The ``apprise`` module, imported on first use.

    Apprise 2.2's e-mail plugin imports the standard library's ``imghdr``, deprecated since
    Python 3.11: that one warning is silenced while Apprise and its plugins load (Apprise
    loads them on first use; here, under a lock, as ``warnings.catch_warnings`` is not
    thread-safe).
    """
    with _import_lock, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
        import apprise
        from apprise.manager_plugins import NotificationManager

        NotificationManager().load_modules()  # type: ignore[no-untyped-call]  # plugins: now
    return apprise


def _shown_url(plugin: Any, url: str, secrets: list[str]) -> str:
    """The channel as stored and logged: Apprise's private form, substituted values masked.

    Without a plugin (a URL Apprise cannot parse), only its scheme.
    """
    if plugin is not None:
        return mask(str(plugin.url(privacy=True)), secrets)
    if secrets:
        return url.split("://", 1)[0] + "://" + "…"
    return url if "@" not in url else url.split("://", 1)[0] + "://…"


def _send_once(plugin: Any, message: Message, secrets: list[str]) -> None:
    """One attempt; raises :class:`SendFailed` with Apprise's reason (masked) when it fails."""
    with _ApprisLogCapture() as captured:
        try:
            sent = bool(plugin.notify(body=message.body, title=message.title))
        except Exception as error:  # a plugin's bug or a socket error it did not catch
            raise SendFailed(mask(f"{type(error).__name__}: {error}", secrets)) from None
    if not sent:
        reason = "; ".join(captured.lines[-3:]) or "the channel refused the message"
        raise SendFailed(mask(reason, secrets)[:MAX_ERROR_CHARS])


class _ApprisLogCapture(logging.Handler):
    """Apprise's log lines of this thread, kept (to say why a send failed), not propagated.

    Apprise logs to the ``apprise`` logger; while any capture is active that logger does not
    pass records on (they may hold a URL), and each capture keeps its own thread's lines.
    """

    _active = 0
    _lock = threading.Lock()

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread and record.levelno >= logging.WARNING:
            self.lines.append(" ".join(record.getMessage().split()))

    def __enter__(self) -> _ApprisLogCapture:
        logger = logging.getLogger("apprise")
        with self._lock:
            type(self)._active += 1
            logger.propagate = False
            if logger.level == logging.NOTSET or logger.level > logging.WARNING:
                logger.setLevel(logging.WARNING)
            logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("apprise")
        with self._lock:
            logger.removeHandler(self)
            type(self)._active -= 1
            if type(self)._active == 0:
                logger.propagate = True
