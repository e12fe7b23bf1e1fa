"""Budgets: hard limits checked *before* each model call and tool call, charged after.

One :class:`Budget` per run. ``check_before_model_call(estimate)`` refuses a call that could
cross a limit; ``charge_model_call`` records what a call actually used. Each exhausted
limit raises :class:`~runner.errors.BudgetExhausted` naming it, and that name is the run's
stop reason. Time is measured on a monotonic clock in seconds, costs in USD, tokens as the
provider counts them. (The check-before / charge-after split follows pydantic-ai's
``UsageLimits``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .errors import BudgetExhausted
from .events import StopReason
from .spec import BudgetsSpec

#: Share of a budget after which the model is told how much is left.
WARN_FRACTION = 0.8

T = TypeVar("T")


@dataclass
class Usage:
    """What a run has used so far."""

    steps: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    elapsed_s: float = 0.0

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


class Budget:
    """The limits of one run and its usage.

    Args:
        limits: the spec's budgets.
        clock: monotonic seconds (injectable for tests).
        usage: usage carried over (a resumed run).
        already_elapsed: run time, in seconds, spent before a pause or crash.
    """

    def __init__(
        self,
        limits: BudgetsSpec,
        clock: Callable[[], float] = time.monotonic,
        usage: Usage | None = None,
        already_elapsed: float = 0.0,
    ) -> None:
        self.limits = limits
        self.usage = usage or Usage()
        self._clock = clock
        self._started = clock() - already_elapsed
        self._paused_at: float | None = None
        self._warned: set[str] = set()

    def elapsed(self) -> float:
        """Seconds of run time so far: waits for a person (see :meth:`pause`) excluded."""
        now = self._paused_at if self._paused_at is not None else self._clock()
        return now - self._started

    def pause(self) -> None:
        """Stop the run clock (while a person decides an approval)."""
        if self._paused_at is None:
            self._paused_at = self._clock()

    def resume(self) -> None:
        """Restart the run clock; the paused time does not count against ``max_duration``."""
        if self._paused_at is not None:
            self._started += self._clock() - self._paused_at
            self._paused_at = None

    def remaining_time(self) -> float | None:
        """Seconds left under ``max_duration``, or None when there is no such limit."""
        if self.limits.max_duration is None:
            return None
        return self.limits.max_duration - self.elapsed()

    def _check_duration(self) -> None:
        remaining = self.remaining_time()
        if remaining is not None and remaining <= 0:
            assert self.limits.max_duration is not None
            raise BudgetExhausted(StopReason.MAX_DURATION, self.elapsed(), self.limits.max_duration)

    def check_before_model_call(
        self, estimated_tokens: int = 0, estimated_cost: float = 0.0
    ) -> None:
        """Refuse the next model call if it could cross a limit.

        Args:
            estimated_tokens: prompt tokens plus the call's maximum output tokens.
            estimated_cost: USD the call could cost at most.

        Raises:
            BudgetExhausted: naming ``max_steps``, ``max_tokens``, ``max_cost_usd`` or
                ``max_duration``.
        """
        limits = self.limits
        if self.usage.steps + 1 > limits.max_steps:
            raise BudgetExhausted(StopReason.MAX_STEPS, self.usage.steps + 1, limits.max_steps)
        self._check_duration()
        if (
            limits.max_tokens is not None
            and self.usage.tokens + estimated_tokens > limits.max_tokens
        ):
            raise BudgetExhausted(
                StopReason.MAX_TOKENS, self.usage.tokens + estimated_tokens, limits.max_tokens
            )
        if (
            limits.max_cost_usd is not None
            and self.usage.cost_usd + estimated_cost > limits.max_cost_usd
        ):
            raise BudgetExhausted(
                StopReason.MAX_COST_USD, self.usage.cost_usd + estimated_cost, limits.max_cost_usd
            )

    def charge_model_call(
        self, input_tokens: int, output_tokens: int, cost_usd: float | None
    ) -> None:
        """Record one model call's actual usage (one step)."""
        self.usage.steps += 1
        self.charge_tokens(input_tokens, output_tokens, cost_usd)
        self.usage.elapsed_s = self.elapsed()

    def check_tokens_and_cost(self, estimated_tokens: int, estimated_cost: float) -> None:
        """Refuse a model call that is not a step (a guard's) if it could cross a limit.

        Args:
            estimated_tokens: its prompt tokens plus its maximum output tokens.
            estimated_cost: USD it could cost at most.

        Raises:
            BudgetExhausted: naming ``max_tokens`` or ``max_cost_usd``.
        """
        limits = self.limits
        tokens = self.usage.tokens + estimated_tokens
        if limits.max_tokens is not None and tokens > limits.max_tokens:
            raise BudgetExhausted(StopReason.MAX_TOKENS, tokens, limits.max_tokens)
        cost = self.usage.cost_usd + estimated_cost
        if limits.max_cost_usd is not None and cost > limits.max_cost_usd:
            raise BudgetExhausted(StopReason.MAX_COST_USD, cost, limits.max_cost_usd)

    def charge_tokens(self, input_tokens: int, output_tokens: int, cost_usd: float | None) -> None:
        """Record a model call that is not a step (a guard's): tokens and USD, no step."""
        self.usage.input_tokens += input_tokens
        self.usage.output_tokens += output_tokens
        if cost_usd is None:
            self.usage.cost_known = False
        else:
            self.usage.cost_usd += cost_usd

    def check_before_tool_call(self) -> None:
        """Refuse the next tool call if it would cross ``max_tool_calls`` or ``max_duration``.

        Raises:
            BudgetExhausted: naming the limit.
        """
        limits = self.limits
        if limits.max_tool_calls is not None and self.usage.tool_calls + 1 > limits.max_tool_calls:
            raise BudgetExhausted(
                StopReason.MAX_TOOL_CALLS, self.usage.tool_calls + 1, limits.max_tool_calls
            )
        self._check_duration()

    def charge_tool_call(self) -> None:
        """Record one executed tool call."""
        self.usage.tool_calls += 1
        self.usage.elapsed_s = self.elapsed()

    def warnings(self) -> list[str]:
        """Notes for the model about budgets past :data:`WARN_FRACTION`, each said once."""
        limits, usage = self.limits, self.usage
        pairs: list[tuple[str, float, float | None, str]] = [
            ("max_steps", usage.steps, limits.max_steps, "model calls"),
            ("max_tool_calls", usage.tool_calls, limits.max_tool_calls, "tool calls"),
            ("max_tokens", usage.tokens, limits.max_tokens, "tokens"),
            ("max_cost_usd", usage.cost_usd, limits.max_cost_usd, "USD"),
            ("max_duration", self.elapsed(), limits.max_duration, "seconds"),
        ]
        notes = []
        for name, used, cap, unit in pairs:
            if cap is None or name in self._warned or used < WARN_FRACTION * cap:
                continue
            self._warned.add(name)
            left = max(cap - used, 0)
            notes.append(f"{left:g} {unit} left of {cap:g} ({name})")
        return notes


