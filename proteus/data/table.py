"""Generic routing tables (CSV, TSV, JSON Lines, parquet) in a long or a wide layout.

Long layout: one row per (query, model):

    query_id, model, score, cost[, prompt][, task]

Every query must have exactly one row for every model that appears in the file.

Wide layout: one row per query; a score column named by each model and a cost column named
`<model>|cost` (the `cost_suffix`); the models are the columns that have such a partner:

    query_id[, prompt][, task], gpt-4, gpt-4|cost, llama, llama|cost, ...

Scores must be in [0, 1] and costs (USD per call) finite and >= 0. Missing scores (empty cells,
null, NaN) follow `missing=` like every loader (`proteus.data.checks.resolve_missing_scores`);
marker words such as "n/a" or "NA" are errors that name the cell (see `proteus.data.checks`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from proteus.data import checks, io
from proteus.data.dataset import DataValidationError, RoutingDataset

if TYPE_CHECKING:  # imported where a file is read (proteus/data/__init__.py says why)
    import pandas as pd

LAYOUTS = ("auto", "long", "wide")
LONG_COLUMNS = ("query_id", "model", "score", "cost")


def detect_layout(columns, cost_suffix: str = "|cost") -> str:
    """"long" when the long columns are present, "wide" when some column ends in `cost_suffix`.

    Raises:
      DataValidationError: neither layout fits (the message lists what each needs).
    """
    cols = [str(c) for c in columns]
    if set(LONG_COLUMNS) <= set(cols):
        return "long"
    if any(c.endswith(cost_suffix) and c[: -len(cost_suffix)] in cols for c in cols):
        return "wide"
    raise DataValidationError(
        f"cannot tell the layout of columns {cols[:20]}: long needs {list(LONG_COLUMNS)}, wide "
        f"needs query_id and <model> / <model>{cost_suffix} column pairs"
    )


def load_table(
    path: str | os.PathLike,
    layout: str = "auto",
    missing: str = "drop",
    cache_dir: str | os.PathLike | None = None,
    cost_suffix: str = "|cost",
    split: str | None = None,
) -> RoutingDataset:
    """Load a long or wide routing table (see the module docstring for both layouts).

    Args:
      path: a .csv / .tsv / .json / .jsonl / .parquet file, a directory of one format, or a
        hub dataset id `owner/name` (needs network).
      layout: "long", "wide", or "auto" (decided by `detect_layout`).
      missing: missing-score policy, "drop" | "error" | "zero".
      cache_dir: HF Arrow cache directory (None: HF's default).
      cost_suffix: wide layout: the suffix that marks a model's cost column.
      split: in a directory, only files whose name starts with it; on the hub, the split
        (default "train").

    Returns:
      A dataset with scores [N, M], costs [N, M] (queries in order of first appearance, models
      in column / first-appearance order), texts from `prompt` if present, tasks from `task`
      ("" if absent).

    Raises:
      DataValidationError: empty file, missing columns, scores outside [0, 1], negative or
        non-finite costs, duplicate query ids (or query-model pairs), models missing for some
        queries (long); each message names file, column and row.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}; expected one of {LAYOUTS}")
    where = str(path)
    if io.is_hub_name(where):
        frame = io.read_hub(where, split or "train", cache_dir).to_pandas()
    else:
        frame = io.read_arrow(io.data_files(path, split), cache_dir).to_pandas()
    if layout == "auto":
        try:
            layout = detect_layout(frame.columns, cost_suffix)
        except DataValidationError as e:
            raise DataValidationError(f"{where}: {e}") from None
    build = _long if layout == "long" else _wide
    ids, models, scores, costs, texts, tasks = build(where, frame, cost_suffix)
    keep, scores, notes = checks.resolve_missing_scores(where, scores, models, ids, missing)
    return RoutingDataset(
        name=f"table:{Path(path).name}",
        models=tuple(models),
        scores=scores.astype(np.float32),
        costs=costs[keep].astype(np.float32),
        query_ids=ids[keep],
        tasks=tasks[keep],
        texts=None if texts is None else texts[keep],
        source=where,
        notes=notes,
    )


