"""Escalation: a run stopped for a reason in ``escalate_on``, and the grants that continue it.

A run whose stop reason is listed in the spec's ``escalate_on`` ends as ``escalated``
(``escalated_from`` keeps the reason) with a message a person can act on
(:func:`escalation_message`). A person then closes it (``agentrun runs close RUN``) or
continues it with more budget (``agentrun resume RUN --add max_steps=10``): a *grant* adds
an amount to one limit, and :func:`effective_spec` raises the spec's limits by every grant
recorded for the run, wherever the run is continued (the CLI, the daemon's worker), so a
continued run that pauses again keeps them. No grant may take a limit past its
``budgets.ceilings`` entry; a limit without a ceiling, or one the spec leaves unset, cannot
be raised at all (:func:`check_grants`).

Units are the limits' own: counts (steps, tool calls, check retries), tokens, USD and
seconds (``max_duration``, written as a duration: ``90s``, ``15m``, ``2h`` or seconds).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import StopReason, UsageError
from .spec import parse_duration, replace
from .spec.checks_escalation import NEEDS_GRANT, limit_of

if TYPE_CHECKING:
    from .budgets import Usage
    from .spec import AgentSpec
    from .store import GrantRow, RunStore

#: The limits a grant can raise, in the order they are shown.
GRANTABLE = (
    "max_steps",
    "max_tool_calls",
    "max_tokens",
    "max_cost_usd",
    "max_duration",
    "max_check_retries",
)
#: The limits counted in whole units (the others: USD and seconds).
_WHOLE = frozenset({"max_steps", "max_tool_calls", "max_tokens", "max_check_retries"})
#: Stop reasons that are never escalated: the run did not stop, or already waits for a person.
NEVER_ESCALATED = frozenset(
    {
        StopReason.COMPLETED,
        StopReason.PROPOSED,
        StopReason.WAITING_APPROVAL,
        StopReason.WAITING_INPUT,
        StopReason.ESCALATED,
        StopReason.INTERRUPTED,
        StopReason.CANCELLED,
    }
)


class GrantRefused(UsageError):
    """A grant that is not recorded; the message names the limit and what can be granted.

    Attributes:
        malformed: True when the grant itself is wrong (an unknown name, a bad value),
            False when it is well formed but the spec does not allow it (over a ceiling,
            no ceiling, a limit the spec leaves unset).
    """

    def __init__(self, message: str, malformed: bool) -> None:
        super().__init__(message)
        self.malformed = malformed


def grant_amount(name: str, value: Any) -> float:
    """The amount a grant of ``value`` adds to limit ``name`` (its unit: see the module doc).

    ``value`` is a number or its text; for ``max_duration`` also a duration (``15m``).

    Raises:
        GrantRefused: (malformed) ``name`` is not in :data:`GRANTABLE`, or ``value`` is not
            a positive amount (a whole number for counts and tokens).
    """
    if name not in GRANTABLE:
        raise GrantRefused(
            f"cannot grant {name!r}: the limits that can be raised are {', '.join(GRANTABLE)}",
            malformed=True,
        )
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        if name == "max_duration":
            amount = parse_duration(value if isinstance(value, int | float) else str(value))
        elif name in _WHOLE:
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            amount = number
        else:
            amount = float(value)
    except (TypeError, ValueError):
        expected = {
            "max_duration": "a duration such as 90s, 15m, 2h or seconds",
            "max_cost_usd": "an amount in USD such as 0.5",
        }.get(name, "a whole number")
        raise GrantRefused(
            f"bad grant {name}={value!r}: expected {expected}", malformed=True
        ) from None
    if not amount > 0 or amount != amount or amount == float("inf"):
        raise GrantRefused(
            f"bad grant {name}={value!r}: a grant adds a positive amount", malformed=True
        )
    return amount


def parse_grants(flags: Iterable[str]) -> dict[str, float]:
    """``--add NAME=VALUE`` flags → limit name → amount added (repeated names add up).

    Raises:
        GrantRefused: (malformed) a flag without ``=``, or see :func:`grant_amount`.
    """
    grants: dict[str, float] = {}
    for flag in flags:
        name, sep, value = flag.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise GrantRefused(
                f"bad grant {flag!r}: expected NAME=VALUE, for example max_steps=10",
                malformed=True,
            )
        name = name.strip()
        grants[name] = grants.get(name, 0.0) + grant_amount(name, value.strip())
    return grants


def granted_totals(grants: Iterable[GrantRow]) -> dict[str, float]:
    """Limit name → the sum of the recorded grants of it."""
    totals: dict[str, float] = {}
    for grant in grants:
        totals[grant["budget"]] = totals.get(grant["budget"], 0.0) + float(grant["amount"])
    return totals


def effective_limits(spec: AgentSpec, grants: Iterable[GrantRow]) -> dict[str, float | None]:
    """Each grantable limit of a run: the spec's value plus every grant recorded for it."""
    totals = granted_totals(grants)
    limits: dict[str, float | None] = {}
    for name in GRANTABLE:
        base = limit_of(spec, name)
        limits[name] = None if base is None else base + totals.get(name, 0.0)
    return limits


