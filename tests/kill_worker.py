"""A run in its own process, for the kill test: `python -m tests.kill_worker run SPEC RUN_ID`
or `python -m tests.kill_worker resume RUN_ID`. The model is a FunctionModel that asks for
`append_line` until N calls have results, then answers; it needs no network and no litellm.
A resume claims the run first, as `agentrun resume` does (exit 9 when another holds it);
KILL_TEST_CALLS sets N (default 6).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from runner.compiler import compile_agent
from runner.events import StopReason
from runner.loop import run_agent
from runner.resume import restore_state
from runner.spec import load_spec
from runner.store import ResumeClaimed, RunStore
from runner.testing import FunctionModel, Scripted, call, text

CALLS = int(os.environ.get("KILL_TEST_CALLS", "6"))
EXIT = {StopReason.COMPLETED: 0, StopReason.WAITING_APPROVAL: 5}
#: Exit code of a resume that lost the claim to another process.
CLAIMED = 9


def respond(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Scripted:
    done = sum(1 for m in messages if m["role"] == "tool")
    if done < CALLS:
        return call("append_line", {"line": f"line-{done}"})
    return text("all lines appended")


def main() -> None:
    command = sys.argv[1]
    store = RunStore.default()
    if command == "run":
        spec = load_spec(sys.argv[2])
        agent = compile_agent(spec)
        finished = asyncio.run(
            run_agent(agent, FunctionModel(respond), store=store, run_id=sys.argv[3])
        )
    else:
        run_id = sys.argv[2]
        store.sweep_interrupted()
        path = store.db.execute("SELECT spec_path FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        agent = compile_agent(load_spec(path))
        try:
            store.claim_for_resume(run_id)  # as `agentrun resume` does
        except ResumeClaimed as error:
            print(error)
            sys.exit(CLAIMED)
        finished = asyncio.run(
            run_agent(
                agent,
                FunctionModel(respond),
                store=store,
                run_id=run_id,
                resume=restore_state(store, run_id),
            )
        )
    print(finished.stop_reason)
    sys.exit(EXIT.get(finished.stop_reason, 1))


if __name__ == "__main__":
    main()