def _optional_text(frame: pd.DataFrame, column: str) -> np.ndarray | None:
    if column not in frame.columns:
        return None
    return io.text_array(frame[column].fillna("").tolist())


def _wide(where: str, frame: pd.DataFrame, suffix: str):
    """Wide frame -> (ids [N], models [M], scores [N, M] with NaN, costs [N, M], texts, tasks)."""
    checks.require_columns(where, frame.columns, ["query_id"])
    cols = [str(c) for c in frame.columns]
    models = [c for c in cols if not c.endswith(suffix) and c + suffix in cols]
    if not models:
        raise DataValidationError(
            f"{where}: no model columns; the wide layout needs <model> and <model>{suffix} pairs"
        )
    ids = frame["query_id"].astype(str).to_numpy()
    checks.check_unique(where, "query_id", ids)
    scores = np.empty((len(ids), len(models)))
    costs = np.empty_like(scores)
    for j, m in enumerate(models):
        scores[:, j] = checks.numeric_column(where, m, frame[m].to_numpy(), ids)
        checks.check_range(where, m, scores[:, j], ids, 0.0, 1.0, allow_nan=True)
        costs[:, j] = checks.numeric_column(where, m + suffix, frame[m + suffix].to_numpy(), ids)
        checks.check_range(where, m + suffix, costs[:, j], ids, 0.0, np.inf)
    tasks = _optional_text(frame, "task")
    tasks = np.full(len(ids), "") if tasks is None else tasks.astype(str)
    return ids, models, scores, costs, _optional_text(frame, "prompt"), tasks


def _long(where: str, frame: pd.DataFrame, _suffix: str):
    """Long frame -> (ids [N], models [M], scores [N, M] with NaN, costs [N, M], texts, tasks)."""
    import pandas as pd

    checks.require_columns(where, frame.columns, LONG_COLUMNS)
    qid = frame["query_id"].astype(str).to_numpy()
    model = frame["model"].astype(str).to_numpy()
    score = checks.numeric_column(where, "score", frame["score"].to_numpy(), qid)
    checks.check_range(where, "score", score, qid, 0.0, 1.0, allow_nan=True)
    cost = checks.numeric_column(where, "cost", frame["cost"].to_numpy(), qid)
    checks.check_range(where, "cost", cost, qid, 0.0, np.inf)
    pairs = pd.DataFrame({"q": qid, "m": model})
    repeated = pairs.duplicated(keep="first").to_numpy()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        raise DataValidationError(
            f"{where}: columns ['query_id', 'model'] repeat ({qid[row]!r}, {model[row]!r}) at "
            f"row {row} ({int(repeated.sum())} repeated rows in all)"
        )
    ids, qi, first_row = _first_appearance(qid)
    models, mi, _ = _first_appearance(model)
    present = np.zeros((len(ids), len(models)), bool)
    present[qi, mi] = True
    if not present.all():
        q, m = map(int, np.argwhere(~present)[0])
        raise DataValidationError(
            f"{where}: query {ids[q]!r} (column 'query_id', first at row {first_row[q]}) has no "
            f"row for model {models[m]!r} ({int((~present).sum())} query-model pairs missing); "
            "every query needs one row per model"
        )
    scores = np.empty(present.shape)
    costs = np.empty(present.shape)
    scores[qi, mi], costs[qi, mi] = score, cost
    texts = _optional_text(frame, "prompt")
    tasks = _optional_text(frame, "task")
    tasks = np.full(len(ids), "") if tasks is None else tasks[first_row].astype(str)
    return ids, list(models), scores, costs, None if texts is None else texts[first_row], tasks


def _first_appearance(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique values in order of first appearance [U], index of each value [N], first rows [U])."""
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return uniq[order], rank[inverse], first[order]
