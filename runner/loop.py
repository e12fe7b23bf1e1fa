"""The run loop: model call → policy → tools → results back, until one stop reason.

::

    messages = [instructions, goal]
    loop, all of it within max_duration (budgets.Deadline):
        budget.check_before_model_call(estimate)   # max_steps, max_tokens, max_cost_usd, time
        reply = model.complete(messages, tools)    # retries and fallbacks inside the model
        budget.charge_model_call(reply.usage)
        no tool calls → final_answer: output.schema (retry with the errors), then the
            spec's checks (success_checks: retry with the failures) → completed
        each tool call → tool_calls.ToolCaller: parse → decide → approve → execute → result

A resumed run (:mod:`runner.resume`) first finishes the calls its last reply left pending.
Every exception is sorted (the habit comes from smolagents and pydantic-ai): errors the
model caused go back to it as tool results; :class:`~runner.errors.RunStop` signals end the
run with their stop reason; anything else is an internal error: stop reason ``error``, the
traceback in the run store, one line on the screen. Every event passes through the
:class:`~runner.redact.Redactor` before any sink sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import traceback
from collections.abc import Callable
from contextvars import Token
from dataclasses import replace
from typing import Any

from . import telemetry
from .budgets import Budget, Deadline
from .compiler import CompiledAgent
from .errors import RunStop, SetupError
from .escalation import NEVER_ESCALATED, escalation_message
from .events import (
    Event,
    Heartbeat,
    MessageAdded,
    ModelCalled,
    RunFinished,
    RunNotice,
    RunResumed,
    RunStarted,
    StopReason,
)
from .final_answer import judge
from .models import Model, ModelReply, ToolCallRequest, Usage, cost_usd
from .policy import Approver, UnattendedApprover
from .redact import Redactor, secret_variables
from .resume import RunState, pending_calls
from .sandbox import session as sandbox_session
from .store import HEARTBEAT_S, new_run_id
from .success_checks import SuccessChecks
from .tool_calls import ToolCaller
from .tools import ToolRegistry

Sink = Callable[[Event], None]
#: Receives ``(run_id, seq, message)``: the unredacted form of a conversation message that
#: redaction changed, kept so a resumed run continues with the model's exact words
#: (:meth:`runner.store.RunStore.seal_message`).
Sealer = Callable[[str, int, dict[str, Any]], None]
#: The signals that cancel a run in ``agentrun run``: stop reason ``cancelled``, resumable.
CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Run:
    """One execution of a compiled agent.

    Args:
        agent: the compiled agent.
        model: the model to call.
        sinks: receive every (redacted) event as it happens (the store, the console).
        approver: answers "ask" decisions; default: the spec's ``unattended`` choice.
        run_id: a given id (scheduled runs derive theirs), else a new ULID.
        trigger: what started the run (``cli``, ``cron``, ...), recorded.
        first_tool_choice: OpenAI ``tool_choice`` for the first model call only (for
            example ``"required"`` or ``{"type": "function", "function": {"name": ...}}``);
            later calls use ``"auto"`` so the model can finish.
        resume: the state of a paused or interrupted run to continue (``run_id`` must be
            that run's id).
        traceparent: a W3C ``traceparent`` the run's trace continues (a webhook delivery's),
            used when the run's telemetry is on (:mod:`runner.telemetry`); ignored if invalid.
        sealer: receives the unredacted form of every message that redaction changed (the
            store keeps it encrypted until the run can no longer be resumed); None to keep
            nothing (a resume then continues with the redacted words).

    ``max_duration`` is enforced here, whatever started the run: a model call or tool call
    in flight when the run's time runs out is cancelled and the run stops with stop reason
    ``max_duration`` (time spent waiting for a person does not count).
    """

    def __init__(
        self,
        agent: CompiledAgent,
        model: Model,
        sinks: list[Sink] | None = None,
        approver: Approver | None = None,
        run_id: str | None = None,
        trigger: str = "cli",
        first_tool_choice: str | dict[str, Any] | None = None,
        resume: RunState | None = None,
        sealer: Sealer | None = None,
        traceparent: str | None = None,
    ) -> None:
        self.agent = agent
        self.traceparent = traceparent
        self.sealer = sealer
        self.resumed = resume
        self.model = model
        self.sinks = sinks or []
        self.approver = approver or UnattendedApprover(agent.spec.unattended)
        self.run_id = run_id or new_run_id()
        self.trigger = trigger
        self.first_tool_choice = first_tool_choice
        self.budget = Budget(
            agent.spec.budgets,
            usage=resume.usage if resume else None,
            already_elapsed=resume.active_s if resume else 0.0,
        )
        self.deadline = Deadline(self.budget)
        self.redactor = Redactor(secret_variables(agent.spec))
        self.messages: list[dict[str, Any]] = list(resume.messages) if resume else []
        self.step = resume.step if resume else 0
        self.cancel_reason = StopReason.CANCELLED
        self.output_retries = 0
        self.success_checks = SuccessChecks(
            agent.spec,
            self.run_id,
            self.emit,
            failed_attempts=resume.failed_check_attempts if resume else 0,
            remaining_time=self.budget.remaining_time,
        )
        self.final: str | None = None
        self.result: Any = None
        self._task: asyncio.Task[Any] | None = None
        self.sandbox = sandbox_session.RunSandbox(self.run_id, agent.spec.name)

    def cancel(self, reason: StopReason = StopReason.CANCELLED) -> None:
        """End the run from outside with ``reason`` (``cancelled`` or ``interrupted``).

        Safe to call from a signal handler on the run's event loop; a no-op before
        :meth:`execute` starts or after it ends. The run records its stop reason and returns.
        """
        self.cancel_reason = reason
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def emit(self, event: Event) -> None:
        """Send ``event``, redacted, to every sink; what the sandbox recorded goes first."""
        for recorded in self.sandbox.take():
            self._send(recorded)
        self._send(event)

    def _send(self, event: Event) -> None:
        clean = self.redactor.event(event)
        for sink in self.sinks:
            sink(clean)

    def add_message(self, message: dict[str, Any]) -> None:
        """Append to the conversation and record it (the state a resume continues from).

        The record is redacted; when that changed the message, its exact form goes to the
        sealer first, so a resume gives the model back its own words.
        """
        self.messages.append(message)
        seq = len(self.messages) - 1
        event = MessageAdded(self.run_id, seq, message)
        clean = self.redactor.event(event)
        if self.sealer is not None and clean.message is not message:
            self.sealer(self.run_id, seq, message)
        for sink in self.sinks:
            sink(clean)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self.emit(Heartbeat(self.run_id, self.budget.elapsed()))

    async def execute(self) -> RunFinished:
        """Run to a stop reason; the :class:`RunFinished` event (also sent to the sinks)."""
        spec = self.agent.spec
        started = time.monotonic()
        if self.resumed is None:
            self.emit(
                RunStarted(
                    run_id=self.run_id,
                    agent=spec.name,
                    model=spec.model.id,
                    spec_path=str(spec.path),
                    spec_sha256=spec.source_sha256,
                    inputs=self.agent.inputs,
                    goal=self.agent.goal,
                    trigger=self.trigger,
                )
            )
            if self.agent.instructions:
                self.add_message({"role": "system", "content": self.agent.instructions})
            self.add_message({"role": "user", "content": self.agent.goal})
        else:
            self.emit(RunResumed(self.run_id))
        self._task = asyncio.current_task()
        heartbeat = asyncio.create_task(self._heartbeat())
        servers = contextlib.AsyncExitStack()
        stop, message, trace = StopReason.ERROR, "", None
        # The run's sandbox: current in this task, so the tools, checks, guards and MCP
        # servers it starts run in it (a task started from here inherits the context).
        sandbox_token = sandbox_session.enter(self.sandbox)
        trace_token = None
        try:
            trace_token = self._start_telemetry()
            self.sandbox.check(spec)  # sandbox: required where it cannot be: nothing runs
            # Import litellm, start a local model: setup errors come before anything else.
            if self.model.prepare_is_quick:
                self.model.prepare()
            else:
                await asyncio.to_thread(self.model.prepare)
            if spec.tools.mcp:  # their allowed tools join the registry for this run
                from .tools.mcp import open_mcp_tools

                tools, warnings = await open_mcp_tools(spec, servers)
                for warning in warnings:
                    self.emit(RunNotice(self.run_id, spec.name, warning))
                self.agent = replace(self.agent, tools=ToolRegistry([*self.agent.tools, *tools]))
            # max_duration also ends a model call or tool call that hangs past it.
            stop = await self.deadline.run(self._loop())
        except SetupError as error:
            stop, message = StopReason.ERROR, str(error)
        except RunStop as signal:
            stop, message = signal.stop_reason, str(signal)
        except asyncio.CancelledError:
            stop = self.cancel_reason
            what = "interrupted" if stop is StopReason.INTERRUPTED else "cancelled"
            message = f"the run was {what} (continue it with: agentrun resume {self.run_id})"
        except Exception as error:  # an internal error: recorded, never shown as a traceback
            stop, message = StopReason.ERROR, f"internal error: {type(error).__name__}: {error}"
            trace = traceback.format_exc()
        finally:
            self._task = None
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await servers.aclose()  # MCP servers stop on every exit path
            await self.model.aclose()  # its HTTP connections, in the loop that opened them
            await asyncio.to_thread(self.sandbox.close)  # the egress proxies
            self.sandbox.flush(self.emit)
            sandbox_session.leave(sandbox_token)
            if trace_token is not None:
                telemetry.leave(trace_token)
        self.emit(Heartbeat(self.run_id, self.budget.elapsed()))
        usage = self.budget.usage
        escalated_from = None
        if stop in spec.escalate_on and stop not in NEVER_ESCALATED:  # a person decides
            escalated_from, stop = stop, StopReason.ESCALATED
            used = replace(usage, elapsed_s=self.budget.elapsed())
            message = escalation_message(
                self.run_id, escalated_from, message, self.agent.spec, used, self.messages
            )
        finished = RunFinished(
            run_id=self.run_id,
            stop_reason=stop,
            final=self.final,
            steps=usage.steps,
            tool_calls=usage.tool_calls,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=usage.cost_usd if usage.cost_known else None,
            duration_s=time.monotonic() - started,
            message=message,
            traceback=trace,
            result=self.result,
            escalated_from=escalated_from,
        )
        self.emit(finished)
        return self.redactor.event(finished)

    def _start_telemetry(self) -> Token[telemetry.TraceState | None] | None:
        """Open the run's ``invoke_agent`` span when its telemetry is on; its context token.

        Raises:
            SetupError: the spec asks for telemetry and the ``[otel]`` extra is missing.
        """
        spec = self.agent.spec
        run = {
            "run_id": self.run_id,
            "agent": spec.name,
            "model": spec.model.id,
            "trigger": self.trigger,
            "resumed": self.resumed is not None,
        }
        tracer, warning = telemetry.start(spec.telemetry, run, self.traceparent)
        if warning:
            self.emit(RunNotice(self.run_id, spec.name, warning))
        if tracer is None:
            return None
        self.sinks = [*self.sinks, tracer.sink]
        return telemetry.enter(tracer.state)

    async def _loop(self) -> StopReason:
        # Built here, once the MCP servers' tools have joined the registry.
        self.tool_caller = ToolCaller(
            self.run_id,
            self.agent,
            self.budget,
            self.approver,
            self.redactor,
            self.emit,
            self.deadline.waiting_for_a_person,
            self.resumed,
        )
        tools = self.agent.tools.openai_schemas()
        if self.resumed is not None:
            pending, reason = pending_calls(self.resumed)
            if pending:
                done = await self._run_tool_calls(pending, reason)
                if done is not None:
                    return done
        while True:
            self._check_budget_before_model_call(tools)
            self.step += 1
            reply = await self._call_model(tools)
            self.add_message(reply.as_message())
            if not reply.tool_calls:
                done = await self._final_answer(reply.content or "")
                if done is not None:
                    return done
                continue
            done = await self._run_tool_calls(
                reply.tool_calls, reply.content or "", cut_off=reply.finish_reason == "length"
            )
            if done is not None:
                return done

    async def _run_tool_calls(
        self, calls: list[ToolCallRequest], reason: str, cut_off: bool = False
    ) -> StopReason | None:
        """Execute one reply's tool calls in order; a stop reason when the run should end.

        ``cut_off``: the reply ended at its ``max_tokens`` (finish reason ``length``).
        """
        for call in calls:
            result = await self.tool_caller.call(call, reason, self.step, cut_off=cut_off)
            self.add_message({"role": "tool", "tool_call_id": call.id, "content": result})
        proposals = self.tool_caller.proposals()
        if proposals is not None:
            self.final = proposals
            return StopReason.PROPOSED
        notes = self.budget.warnings()
        if notes:
            self.add_message({"role": "user", "content": "Budget note: " + "; ".join(notes) + "."})
        return None

    def _check_budget_before_model_call(self, tools: list[dict[str, Any]]) -> None:
        """Estimate the next call (prompt tokens + its maximum output) and check the budget."""
        limits = self.agent.spec.budgets
        tokens, cost = 0, 0.0
        if limits.max_tokens is not None or limits.max_cost_usd is not None:
            prompt = self.model.count_prompt_tokens(self.messages, tools)
            output = self.model.max_output_tokens
            tokens = prompt + output
            # The dearest of the model and its fallbacks: whichever answers, the cap holds.
            pricing = self.model.estimate_pricing or self.model.pricing
            cost = cost_usd(pricing, Usage(prompt, output)) or 0.0
        self.budget.check_before_model_call(tokens, cost)

    async def _final_answer(self, content: str) -> StopReason | None:
        """Accept the final answer, or ask for a corrected one (``output.schema``, then checks).

        Raises:
            ChecksFailed: the answer failed the spec's ``checks`` with no retry left (the
                failure is in the conversation first; :mod:`runner.success_checks`).
        """
        self.final = content
        self.result, correction = judge(content, self.agent.spec.output, self.output_retries)
        if correction is not None:
            self.output_retries += 1
            self.add_message(correction)
            return None
        verdict = await self.success_checks.judge(
            content, self.step, self.agent.spec.max_check_retries
        )
        if verdict is None:
            return StopReason.COMPLETED
        self.add_message(verdict.message)
        if verdict.stop is not None:
            raise verdict.stop
        return None

    async def _call_model(self, tools: list[dict[str, Any]]) -> ModelReply:
        started = time.monotonic()
        choice = self.first_tool_choice if self.step == 1 and tools else None
        reply = await self.model.complete(self.messages, tools, choice)
        self.budget.charge_model_call(
            reply.usage.input_tokens, reply.usage.output_tokens, reply.cost_usd
        )
        self.emit(
            ModelCalled(
                run_id=self.run_id,
                step=self.step,
                model=reply.model or self.model.name,
                input_tokens=reply.usage.input_tokens,
                output_tokens=reply.usage.output_tokens,
                cost_usd=reply.cost_usd,
                duration_s=time.monotonic() - started,
                content=reply.content,
                tool_calls=[
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in reply.tool_calls
                ],
                error="; ".join(reply.failed_attempts) or None,
            )
        )
        return reply


async def run_agent(
    agent: CompiledAgent,
    model: Model | None = None,
    store: Any = None,
    sinks: list[Sink] | None = None,
    approver: Approver | None = None,
    trigger: str = "cli",
    first_tool_choice: str | dict[str, Any] | None = None,
    run_id: str | None = None,
    resume: RunState | None = None,
    cancel_on: tuple[signal.Signals, ...] = (),
    traceparent: str | None = None,
) -> RunFinished:
    """Run ``agent`` to a stop reason, recording every event in ``store`` when given.

    Args:
        agent: from :func:`runner.compiler.compile_agent`.
        model: default: the spec's model through litellm.
        store: a :class:`runner.store.RunStore`, or None to record nothing.
        sinks: more event receivers (the console printer).
        approver: answers "ask"; default: the spec's ``unattended`` choice.
        trigger: what started the run, recorded.
        first_tool_choice: ``tool_choice`` of the first model call (see :class:`Run`).
        run_id: the run's id (given for scheduled runs and resumes), else a new ULID.
        resume: continue a paused or interrupted run from this state
            (:func:`restore_state`).
        cancel_on: signals that cancel the run while it executes (``agentrun run`` passes
            :data:`CANCEL_SIGNALS`): it stops with stop reason ``cancelled``, recorded and
            resumable. Only from the main thread (the loop's signal handlers).
        traceparent: a W3C ``traceparent`` the run's trace continues (see :class:`Run`).

    A model that cannot be reached at all (a missing extra or key variable) ends the run
    with stop reason ``error`` and the reason as its message, recorded like any other.
    """
    if model is None:
        from .models import LiteLLMModel

        model = LiteLLMModel(agent.spec.model)
    all_sinks: list[Sink] = []
    if store is not None:
        all_sinks.append(store.record)
    all_sinks.extend(sinks or [])
    run = Run(
        agent,
        model,
        all_sinks,
        approver,
        run_id=run_id,
        trigger=trigger,
        first_tool_choice=first_tool_choice,
        resume=resume,
        sealer=store.seal_message if store is not None else None,
        traceparent=traceparent,
    )
    loop = asyncio.get_running_loop()
    for signum in cancel_on:
        loop.add_signal_handler(signum, run.cancel, StopReason.CANCELLED)
    try:
        return await run.execute()
    finally:
        for signum in cancel_on:
            loop.remove_signal_handler(signum)
