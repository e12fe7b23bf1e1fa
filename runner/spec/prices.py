"""Model prices and providers known without calling or importing a model.

What the budget check and the model checks of ``agentrun validate`` need.

A ``max_cost_usd`` cap can only be enforced when the price of the model (and of each
fallback) is known: from the spec's ``model.pricing``, else from litellm's bundled price
table, read here as the JSON file it is (litellm itself takes seconds to import and is
never imported here). The spec checks (:mod:`runner.spec.checks`) and the model adapter
(:mod:`runner.models`) both read prices from this module, so the dependency runs one way:
models → spec.

Providers: the prefixes litellm routes on (``openai/``, ``anthropic/``, ...) are shipped in
``litellm_providers.txt`` beside this module, copied from ``litellm.provider_list`` of the
pinned litellm (a test keeps the copy in step with the installed litellm), so a spec's
``model`` is checked without importing litellm.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

from .types import Pricing

#: Model ids answered by the embedded local model (:mod:`runner.models.local`); they are free.
LOCAL_PREFIX = "local/"

#: The embedded local models, by the name after ``local/``: the keys of
#: :data:`runner.models.local.MODELS`, named here so the spec checks need not import the
#: models layer (a test keeps the two equal).
LOCAL_MODELS = ("smollm2",)

#: The environment variables a provider reads its API key from, any one of them enough, as
#: litellm's ``validate_environment`` looks for them. Providers that authenticate otherwise
#: (``bedrock``, ``vertex_ai``: cloud credentials; ``ollama``, ``vllm``: none) are absent,
#: and so never warned about.
KEY_VARIABLES: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
    "azure": ("AZURE_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "cohere_chat": ("COHERE_API_KEY",),
    "perplexity": ("PERPLEXITYAI_API_KEY",),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY", "FIREWORKSAI_API_KEY"),
    "cerebras": ("CEREBRAS_API_KEY",),
    "deepinfra": ("DEEPINFRA_API_KEY",),
    "codestral": ("CODESTRAL_API_KEY",),
    "nvidia_nim": ("NVIDIA_NIM_API_KEY",),
    "replicate": ("REPLICATE_API_KEY",),
    "huggingface": ("HUGGINGFACE_API_KEY",),
}


@functools.cache
def providers() -> frozenset[str]:
    """The provider prefixes litellm knows (``litellm_providers.txt``), without litellm."""
    text = (Path(__file__).with_name("litellm_providers.txt")).read_text(encoding="utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def provider_of(model_id: str) -> str | None:
    """The litellm provider of ``model_id``: its prefix, else the price table's, else None.

    ``gpt-4o-mini`` (no prefix) is ``openai`` when litellm's bundled table says so; a
    prefix is returned as written, known or not (see :func:`providers`).
    """
    if "/" in model_id:
        return model_id.split("/", 1)[0]
    entry = price_table().get(model_id)
    if isinstance(entry, dict) and isinstance(entry.get("litellm_provider"), str):
        return str(entry["litellm_provider"])
    return None


@functools.cache
def price_table() -> dict[str, Any]:
    """Litellm's bundled table of model prices and limits, by model id; ``{}`` without litellm.

    Found with :func:`importlib.util.find_spec`, which does not import litellm.
    """
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    for folder in spec.submodule_search_locations:
        table = Path(folder) / "model_prices_and_context_window_backup.json"
        if table.is_file():
            loaded: dict[str, Any] = json.loads(table.read_text(encoding="utf-8"))
            return loaded
    return {}


def price_for(model_id: str) -> Pricing | None:
    """USD per million tokens for ``model_id`` from litellm's bundled price table, or None.

    Reads litellm's JSON table directly (no litellm import). ``local/`` models cost nothing.
    """
    if model_id.startswith(LOCAL_PREFIX):
        return Pricing(0.0, 0.0)
    table = price_table()
    candidates = [model_id, model_id.split("/", 1)[-1]]
    for key in candidates:
        entry = table.get(key)
        if isinstance(entry, dict) and "input_cost_per_token" in entry:
            return Pricing(
                input_per_mtok=float(entry["input_cost_per_token"]) * 1e6,
                output_per_mtok=float(entry.get("output_cost_per_token", 0.0)) * 1e6,
            )
    return None