def check_grants(
    spec: AgentSpec, recorded: Iterable[GrantRow], new: Mapping[str, float]
) -> dict[str, float]:
    """The limits ``new`` grants would give; refused if any passes its ceiling.

    Args:
        spec: the run's spec (its limits and ``budgets.ceilings``).
        recorded: the grants already recorded for the run (``store.grants``).
        new: limit name → amount to add (from :func:`parse_grants` or :func:`grant_amount`).

    Returns:
        Limit name → the effective limit after the grants, for the names in ``new``.

    Raises:
        GrantRefused: (not malformed) a limit the spec leaves unset (nothing to add to), a
            limit without a ``budgets.ceilings`` entry, or a total past its ceiling (the
            message names the ceiling and the most that can still be granted).
    """
    limits = effective_limits(spec, recorded)
    after: dict[str, float] = {}
    for name, amount in new.items():
        current = limits[name]
        if current is None:
            raise GrantRefused(
                f"cannot add to {name}: the spec sets no {name}, so there is no limit to raise",
                malformed=False,
            )
        ceiling = getattr(spec.budgets.ceilings, name)
        if ceiling is None:
            raise GrantRefused(
                f"cannot raise {name}: budgets.ceilings sets no ceiling for it in "
                f"{spec.path}, so no grant of it is allowed",
                malformed=False,
            )
        total = current + amount
        if total > float(ceiling) + 1e-9:
            room = max(0.0, float(ceiling) - current)
            raise GrantRefused(
                f"a grant over the ceiling is refused: {name} is {_show(name, current)}, "
                f"+{_show(name, amount)} would make {_show(name, total)}, past its ceiling "
                f"budgets.ceilings.{name} = {_show(name, float(ceiling))}; the most that can "
                f"still be granted is {_show(name, room)}",
                malformed=False,
            )
        after[name] = total
    return after


def effective_spec(spec: AgentSpec, grants: Iterable[GrantRow]) -> AgentSpec:
    """``spec`` with its limits raised by ``grants`` (a run's recorded grants); same if none.

    The ceilings are not checked here: they were when each grant was recorded.
    """
    totals = granted_totals(grants)
    if not totals:
        return spec
    budgets: dict[str, Any] = {}
    for name, amount in totals.items():
        if name == "max_check_retries":  # read from the spec's own key, below
            continue
        base = getattr(spec.budgets, name)
        if base is not None:
            raised = base + amount
            budgets[name] = int(raised) if name in _WHOLE else raised
    changes: dict[str, Any] = {"budgets": replace(spec.budgets, **budgets)}
    if "max_check_retries" in totals:
        changes["max_check_retries"] = spec.max_check_retries + int(totals["max_check_retries"])
    return replace(spec, **changes)


def applied(spec: AgentSpec, store: RunStore, run_id: str) -> AgentSpec:
    """``spec`` with the grants recorded for run ``run_id`` applied (:func:`effective_spec`)."""
    return effective_spec(spec, store.grants(run_id))