class Deadline:
    """``max_duration`` as a deadline on whatever is in flight, not only a check before calls.

    :class:`Budget` refuses a call that starts after the limit; a model call or tool call
    that hangs past it is only stopped by this: :meth:`run` cancels the work when the run's
    remaining time is up. While a person decides (:meth:`waiting_for_a_person`) the budget's
    clock stops and the deadline is lifted, then set again from the time left.

    Args:
        budget: the run's budget (its ``max_duration`` and clock).
    """

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._timeout: asyncio.Timeout | None = None

    async def run(self, work: Awaitable[T]) -> T:
        """Await ``work`` within the run's remaining time.

        Raises:
            BudgetExhausted: ``max_duration``, when the time ran out while ``work`` ran.
        """
        try:
            async with asyncio.timeout(None) as timeout:
                self._timeout = timeout
                self._arm()
                return await work
        except TimeoutError:
            if not timeout.expired():
                raise  # a timeout of the work's own
            limit = self.budget.limits.max_duration or 0.0
            raise BudgetExhausted(StopReason.MAX_DURATION, self.budget.elapsed(), limit) from None
        finally:
            self._timeout = None

    def _arm(self) -> None:
        remaining = self.budget.remaining_time()
        if self._timeout is not None and remaining is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time() + max(remaining, 0.0))

    @contextlib.contextmanager
    def waiting_for_a_person(self) -> Iterator[None]:
        """Stop the run's clock and lift the deadline while a person decides."""
        self.budget.pause()
        if self._timeout is not None:
            self._timeout.reschedule(None)
        try:
            yield
        finally:
            self.budget.resume()
            self._arm()
