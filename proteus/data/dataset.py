"""The one in-memory routing dataset every loader returns and every router consumes.

A `RoutingDataset` holds, for N queries and M models, the realised score and cost of sending each
query to each model (the offline data of DESIGN.md section 1), plus whatever describes the queries
(text, task family, features). It is immutable: `subset`, `split` and `with_features` return new
objects and never copy the arrays they do not change.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from proteus.tasks import TaskVocabulary


class DataValidationError(ValueError):
    """Raised when routing data breaks the contract; the message names file, column and row."""


@dataclasses.dataclass(frozen=True, eq=False)
class RoutingDataset:
    """Scores and costs of M models on N queries.

    Attributes:
      name: human-readable dataset name, e.g. "routerbench:routerbench_0shot.pkl".
      models: [M] model names, unique.
      scores: [N, M] float32 in [0, 1] (1 = correct; partial credit allowed). Never NaN.
      costs: [N, M] float32 USD per call, finite and >= 0.
      query_ids: [N] str, unique.
      tasks: [N] str task family of each query ("" when unknown).
      texts: [N] str prompts, or None.
      features: [N, D] float32 query features, or None until encoded.
      prices: model -> (USD per input token, USD per output token) where known.
      source: where the data came from (a path or a preset), for fingerprints and cards.
      notes: loader notes a user must see (e.g. "dropped 68 rows with missing scores").
    """

    name: str
    models: tuple[str, ...]
    scores: np.ndarray
    costs: np.ndarray
    query_ids: np.ndarray
    tasks: np.ndarray
    texts: np.ndarray | None = None
    features: np.ndarray | None = None
    prices: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    source: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate(self)

    # ------------------------------------------------------------------ shape helpers
    @property
    def n_queries(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_models(self) -> int:
        return len(self.models)

    def __len__(self) -> int:
        return self.n_queries

    @property
    def is_binary(self) -> bool:
        """True when every score is exactly 0 or 1 (Clopper-Pearson applies)."""
        return bool(np.all((self.scores == 0.0) | (self.scores == 1.0)))

    # ------------------------------------------------------------------ derived datasets
    def subset(self, indices: Sequence[int] | np.ndarray) -> RoutingDataset:
        """Rows `indices` (any order, no repeats required) as a new dataset."""
        idx = np.asarray(indices, dtype=np.int64)
        take = lambda a: None if a is None else a[idx]
        return dataclasses.replace(
            self,
            scores=self.scores[idx],
            costs=self.costs[idx],
            query_ids=self.query_ids[idx],
            tasks=self.tasks[idx],
            texts=take(self.texts),
            features=take(self.features),
        )

    def without_models(self, names: Sequence[str]) -> RoutingDataset:
        """A copy without the models `names` (their score and cost columns and prices).

        Raises:
          DataValidationError: a name that is not one of `models` (naming the known ones).
        """
        unknown = [n for n in names if n not in self.models]
        if unknown:
            raise DataValidationError(f"{self.source or self.name}: no model(s) {unknown} to "
                                      f"exclude; its models are {list(self.models)}")
        keep = [m for m, name in enumerate(self.models) if name not in set(names)]
        return dataclasses.replace(
            self, models=tuple(self.models[m] for m in keep), scores=self.scores[:, keep],
            costs=self.costs[:, keep],
            prices={k: v for k, v in self.prices.items() if k not in set(names)})

    def with_features(self, features: np.ndarray) -> RoutingDataset:
        """A copy carrying `features` [N, D] float32."""
        return dataclasses.replace(self, features=np.asarray(features, np.float32))

    def split(
        self, fractions: Mapping[str, float], salt: str = "proteus"
    ) -> dict[str, RoutingDataset]:
        """Deterministic split by a hash of the query id, stratified by task.

        See `split_indices`; returns one dataset per split name.
        """
        parts = split_indices(self.query_ids, self.tasks, fractions, salt)
        return {name: self.subset(idx) for name, idx in parts.items()}

    def fingerprint(self) -> str:
        """A stable hex digest of the routing content (models, ids, scores, costs, texts)."""
        h = hashlib.sha256()
        h.update("\x1f".join(self.models).encode())
        h.update("\x1f".join(map(str, self.query_ids)).encode())
        h.update(np.ascontiguousarray(self.scores, np.float32).tobytes())
        h.update(np.ascontiguousarray(self.costs, np.float32).tobytes())
        if self.texts is not None:
            h.update("\x1f".join(map(str, self.texts)).encode())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ summaries
    def oracle(self) -> tuple[float, float]:
        """(accuracy, cost) of the per-query best model, cheapest among ties."""
        choice = oracle_choice(self.scores, self.costs)
        rows = np.arange(self.n_queries)
        return (float(self.scores[rows, choice].mean()), float(self.costs[rows, choice].mean()))

    def best_fixed(self) -> tuple[str, float, float]:
        """(model, accuracy, cost) of the single model with the highest mean score."""
        means = self.scores.mean(0)
        m = int(np.argmax(means))
        return self.models[m], float(means[m]), float(self.costs[:, m].mean())


def concatenate(parts: Sequence[RoutingDataset]) -> RoutingDataset:
    """The rows of `parts` (same models, e.g. splits of one dataset) in order, as one dataset
    with the first part's name, prices and notes; texts and features are kept where every part
    has them."""
    first = parts[0]
    if any(p.models != first.models for p in parts):
        raise ValueError("concatenate: the parts have different models")
    cat = lambda f: (None if any(getattr(p, f) is None for p in parts)
                     else np.concatenate([getattr(p, f) for p in parts]))
    return dataclasses.replace(first, **{f: cat(f) for f in (
        "scores", "costs", "query_ids", "tasks", "texts", "features")})


def oracle_choice(scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Per query the highest-scoring model, cheapest among ties. [N, M], [N, M] -> [N] int."""
    best = scores.max(axis=1, keepdims=True)
    masked_cost = np.where(scores >= best, costs, np.inf)
    return np.argmin(masked_cost, axis=1)


