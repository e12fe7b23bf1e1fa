"""Prompt tokens for the budget's estimate before a call, with or without litellm.

The budget (:mod:`runner.budgets`) refuses a call whose estimated prompt plus output would
cross ``max_tokens`` or ``max_cost_usd``; the adapter
(:meth:`runner.models.litellm_adapter.LiteLLMModel.count_prompt_tokens`) estimates the
prompt with a *token counter*: anything with litellm's ``token_counter(model=...,
messages=... | text=...)`` call (:class:`TokenCounter`). Two are used:

- the ``litellm`` module itself, for a model that goes through litellm;
- :class:`TiktokenCounter`, for a model on the direct path
  (:mod:`runner.models.openai_direct`), which never imports litellm (seconds).

:class:`TiktokenCounter` counts what ``litellm.token_counter`` 1.106.2 counts for every
``openai/*`` name, so a budget holds the same on both paths (tests/test_tokens_direct.py
compares them): the ``cl100k_base`` encoding (litellm looks a model up without its
``openai/`` prefix, finds nothing and falls back to ``gpt-3.5-turbo``'s encoding, even for
``openai/gpt-4o-mini`` whose own encoding is ``o200k_base``; on English text and code
cl100k_base gives as many tokens as o200k_base or more, so the estimate errs high), 3 tokens
a message, 1 more for a ``name``, 3 for the reply's priming, and text encoded
:data:`CHUNK_CHARS` characters at a time, special tokens as plain text. ``local/*`` models
(SmolLM2, served as ``openai/NAME``) are counted the same way: an approximation of their own
49k-token vocabulary, as litellm's count was.

tiktoken downloads an encoding's file from the network on first use unless it is cached.
litellm ships ``cl100k_base`` (and ``o200k_base``, ``p50k_base``) in its package, under
:data:`BUNDLED_ENCODINGS`, and points ``TIKTOKEN_CACHE_DIR`` at that folder when imported;
:func:`load_encoding` finds the folder without importing litellm and reads it the same way,
so no network is needed.

A long text (a megabyte of tool result) is estimated from samples rather than tokenized
whole (:func:`text_tokens`), whichever the counter.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import threading
from pathlib import Path
from typing import Any, Protocol

#: The tiktoken encoding litellm's ``token_counter`` uses for ``openai/*`` names.
ENCODING = "cl100k_base"
#: Tokens every message costs around its content (``<|start|>role ... <|end|>``), and what
#: a ``name`` field adds, as litellm counts them for models other than gpt-3.5-turbo-0301.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
#: Tokens priming the reply (``<|start|>assistant<|message|>``), counted once per call.
REPLY_PRIMING_TOKENS = 3
#: Characters encoded at a time: litellm's default ``TIKTOKEN_ENCODE_CHUNK_SIZE_CHARS``,
#: read from that variable the same way (1 to 4096). Chunks keep the BPE linear on a run of
#: one repeated character; a token split at a chunk's edge counts twice, as in litellm.
CHUNK_CHARS = 1024
CHUNK_VARIABLE = "TIKTOKEN_ENCODE_CHUNK_SIZE_CHARS"
#: Where litellm's package keeps tiktoken's cached encoding files (named by the SHA-1 of
#: their download address, as tiktoken's cache names them).
BUNDLED_ENCODINGS = Path("litellm_core_utils") / "tokenizers"


class TokenCounter(Protocol):
    """What counts tokens for the adapter: litellm's ``token_counter`` call, as a method.

    The ``litellm`` module is one (``litellm.token_counter``); :class:`TiktokenCounter` is
    the other.
    """

    def token_counter(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]] | None = None,
        text: str | None = None,
    ) -> int:
        """Tokens of ``messages`` (a prompt of them, with the reply's priming) or of ``text``."""
        ...


def bundled_encodings() -> Path | None:
    """The folder of tiktoken encodings litellm ships, or None when litellm is not installed.

    Found with :func:`importlib.util.find_spec`, which does not import litellm.
    """
    spec = importlib.util.find_spec("litellm")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / BUNDLED_ENCODINGS
        if folder.is_dir():
            return folder
    return None


_LOADING = threading.Lock()


@functools.cache
def load_encoding(name: str = ENCODING) -> Any:
    """The tiktoken encoding ``name``, read from litellm's bundled copy (no network).

    tiktoken reads its cache folder from ``TIKTOKEN_CACHE_DIR``: the variable is set to
    :func:`bundled_encodings` while the encoding loads, and put back after (a tool's
    process does not inherit it). Without litellm installed, tiktoken's own cache is used,
    which downloads the file once.
    """
    import tiktoken

    folder = bundled_encodings()
    with _LOADING:
        if folder is None:
            return tiktoken.get_encoding(name)
        previous = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        try:
            return tiktoken.get_encoding(name)
        finally:
            if previous is None:
                os.environ.pop("TIKTOKEN_CACHE_DIR", None)
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = previous


def chunk_chars() -> int:
    """Characters encoded at a time: :data:`CHUNK_CHARS`, or :data:`CHUNK_VARIABLE`'s value."""
    try:
        configured = int(os.environ.get(CHUNK_VARIABLE, CHUNK_CHARS))
    except ValueError:
        return CHUNK_CHARS
    return configured if 1 <= configured <= 4096 else CHUNK_CHARS


class TiktokenCounter:
    """litellm's message accounting for OpenAI chat models, with tiktoken and without litellm.

    See the module's docstring for what is counted and why it equals litellm's count. The
    encoding loads on the first count: 0.8-0.9 s for cl100k_base from litellm's bundled
    file, plus 0.1-0.16 s to import tiktoken (timed with ``time.perf_counter`` on the
    2-core reference machine under a load average of 13), against seconds for litellm.

    Args:
        encoding: the tiktoken encoding's name.
    """

    def __init__(self, encoding: str = ENCODING) -> None:
        self.encoding = encoding
        self._chunk = chunk_chars()

    def text(self, text: str) -> int:
        """Tokens of ``text``, encoded :data:`CHUNK_CHARS` characters at a time."""
        if not text:
            return 0
        encode = load_encoding(self.encoding).encode_ordinary
        chunk = self._chunk
        return sum(len(encode(text[i : i + chunk])) for i in range(0, len(text), chunk))

    def message(self, message: dict[str, Any]) -> int:
        """Tokens of one message, without the reply's priming.

        :data:`TOKENS_PER_MESSAGE`, plus every string field (``role``, ``content``,
        ``tool_call_id``; ``name`` with :data:`TOKENS_PER_NAME` more), plus each tool call's
        ``arguments`` (not its name or id, as litellm counts). A ``content`` list counts its
        text parts; any other part (an image) counts as its JSON text, an approximation that
        errs high where litellm sizes an image.
        """
        tokens = TOKENS_PER_MESSAGE
        for key, value in message.items():
            if value is None:
                continue
            if key == "tool_calls" and isinstance(value, list):
                for tool_call in value:
                    function = tool_call.get("function") if isinstance(tool_call, dict) else None
                    if isinstance(function, dict):
                        tokens += self.text(str(function.get("arguments", "")))
            elif key == "function_call" and isinstance(value, dict):
                tokens += self.text(str(value.get("arguments", "")))
            elif isinstance(value, str):
                tokens += self.text(value) + (TOKENS_PER_NAME if key == "name" else 0)
            elif key == "content" and isinstance(value, list):
                for part in value:
                    if isinstance(part, str):
                        tokens += self.text(part)
                    elif isinstance(part, dict) and part.get("type") == "text":
                        tokens += self.text(str(part.get("text", "")))
                    else:
                        tokens += self.text(json.dumps(part))
        return tokens

    def token_counter(
        self,
        *,
        model: str = "",
        messages: list[dict[str, Any]] | None = None,
        text: str | None = None,
    ) -> int:
        """Tokens of ``messages`` as one prompt (with the reply's priming), or of ``text``.

        ``model`` is accepted for litellm's signature and not read: every direct model is
        counted with :attr:`encoding`.

        Raises:
            ValueError: neither or both of ``messages`` and ``text`` given.
        """
        if (messages is None) == (text is None):
            raise ValueError("give messages or text, not both")
        if text is not None:
            return self.text(text)
        assert messages is not None
        return sum(self.message(message) for message in messages) + REPLY_PRIMING_TOKENS


@functools.cache
def tiktoken_counter() -> TiktokenCounter:
    """The process's one :class:`TiktokenCounter` (its encoding is loaded once)."""
    return TiktokenCounter()


#: Characters of text above which it is estimated from samples instead of tokenized whole
#: (:func:`text_tokens`). 32 KiB of prose is about 8k tokens and 5-25 ms of tokenizing.
LONG_TEXT_CHARS = 32 * 1024
#: Samples of a long text that are tokenized, spread evenly from its first character to its
#: last, and the characters in each: 8 KiB tokenized whatever the text's length.
SAMPLES = 16
SAMPLE_CHARS = 512
#: What the densest sample's tokens per byte are raised by before scaling to the whole text.
SAMPLE_MARGIN = 0.10


def message_tokens(counter: TokenCounter, model: str, message: dict[str, Any]) -> int:
    """Prompt tokens of one message, for the budget's estimate before a call.

    Counted by ``counter`` (``litellm`` or a :class:`TiktokenCounter`) for ``model`` (a
    litellm model name) as a prompt of that one message. A message whose text (its
    ``content``, or a tool call's ``arguments``) is longer than :data:`LONG_TEXT_CHARS` is
    counted as the message without that text, tokenized, plus :func:`text_tokens` of the
    text; any other message is tokenized whole.
    """
    long: list[str] = []
    content = message.get("content")
    if isinstance(content, str) and len(content) > LONG_TEXT_CHARS:
        long.append(content)
        message = {**message, "content": ""}
    calls = message.get("tool_calls")
    if isinstance(calls, list) and any(_long_arguments(c) for c in calls):
        shortened = []
        for tool_call in calls:
            if _long_arguments(tool_call):
                long.append(tool_call["function"]["arguments"])
                tool_call = {**tool_call, "function": {**tool_call["function"], "arguments": ""}}
            shortened.append(tool_call)
        message = {**message, "tool_calls": shortened}
    count = int(counter.token_counter(model=model, messages=[message]))
    return count + sum(text_tokens(counter, model, text) for text in long)


def _long_arguments(tool_call: Any) -> bool:
    function = tool_call.get("function") if isinstance(tool_call, dict) else None
    arguments = function.get("arguments") if isinstance(function, dict) else None
    return isinstance(arguments, str) and len(arguments) > LONG_TEXT_CHARS


def text_tokens(counter: TokenCounter, model: str, text: str) -> int:
    """Tokens of ``text``: tokenized whole when short, estimated from samples when long.

    A text over :data:`LONG_TEXT_CHARS` characters is not tokenized whole (a megabyte took
    70-450 ms with litellm's tokenizers, the estimate 1.3-11 ms; ``python bench/estimate.py``):
    :data:`SAMPLES` windows of :data:`SAMPLE_CHARS` characters, evenly spaced from its start
    to its end, are, and the densest window's tokens per UTF-8 byte, raised by
    :data:`SAMPLE_MARGIN`, is scaled to the text's bytes. The estimate is never above the
    text's UTF-8 length: the tokenizers (byte-level BPE, SentencePiece with byte fallback)
    never give more than one token per byte.

    Over ASCII prose, JSON, code, CJK, random base64 and half prose half base64 the estimate
    is 1.1-1.7 times the whole text's count with cl100k_base and o200k_base
    (tests/test_estimate_long.py, bench/estimate.py). litellm itself samples only texts over
    4,000,000 characters, and takes their mean density, which can count low. This is an
    estimate, not a proof: a text uniform in its samples but denser between them (a block of
    base64 shorter than 1/15 of the text, in prose) is under-counted by at most that block's
    share, which the margin and the model's output allowance in the budget check usually
    cover.
    """
    if len(text) <= LONG_TEXT_CHARS:
        return int(counter.token_counter(model=model, text=text))
    size = len(text.encode())
    step = (len(text) - SAMPLE_CHARS) / (SAMPLES - 1)
    densest = 0.0
    for index in range(SAMPLES):
        start = round(index * step)
        sample = text[start : start + SAMPLE_CHARS]
        tokens = int(counter.token_counter(model=model, text=sample))
        densest = max(densest, tokens / len(sample.encode()))
    return min(size, math.ceil(densest * (1 + SAMPLE_MARGIN) * size))
