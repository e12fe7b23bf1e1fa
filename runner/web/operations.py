"""What the daemon does for the API: :class:`DaemonOperations`, implemented by the daemon.

:mod:`runner.web` never imports :mod:`runner.daemon` (an import-linter contract): the daemon
passes an object of this shape to :func:`runner.web.app.create_app`, and the routes of
:mod:`runner.web.daemon_api` call it. Without one (``agentrun console`` with no daemon) those
routes answer 404.

Every method is called on the daemon's event loop thread (the routes are ``async``), where
the daemon's own state lives; none may block for long.
"""

from __future__ import annotations

from typing import Any, Protocol


class Refused(Exception):
    """The daemon refuses an operation: ``status`` is the HTTP status that fits.

    Args:
        status: 404 no such agent or run, 409 not possible now (no manual trigger, a run not
            active), 422 bad inputs, 503 the daemon is stopping.
        message: what went wrong, and what to do instead (the CLI's located message for
            inputs).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DaemonOperations(Protocol):
    """The daemon's side of the API (see :mod:`runner.daemon.lifecycle`)."""

    def agent_list(self) -> list[dict[str, Any]]:
        """Every spec: valid agents and invalid files (``AgentOut``'s fields)."""
        ...

    def daemon_status(self) -> dict[str, Any]:
        """What ``agentrun daemon status`` shows, and the latest notices (``DaemonOut``)."""
        ...

    def fire_manual(
        self,
        agent: str,
        inputs: dict[str, Any],
        key: str | None,
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        """Fire the agent's manual trigger: ``{"run_id", "outcome", "duplicate"}``.

        ``traceparent``: the W3C trace context the request carried, the run's trace parent
        when its telemetry is on (checked: an invalid one is ignored).

        Raises:
            Refused: 404 no such agent, 409 no manual trigger, 422 bad inputs, 503 stopping.
        """
        ...

    def ended(self, run_id: str) -> dict[str, Any] | None:
        """How the run ended: None while it may still run.

        ``{"outcome", "reason"}`` of its fire when it never ran (failed, cancelled,
        skipped); ``{}`` when its run ended (or waits for a person).
        """
        ...

    def cancel_run(self, run_id: str, by: str) -> str:
        """Cancel an active run of the daemon; how.

        ``"cancelling"`` (SIGTERM sent) or ``"withdrawn"`` (it waited for a worker and
        never starts).

        Raises:
            Refused: 409 the run is not active in this daemon.
        """
        ...
