"""A new model's labelled queries (`ModelLabels`), read from JSON Lines for `launch.onboard`.

One object per line:

    {"id": "q17", "score": 1.0, "cost": 0.0021, "query": "What is ...?", "task": "math"}

- `id` (str, unique): the query id. Ids of the artifact's held-out queries (`launch.onboard
  --list_heldout` writes them) label those rows; every other line is a training query.
- `score` in [0, 1] (1 = correct; partial credit allowed).
- `cost` (optional, USD >= 0): the call's realised cost. Omit it on every line to use a static
  cost estimated from the model's prices.
- `query` (text) or `features` (a list of D floats): what the router reads; only training queries
  need it (the held-out rows carry their features).
- `task` (optional): the query's task, for a router with a task prior ("" or absent: unknown).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from proteus.data.dataset import DataValidationError


@dataclasses.dataclass(frozen=True)
class ModelLabels:
    """N labelled queries of one model.

    Attributes:
      query_ids: [N] str, unique.
      scores: [N] float32 in [0, 1].
      costs: [N] float32 USD, or None (no realised costs: a static cost from prices).
      texts: [N] str queries, or None.
      features: [N, D] float32, or None (rows without either are usable only as held-out labels).
      tasks: [N] str ("" unknown).
    """

    query_ids: np.ndarray
    scores: np.ndarray
    costs: np.ndarray | None = None
    texts: np.ndarray | None = None
    features: np.ndarray | None = None
    tasks: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.query_ids)
        ids = np.asarray(self.query_ids).astype(str)
        object.__setattr__(self, "query_ids", ids)
        object.__setattr__(self, "scores", np.asarray(self.scores, np.float32))
        if self.tasks is None:
            object.__setattr__(self, "tasks", np.full(n, "", object))
        for field in ("scores", "costs", "texts", "features", "tasks"):
            value = getattr(self, field)
            if value is not None and len(value) != n:
                raise DataValidationError(f"labels: {field} has {len(value)} rows, ids {n}")
        if len(set(ids.tolist())) != n:
            raise DataValidationError("labels: duplicate query ids")
        if not np.all(np.isfinite(self.scores) & (self.scores >= 0) & (self.scores <= 1)):
            raise DataValidationError("labels: every score must be a number in [0, 1]")
        if self.costs is not None:
            costs = np.asarray(self.costs, np.float32)
            if not np.all(np.isfinite(costs) & (costs >= 0)):
                raise DataValidationError("labels: every cost must be a finite number >= 0")
            object.__setattr__(self, "costs", costs)

    @property
    def n(self) -> int:
        return len(self.query_ids)

    def subset(self, rows: np.ndarray) -> ModelLabels:
        """Rows `rows` ([n] indices) as new labels."""
        take = lambda a: None if a is None else np.asarray(a)[rows]
        return ModelLabels(self.query_ids[rows], self.scores[rows], take(self.costs),
                           take(self.texts), take(self.features), take(self.tasks))


def labels_from_records(records: Iterable[Mapping[str, Any]], where: str = "labels",
                        line_numbers: Sequence[int] | None = None) -> ModelLabels:
    """`ModelLabels` from dicts shaped like the module docstring's lines.

    Args:
      records: [N] one dict per labelled query.
      where: what the records came from (a file name), for the error messages.
      line_numbers: [N] each record's line in that file (default 1..N).

    Raises:
      DataValidationError: naming `where`, the line and the field that is wrong.
    """
    rows = list(records)
    lines = list(range(1, len(rows) + 1)) if line_numbers is None else list(line_numbers)
    first_line: dict[str, int] = {}
    for line, r in zip(lines, rows, strict=True):
        _check_record(r, f"{where}: line {line}")
        if first_line.setdefault(str(r["id"]), line) != line:
            raise DataValidationError(f"{where}: line {line} repeats the id {str(r['id'])!r} of "
                                      f"line {first_line[str(r['id'])]}")
    with_cost = [r.get("cost") is not None for r in rows]
    if any(with_cost) and not all(with_cost):
        raise DataValidationError(f"{where}: line {lines[with_cost.index(False)]} has no cost; "
                                  "give a cost on every line or on none (then prices set a static "
                                  "one)")
    texts = [r.get("query") for r in rows]
    feats = [r.get("features") for r in rows]
    has_feats = any(f is not None for f in feats)
    if has_feats:
        dims = {len(f) for f in feats if f is not None}
        if len(dims) != 1 or any(t is not None for t in texts):
            raise DataValidationError(f"{where}: give every query as 'features' of one width or "
                                      "as 'query' text, not both")
        width = dims.pop()
        feats = [f if f is not None else [math.nan] * width for f in feats]
    return ModelLabels(
        query_ids=np.asarray([str(r["id"]) for r in rows]),
        scores=np.asarray([float(r["score"]) for r in rows], np.float32),
        costs=np.asarray([float(r["cost"]) for r in rows], np.float32) if any(with_cost)
        else None,
        texts=None if has_feats or all(t is None for t in texts) else np.asarray(
            ["" if t is None else str(t) for t in texts], object),
        features=np.asarray(feats, np.float32) if has_feats else None,
        tasks=np.asarray([str(r.get("task") or "") for r in rows], object))


def _check_record(r: Any, where: str) -> None:
    """One line's fields: an id, a score in [0, 1], a cost (if any) >= 0, features of numbers."""
    if not isinstance(r, Mapping) or not isinstance(r.get("id"), str | int) or not _number(
            r.get("score")):
        raise DataValidationError(f"{where} needs an 'id' and a numeric 'score', got {r!r:.120}")
    if not 0.0 <= r["score"] <= 1.0:  # NaN fails this too
        raise DataValidationError(f"{where}: score {r['score']!r} is not in [0, 1]")
    cost = r.get("cost")
    if cost is not None and not (_number(cost) and math.isfinite(cost) and cost >= 0):
        raise DataValidationError(f"{where}: cost {cost!r} is not a finite number >= 0 (USD)")
    feats = r.get("features")
    if feats is not None and not (isinstance(feats, list) and feats
                                  and all(_number(v) and math.isfinite(v) for v in feats)):
        raise DataValidationError(f"{where}: 'features' must be a list of finite numbers")


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def read_labels(path: str) -> ModelLabels:
    """The labels file `path` (JSON Lines, the module docstring's format)."""
    records, line_numbers = [], []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():  # blank lines are skipped; the messages keep the file's numbering
                try:
                    records.append(json.loads(line))
                except ValueError as err:
                    raise DataValidationError(f"{path}: line {i} is not JSON: {err}") from None
                line_numbers.append(i)
    if not records:
        raise DataValidationError(f"{path}: no labelled queries")
    return labels_from_records(records, path, line_numbers)


def write_jsonl(records: Iterable[Mapping[str, Any]], path: str) -> int:
    """Write one JSON object per line to `path` (UTF-8); returns the line count."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n