def loop_reset_at(store: RunStore, run_id: str) -> str | None:
    """When a person last continued run ``run_id`` escalated by ``loop_detected`` (UTC ISO).

    The loop detector of a continued run counts only the calls made after it: a person
    looked at the repeats and let it go on.
    """
    moments = [
        row["decided_at"]
        for row in store.escalations(run_id, status="continued")
        if row["stop_reason"] == StopReason.LOOP_DETECTED and row["decided_at"]
    ]
    return max(moments) if moments else None


def _show(name: str, value: float) -> str:
    if name == "max_cost_usd":
        return f"${value:.4f}".rstrip("0").rstrip(".")
    if name == "max_duration":
        return f"{value:g} s"
    return f"{int(value)}" if float(value).is_integer() else f"{value:g}"


def escalation_message(
    run_id: str,
    reason: StopReason,
    detail: str,
    spec: AgentSpec,
    usage: Usage,
    messages: list[dict[str, Any]],
) -> str:
    """What a person needs to act on an escalated run, in a few lines of plain text.

    Args:
        run_id: the run.
        reason: the stop reason that escalated it (one of the spec's ``escalate_on``).
        detail: that stop's own message.
        spec: the run's spec as it ran (with its grants applied).
        usage: what the run used (steps, tool calls, tokens, USD, seconds).
        messages: the conversation, for the last tool calls and the model's last words.
    """
    budgets = spec.budgets

    def of(value: object, limit: object) -> str:
        return f"{value} of {limit}" if limit is not None else f"{value} (no limit)"

    cost = f"${usage.cost_usd:.4f}" if usage.cost_known else "unknown"
    limit_cost = None if budgets.max_cost_usd is None else f"${budgets.max_cost_usd:g}"
    lines = [
        f"escalated: the run stopped with {reason} ({detail or 'no message'}); "
        "a person decides whether it goes on",
        f"used: {of(usage.steps, budgets.max_steps)} steps, "
        f"{of(usage.tool_calls, budgets.max_tool_calls)} tool calls, "
        f"{of(usage.tokens, budgets.max_tokens)} tokens, {of(cost, limit_cost)} USD, "
        f"{of(f'{usage.elapsed_s:.0f} s', budgets.max_duration)}",
    ]
    calls = _last_calls(messages)
    if calls:
        lines.append("last tool calls: " + "; ".join(calls))
    text = _last_text(messages)
    if text:
        lines.append(f"the model's last words: {text}")
    need = NEEDS_GRANT.get(reason)
    ceiling = getattr(budgets.ceilings, need) if need else None
    if need is not None and ceiling is not None:
        limit = limit_of(spec, need) or 0.0
        room = max(0.0, float(ceiling) - limit)
        example = _example(need, room)
        grant = (
            f"continue with more: agentrun resume {run_id} --add {need}={example} "
            f"(ceiling {_show(need, float(ceiling))}, at most {_show(need, room)} more)"
            if room > 0
            else f"{need} is at its ceiling ({_show(need, float(ceiling))}): it cannot be raised"
        )
    elif need is not None:
        grant = f"{need} has no budgets.ceilings entry: it cannot be raised"
    else:
        grant = f"continue with: agentrun resume {run_id}"
    lines.append(f"{grant}; or close it: agentrun runs close {run_id} --reason TEXT")
    return "\n".join(lines)


def _example(name: str, room: float) -> str:
    if name in _WHOLE:
        return str(max(1, int(room)))
    if name == "max_duration":
        return f"{room:g}s"
    return f"{room:g}"


def _last_calls(messages: list[dict[str, Any]], count: int = 3) -> list[str]:
    calls: list[str] = []
    for message in reversed(messages):
        if message.get("role") != "assistant":
            continue
        for call in reversed(message.get("tool_calls") or []):
            function = call.get("function") or {}
            arguments = str(function.get("arguments") or "")
            with contextlib.suppress(json.JSONDecodeError, TypeError):
                arguments = json.dumps(json.loads(arguments), sort_keys=True)
            calls.append(f"{function.get('name', '?')} {_cut(arguments, 80)}")
            if len(calls) == count:
                return calls[::-1]
    return calls[::-1]


def _last_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "assistant" and message.get("content"):
            return _cut(" ".join(str(message["content"]).split()), 200)
    return ""


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"
