"""SPROUT loader (CARROT-LLM-Routing/SPROUT parquet, and SPROUT-o3mini).

Schema (one row per prompt): `key`, `dataset` (source benchmark: task family), `dataset_level`,
`dataset_idx`, `prompt`, `golden_answer`, and one struct column per model with fields `score` in
[0, 1], `num_input_tokens`, `num_output_tokens` (plus response text and judge rationale, ignored).
SPROUT ships token counts, not dollars: cost = num_input_tokens * price_in + num_output_tokens *
price_out, with CARROT's price table by default (`CARROT_PRICES`).

Missing scores (a null struct or a null `score`) follow `missing=` like every loader (see
`proteus.data.checks.resolve_missing_scores`); under "zero" a filled cell whose token counts are
missing costs 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from proteus.data import checks, io
from proteus.data.dataset import DataValidationError, RoutingDataset

if TYPE_CHECKING:  # imported where a file is read (proteus/data/__init__.py says why)
    import pyarrow as pa

MODEL_FIELDS = ("score", "num_input_tokens", "num_output_tokens")

# USD per token (input, output). Source: ../shared/data/benchmark_stats.json
# "sprout.price_usd_per_1M_tokens_in_out_CARROT_repo" (the price table in the CARROT repository),
# plus openai-o3-mini from "sprout.sprout_o3mini_facts" for SPROUT-o3mini.
_PER_1M = {
    "aws-claude-3-5-sonnet-v1": (3.0, 15.0),
    "aws-titan-text-premier-v1": (0.8, 3.2),
    "openai-gpt-4o": (2.5, 10.0),
    "openai-gpt-4o-mini": (0.15, 0.6),
    "wxai-granite-3-2b-instruct-8k-max-tokens": (0.1, 0.1),
    "wxai-granite-3-8b-instruct-8k-max-tokens": (0.2, 0.2),
    "wxai-llama-3-1-70b-instruct": (0.9, 0.9),
    "wxai-llama-3-1-8b-instruct": (0.2, 0.2),
    "wxai-llama-3-2-1b-instruct": (0.06, 0.06),
    "wxai-llama-3-2-3b-instruct": (0.06, 0.06),
    "wxai-llama-3-3-70b-instruct": (0.9, 0.9),
    "wxai-mixtral-8x7b-instruct-v01": (0.6, 0.6),
    "wxai-llama-3-405b-instruct": (3.5, 3.5),
    "openai-o3-mini": (1.1, 4.4),
}
CARROT_PRICES: dict[str, tuple[float, float]] = {
    m: (p_in / 1e6, p_out / 1e6) for m, (p_in, p_out) in _PER_1M.items()
}


def sprout_models(schema: pa.Schema) -> list[str]:
    """Names of the struct columns that carry score, num_input_tokens and num_output_tokens."""
    import pyarrow as pa

    out = []
    for f in schema:
        if pa.types.is_struct(f.type):
            names = {f.type.field(i).name for i in range(f.type.num_fields)}
            if set(MODEL_FIELDS) <= names:
                out.append(f.name)
    return out


def load_sprout(
    path_or_dir: str | os.PathLike,
    prices: Mapping[str, tuple[float, float]] = CARROT_PRICES,
    split: str | None = None,
    missing: str = "drop",
    cache_dir: str | os.PathLike | None = None,
) -> RoutingDataset:
    """Load SPROUT parquet file(s) as a `RoutingDataset` with costs from tokens x prices.

    Args:
      path_or_dir: a parquet file, a directory of them (HF layout `data/<split>-*.parquet`), or
        a hub id such as "CARROT-LLM-Routing/SPROUT" (needs network).
      prices: model -> (USD per input token, USD per output token); every model must be listed.
      split: in a directory or on the hub, only this split ("train", "validation", "test");
        None: every file in the directory, or all three hub splits.
      missing: missing-score policy, "drop" | "error" | "zero".
      cache_dir: HF Arrow cache directory (None: HF's default).

    Returns:
      scores [N, M] and costs [N, M] for the M model columns in file order, tasks from `dataset`,
      texts from `prompt`, query ids from `key`, `prices` restricted to the M models.

    Raises:
      DataValidationError: a model with no price (named), missing columns, scores outside
        [0, 1], negative / non-finite / missing token counts, duplicate keys.
    """
    spec = str(path_or_dir)
    if io.is_hub_name(spec):
        table = io.read_hub(spec, split or "train+validation+test", cache_dir)
        where = f"{spec}[{split or 'all'}]"
    else:
        files = io.data_files(spec, split)
        table, where = io.read_arrow(files, cache_dir), spec
    models = _priced_models(where, table, prices)
    ids = np.asarray(table.column("key").to_pylist(), dtype=object).astype(str)
    checks.check_unique(where, "key", ids)
    scores, costs = _scores_and_costs(where, table, models, ids, prices)
    keep, scores, notes = checks.resolve_missing_scores(where, scores, models, ids, missing)
    return RoutingDataset(
        name=f"sprout:{Path(spec).name}" + (f"[{split}]" if split else ""),
        models=tuple(models),
        scores=scores.astype(np.float32),
        costs=np.nan_to_num(costs[keep], nan=0.0).astype(np.float32),
        query_ids=ids[keep],
        tasks=np.asarray(table.column("dataset").to_pylist(), dtype=object)[keep].astype(str),
        texts=io.text_array([_prompt_text(p) for p in table.column("prompt").to_pylist()])[keep],
        prices={m: tuple(prices[m]) for m in models},
        source=where,
        notes=notes,
    )


def _priced_models(where: str, table, prices: Mapping[str, tuple[float, float]]) -> list[str]:
    """The table's model columns in file order, after checking its columns and that every model
    has a price (`where` names the file in the error)."""
    checks.require_columns(where, table.column_names, ["key", "dataset", "prompt"])
    models = sprout_models(table.schema)
    if not models:
        raise DataValidationError(
            f"{where}: no model columns; expected struct columns with fields {MODEL_FIELDS}"
        )
    unknown = [m for m in models if m not in prices]
    if unknown:
        raise DataValidationError(
            f"{where}: model {unknown[0]!r} has no price in the price table (unpriced: "
            f"{unknown}); pass prices={{model: (usd_per_input_token, usd_per_output_token)}}"
        )
    return models


def _scores_and_costs(where, table: pa.Table, models, ids, prices) -> tuple[np.ndarray, ...]:
    """[N, M] scores (NaN where missing) and [N, M] costs (NaN where the score is missing)."""
    n = table.num_rows
    scores = np.empty((n, len(models)))
    costs = np.empty((n, len(models)))
    for j, m in enumerate(models):
        score = _field(table, m, "score")
        checks.check_range(where, f"{m}.score", score, ids, 0.0, 1.0, allow_nan=True)
        has = ~np.isnan(score)
        tokens = []
        for name in MODEL_FIELDS[1:]:
            count = _field(table, m, name)
            # Tokens must be present where the score is (a cost we cannot compute is an error).
            checks.check_range(where, f"{m}.{name}", np.where(has, count, 0.0), ids, 0.0, np.inf)
            tokens.append(np.where(has, count, np.nan))
        p_in, p_out = prices[m]
        scores[:, j] = score
        costs[:, j] = tokens[0] * p_in + tokens[1] * p_out
    return scores, costs


def _field(table: pa.Table, column: str, name: str) -> np.ndarray:
    """[N] float64 values of struct field `name` of `column`; NaN where it or the struct is null."""
    import pyarrow.compute as pc

    return np.asarray(pc.struct_field(table.column(column), name).to_numpy(), np.float64)


def _prompt_text(prompt: object) -> str:
    """A prompt as text: strings as is; chat messages [{role, content}] or lists joined."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        parts = [p.get("content", "") if isinstance(p, dict) else str(p) for p in prompt]
        return "\n\n".join(str(p) for p in parts)
    return "" if prompt is None else str(prompt)
