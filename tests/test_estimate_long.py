"""Long messages are estimated from samples, never below their real token count (issue 19).

The budgets refuse a call whose estimated prompt would cross ``max_tokens`` or
``max_cost_usd`` (runner.budgets), so the estimate of a long tool result or argument may be
high but must not be low. Each kind of text is tokenized whole here, to compare.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest

from runner.models import LiteLLMModel, import_litellm
from runner.models.litellm_adapter import LONG_TEXT_CHARS, message_tokens, text_tokens
from runner.spec import ModelSpec

#: Characters of each sample text: well past LONG_TEXT_CHARS, short enough to tokenize whole.
SIZE = 256 * 1024
#: Two models whose tokenizers litellm picks differently: cl100k_base for a model it does not
#: know (and for other providers, without Hugging Face downloads), o200k_base for gpt-4o.
MODELS = ["openai/fake", "gpt-4o"]


def _texts() -> dict[str, str]:
    rng = random.Random(19)
    words = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "be"]
    words += ["on", "not", "this", "are", "or", "from", "at", "which", "budget", "approval"]
    prose = " ".join(rng.choice(words) for _ in range(SIZE // 3))[:SIZE]
    rows = [
        {"id": i, "name": f"item-{i}", "price": round(rng.random() * 100, 2), "ok": i % 2 == 0}
        for i in range(SIZE // 30)
    ]
    code = Path(__file__).with_name("test_store.py").read_text()
    cjk = "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(SIZE // 3))
    b64 = base64.b64encode(rng.randbytes(SIZE)).decode()[:SIZE]
    return {
        "ascii prose": prose,
        "json": json.dumps(rows)[:SIZE],
        "code": (code * (SIZE // len(code) + 1))[:SIZE],
        "cjk": cjk,
        "base64": b64,
        "prose then base64": prose[: SIZE // 2] + b64[: SIZE // 2],
        "accented": "Größenänderung déjà vu, ñandú, смета, ἀρχή. " * (SIZE // 44),
    }


TEXTS = _texts()


class Counting:
    """litellm.token_counter, recording the length of every text it was given."""

    def __init__(self, litellm: Any) -> None:
        self.counter = litellm.token_counter
        self.lengths: list[int] = []

    def __call__(self, **kwargs: Any) -> int:
        texts = [kwargs["text"]] if "text" in kwargs else []
        for message in kwargs.get("messages") or []:
            texts.append(json.dumps(message))
        self.lengths.extend(len(text) for text in texts)
        return int(self.counter(**kwargs))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_a_long_text_is_never_under_counted(
    model: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    litellm = import_litellm()
    text = TEXTS[kind]
    real = int(litellm.token_counter(model=model, text=text))
    counting = Counting(litellm)
    monkeypatch.setattr(litellm, "token_counter", counting)
    estimate = text_tokens(litellm, model, text)
    assert real <= estimate <= len(text.encode())
    assert estimate <= 2 * real  # still useful to a budget
    # Only samples were tokenized, never the text whole: 8 KiB in all.
    assert counting.lengths and max(counting.lengths) < LONG_TEXT_CHARS
    assert sum(counting.lengths) <= 8 * 1024


@pytest.mark.parametrize("kind", ["json", "cjk", "base64"])
def test_a_long_tool_result_in_the_prompt_estimate(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """count_prompt_tokens with a long tool result and a long write_file argument."""
    litellm = import_litellm()
    text = TEXTS[kind]
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Save the export."},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "write_file", "arguments": json.dumps({"text": text})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": text},
    ]
    real = sum(int(litellm.token_counter(model="openai/fake", messages=[m])) for m in messages)
    counting = Counting(litellm)
    monkeypatch.setattr(litellm, "token_counter", counting)
    estimate = LiteLLMModel(ModelSpec(id="openai/fake")).count_prompt_tokens(messages, [])
    assert real <= estimate <= 2 * real
    assert max(counting.lengths) < LONG_TEXT_CHARS


def test_a_short_message_is_tokenized_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    litellm = import_litellm()
    message = {"role": "tool", "tool_call_id": "c1", "content": "x" * (LONG_TEXT_CHARS - 1)}
    whole = int(litellm.token_counter(model="openai/fake", messages=[message]))
    assert message_tokens(litellm, "openai/fake", message) == whole