def _hash_unit(salt: str, key: str) -> float:
    digest = hashlib.sha256(f"{salt}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_indices(
    query_ids: np.ndarray,
    tasks: np.ndarray,
    fractions: Mapping[str, float],
    salt: str = "proteus",
) -> dict[str, np.ndarray]:
    """Assign each query to a split, identically on every machine and run.

    Within each task, queries are ordered by sha256(salt, query_id) and cut at the cumulative
    fractions (rounded so that each task's split sizes differ from the target by < 1 query). The
    assignment of a query depends only on its id, its task's members and the fractions, never on
    row order or on a random generator state.

    Args:
      query_ids: [N] unique ids.
      tasks: [N] task labels (stratification groups).
      fractions: split name -> fraction; positive, summing to 1 (within 1e-6).
      salt: changes the assignment; keep fixed for comparable runs.

    Returns:
      split name -> sorted [n_split] int64 row indices; together a partition of range(N).
    """
    names = list(fractions)
    fracs = np.array([fractions[n] for n in names], dtype=np.float64)
    if not names or np.any(fracs < 0) or abs(fracs.sum() - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {dict(fractions)}")
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    tasks = np.asarray(tasks).astype(str)
    for task in sorted(set(tasks.tolist())):
        rows = np.flatnonzero(tasks == task)
        keys = np.array([_hash_unit(salt, str(query_ids[r])) for r in rows])
        ordered = rows[np.argsort(keys, kind="stable")]
        cuts = np.round(np.cumsum(fracs) * len(rows)).astype(int)
        start = 0
        for name, stop in zip(names, cuts, strict=True):
            out[name].append(ordered[start:stop])
            start = stop
    return {n: np.sort(np.concatenate(parts)).astype(np.int64) for n, parts in out.items()}


def task_vocabulary(tasks: np.ndarray) -> tuple[str, ...]:
    """The sorted distinct known task names of [N] task labels ("" is an unknown task)."""
    return TaskVocabulary.of_labels(np.asarray(tasks).astype(str).tolist()).names


def task_index(names: Sequence[str], tasks: Any) -> np.ndarray:
    """[N] int32 id of each task label in `names` (`TaskVocabulary.label_ids`: -1 for a label
    not among them, or "")."""
    return TaskVocabulary(tuple(names)).label_ids(tasks)


def validate(ds: RoutingDataset) -> None:
    """Check the dataset contract; raise `DataValidationError` naming the first bad cell."""
    where = ds.source or ds.name
    n_models = len(ds.models)
    if ds.scores.ndim != 2 or ds.scores.shape[1] != n_models:
        raise DataValidationError(
            f"{where}: scores must be [N, {n_models}], got shape {ds.scores.shape}"
        )
    n = ds.scores.shape[0]
    if n == 0:
        raise DataValidationError(f"{where}: no queries")
    if len(set(ds.models)) != n_models:
        dup = sorted({m for m in ds.models if ds.models.count(m) > 1})
        raise DataValidationError(f"{where}: duplicate model names {dup}")
    if ds.costs.shape != ds.scores.shape:
        raise DataValidationError(
            f"{where}: costs shape {ds.costs.shape} != scores shape {ds.scores.shape}"
        )
    for field in ("query_ids", "tasks", "texts", "features"):
        arr = getattr(ds, field)
        if arr is not None and arr.shape[0] != n:
            raise DataValidationError(f"{where}: {field} has {arr.shape[0]} rows, expected {n}")
    _check_cells(where, "score", ds.scores, ds.models, ds.query_ids, lo=0.0, hi=1.0)
    _check_cells(where, "cost", ds.costs, ds.models, ds.query_ids, lo=0.0, hi=np.inf)
    ids = ds.query_ids.astype(str)
    uniq, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        dup = uniq[counts > 1][:5].tolist()
        raise DataValidationError(f"{where}: duplicate query ids {dup}")
    if ds.features is not None and ds.features.ndim != 2:
        raise DataValidationError(f"{where}: features must be [N, D], got {ds.features.shape}")


def _check_cells(where, what, values, models, query_ids, lo, hi) -> None:
    bad = ~np.isfinite(values) | (values < lo) | (values > hi)
    if np.any(bad):
        row, col = map(int, np.argwhere(bad)[0])
        raise DataValidationError(
            f"{where}: {what} for model {models[col]!r} at row {row} (query_id "
            f"{query_ids[row]!r}) is {values[row, col]!r}; expected a finite value in "
            f"[{lo}, {hi}] ({int(bad.sum())} bad cells in all)"
        )
