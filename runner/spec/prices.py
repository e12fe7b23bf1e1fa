"""Model prices known without calling or importing a model: what the budget check needs.

A ``max_cost_usd`` cap can only be enforced when the price of the model (and of each
fallback) is known: from the spec's ``model.pricing``, else from litellm's bundled price
table, read here as the JSON file it is (litellm itself takes seconds to import and is
never imported here). The spec checks (:mod:`runner.spec.checks`) and the model adapter
(:mod:`runner.models`) both read prices from this module, so the dependency runs one way:
models → spec.
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
