"""Semantic checks of ``escalate_on`` and ``budgets.ceilings`` (called by ``semantic_checks``).

- A ceiling below the spec's own limit is an error: no grant could ever be made, and the
  spec says two contradicting things.
- A ceiling of a limit the spec leaves unset is a warning: there is nothing to raise.
- ``escalate_on`` listing a budget stop (``max_steps``, ...) or ``checks_failed`` whose limit
  has no ceiling is a warning: a person could not continue such a run with more, only close
  it. One whose limit the spec leaves unset is a warning too: it can never happen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..errors import Diagnostic
    from .types import AgentSpec
    from .yamlpos import Located

#: The limit a stop reason in ``escalate_on`` exhausted (what a grant would raise).
ESCALATED_LIMITS = {
    "max_steps": "max_steps",
    "max_tool_calls": "max_tool_calls",
    "max_tokens": "max_tokens",
    "max_cost_usd": "max_cost_usd",
    "max_duration": "max_duration",
    "checks_failed": "max_check_retries",
}


def _limit(spec: AgentSpec, name: str) -> float | None:
    if name == "max_check_retries":
        return float(spec.max_check_retries)
    value = getattr(spec.budgets, name)
    return None if value is None else float(value)


def escalation_checks(spec: AgentSpec, located: Located, file: str) -> list[Diagnostic]:
    """The problems of ``escalate_on`` and ``budgets.ceilings`` (see the module doc)."""
    out: list[Diagnostic] = []
    ceilings = spec.budgets.ceilings
    for name in ESCALATED_LIMITS.values():
        ceiling = getattr(ceilings, name)
        if ceiling is None:
            continue
        limit = _limit(spec, name)
        pos = located.value_pos(("budgets", "ceilings", name))
        where = "max_check_retries" if name == "max_check_retries" else f"budgets.{name}"
        if limit is None:
            out.append(
                located.diagnostic(
                    file,
                    pos,
                    f"budgets.ceilings.{name} is {ceiling!r} but {where} is not set: "
                    "there is no limit to raise",
                    f"set {where}, or remove the ceiling",
                    "warning",
                )
            )
        elif float(ceiling) < limit:
            out.append(
                located.diagnostic(
                    file,
                    pos,
                    f"budgets.ceilings.{name} ({ceiling!r}) is below the limit it caps "
                    f"({where} = {limit:g}): no grant could ever be made",
                    f"a ceiling is the most a person may raise {where} to: make it at least "
                    f"{limit:g}",
                )
            )
    for index, reason in enumerate(spec.escalate_on):
        limit_name = ESCALATED_LIMITS.get(reason)
        if limit_name is None:
            continue
        name = limit_name
        pos = located.value_pos(("escalate_on", index))
        if _limit(spec, name) is None:
            out.append(
                located.diagnostic(
                    file,
                    pos,
                    f"escalate_on lists {reason!r} but budgets.{name} is not set: "
                    "the run can never stop for it",
                    f"set budgets.{name}, or remove {reason!r} from escalate_on",
                    "warning",
                )
            )
        elif getattr(ceilings, name) is None:
            out.append(
                located.diagnostic(
                    file,
                    pos,
                    f"escalate_on lists {reason!r} but budgets.ceilings sets no {name}: "
                    "a person could not continue it with more, only close it",
                    f"add budgets.ceilings.{name}: the most a person may raise it to",
                    "warning",
                )
            )
    return out
