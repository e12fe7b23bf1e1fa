"""The embedded model's task suite: pass rate per model, and each task's result and time.

Runs the tasks of tests/test_local_model_tasks.py through the whole loop, at temperature 0,
each in a temporary folder with its own run store: on ``local/smollm2`` (the shipped model),
and on every other GGUF file given with ``--gguf`` (served by the same backend, so a ChatML
instruction model is measured on equal terms).

Run: python bench/local_model.py [--gguf PATH ...] [--only TASK ...] [--skip-smollm2]
Prints one line per task and model, then the pass rate per model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.models import LiteLLMModel  # noqa: E402
from runner.models.base import Model  # noqa: E402
from runner.models.local import LlamaBackend  # noqa: E402
from runner.models.server import OpenAIServer  # noqa: E402
from runner.spec import ModelSpec  # noqa: E402
from tests.test_local_model_tasks import TASKS, Task, passed, run_task  # noqa: E402


def measure(label: str, tasks: list[Task], model: Model | None) -> tuple[int, int]:
    """Run ``tasks`` on ``model`` (None: the spec's local/smollm2); print each; (passed, run)."""
    done = 0
    for task in tasks:
        with tempfile.TemporaryDirectory() as folder:
            os.environ["AGENTRUN_HOME"] = str(Path(folder) / "home")
            start = time.monotonic()
            outcome = run_task(task, Path(folder), model=model)
            ok = passed(outcome, task)
        done += ok
        answer = outcome.answer.replace("\n", " ")[:70]
        print(
            f"{label:24} {task.name:34} {'pass' if ok else 'FAIL'} "
            f"{time.monotonic() - start:6.1f} s  {outcome.finished.stop_reason.value:10} {answer!r}",
            flush=True,
        )
    return done, len(tasks)


def main() -> None:
    """Parse the arguments, run the suite on each model, print the pass rates."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, action="append", default=[], help="another model")
    parser.add_argument("--only", action="append", default=[], help="run only this task")
    parser.add_argument("--skip-smollm2", action="store_true", help="only the --gguf models")
    args = parser.parse_args()
    tasks = [t for t in TASKS if not args.only or t.name in args.only]
    rates: list[tuple[str, int, int]] = []
    if not args.skip_smollm2:
        rates.append(("local/smollm2", *measure("local/smollm2", tasks, None)))
    os.environ.setdefault("OPENAI_API_KEY", "local")
    for path in args.gguf:
        with OpenAIServer(LlamaBackend(path), model_name=path.stem) as server:
            spec = ModelSpec(
                id=f"openai/{path.stem}",
                api_base=server.api_base,
                params={"temperature": 0, "max_tokens": 96},
            )
            rates.append((path.name, *measure(path.stem[:24], tasks, LiteLLMModel(spec))))
    print()
    for label, done, total in rates:
        print(f"{label}: {done}/{total} tasks passed ({done / total:.0%})")


if __name__ == "__main__":
    main()
