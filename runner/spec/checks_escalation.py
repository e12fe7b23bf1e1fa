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

from ..errors import StopReason

if TYPE_CHECKING:
    from ..errors import Diagnostic
    from .types import AgentSpec
    from .yamlpos import Located

#: The limit an escalation stopped by this reason needs raised before it can go on: without
#: a grant of it the continued run would stop again at once (:mod:`runner.escalation`).
NEEDS_GRANT: dict[str, str] = {
    StopReason.MAX_STEPS: "max_steps",
    StopReason.MAX_TOOL_CALLS: "max_tool_calls",
    StopReason.MAX_TOKENS: "max_tokens",
    StopReason.MAX_COST_USD: "max_cost_usd",
    StopReason.MAX_DURATION: "max_duration",
    StopReason.CHECKS_FAILED: "max_check_retries",
}


def limit_of(spec: AgentSpec, name: str) -> float | None:
    """The spec's own value of limit ``name`` (None: the spec sets no such limit)."""
    if name == "max_check_retries":
        return float(spec.max_check_retries)
    value = getattr(spec.budgets, name)
    return None if value is None else float(value)


def escalation_checks(spec: AgentSpec, located: Located, file: str) -> list[Diagnostic]:
    """The problems of ``escalate_on`` and ``budgets.ceilings`` (see the module doc)."""
    out: list[Diagnostic] = []
    ceilings = spec.budgets.ceilings
    for name in NEEDS_GRANT.values():
        ceiling = getattr(ceilings, name)
        if ceiling is None:
            continue
        limit = limit_of(spec, name)
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
        limit_name = NEEDS_GRANT.get(reason)
        if limit_name is None:
            continue
        name = limit_name
        pos = located.value_pos(("escalate_on", index))
        if limit_of(spec, name) is None:
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
