"""The budget's token estimate of a long message: tokenized whole, or estimated from samples.

Before each model call the budget estimates the prompt (``count_prompt_tokens``); a new
tool result of a megabyte used to be tokenized whole with litellm's tokenizer. Texts over
``LONG_TEXT_CHARS`` are now estimated from samples (``text_tokens`` in
runner/models/litellm_adapter.py). For each kind of text and each tokenizer litellm picks
(cl100k_base for a model it does not know, and for other providers without Hugging Face
downloads; o200k_base for gpt-4o) this prints the milliseconds per MB of both ways (median of
``--runs``) and the estimate over the real count (which must be at least 1).

Run: python bench/estimate.py [--runs 5] [--mb 1]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any

from runner.models import import_litellm
from runner.models.litellm_adapter import text_tokens

MODELS = ["openai/fake", "gpt-4o"]


def texts(size: int) -> dict[str, str]:
    """Sample texts of ``size`` characters: prose, JSON, code, CJK, base64, a mix."""
    rng = random.Random(19)
    words = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with"]
    prose = " ".join(rng.choice(words) for _ in range(size // 3))[:size]
    rows = [
        {"id": i, "name": f"item-{i}", "price": round(rng.random() * 100, 2)}
        for i in range(size // 25)
    ]
    code = Path(__file__).parents[1].joinpath("runner/store/sqlite.py").read_text()
    b64 = base64.b64encode(rng.randbytes(size)).decode()[:size]
    return {
        "prose": prose,
        "json": json.dumps(rows)[:size],
        "code": (code * (size // len(code) + 1))[:size],
        "cjk": "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(size // 3)),
        "base64": b64,
        "prose+b64": prose[: size // 2] + b64[: size // 2],
    }


def timed(runs: int, call: Any) -> tuple[float, int]:
    """Median seconds of ``runs`` calls, and the call's result."""
    seconds = []
    result = 0
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mb", type=float, default=1.0)
    options = parser.parse_args()
    litellm = import_litellm()
    size = int(options.mb * 1024 * 1024)
    print(
        f"{'model':12} {'text':10} {'MB':>5} {'whole ms/MB':>12} {'sampled ms/MB':>14} {'est/real':>9}"
    )
    for model in MODELS:
        litellm.token_counter(model=model, text="warm the tokenizer")
        for kind, text in texts(size).items():
            megabytes = len(text.encode()) / 1024 / 1024
            whole_s, real = timed(
                options.runs, partial(litellm.token_counter, model=model, text=text)
            )
            sampled_s, estimate = timed(options.runs, partial(text_tokens, litellm, model, text))
            print(
                f"{model:12} {kind:10} {megabytes:5.2f} {whole_s * 1000 / megabytes:12.1f} "
                f"{sampled_s * 1000 / megabytes:14.2f} {estimate / real:9.3f}"
            )


if __name__ == "__main__":
    main()
