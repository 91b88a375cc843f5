"""A new model's soft labels on the router's training pool, transferred from the old models' labels.

Onboarding fits a new model's column on the queries it has labels for: N training queries and
the `val` rows (`proteus.pipeline.onboarding`). The router's training pool holds thousands more
queries, and every OLD model answered each of them. Those answers say much about the new model's
answer to the same query: a question most models get right is one the new model likely gets
right too. On MMLU-Pro the old models' scores and the query's category predict
gemini-1.5-pro's correctness on pool queries it has no label for with AUC 0.86-0.87 (1,000
labels to fit on), where its column on the router's features reaches 0.67 on `calib`.

`transfer_labels` fits that relation, a ridge logistic regression of the new model's score on
the old models' scores and a one-hot of the query's task, on the pool queries the new model
has labels for. Every other pool query then gets a soft label, the fitted probability. Each
query is scored by the regression fitted without its cross-fitting fold's labels
(`columns.fit_head`, the ridge chosen by the out-of-fold log-loss). The new model's cost on
those queries comes from a ridge regression of its log cost on the old models' log costs, fitted
the same way. Onboarding then fits the column on the labelled rows and the soft-labelled ones
together (`pipeline.onboard(..., pool=...)`): the column learns from the features what the
soft labels say.

What it costs: the soft labels are the old models' view of a query, so a query the new model
answers unlike every old model is labelled as the old models would answer it; the real labels
(the N training queries and `val`) are what teach the column the difference. The column's
out-of-fold logits, which its calibration is fitted on, are out of fold for the labelled rows'
own labels only to first order: a soft label of another fold's query depends on every labelled
row through the regression's few weights (the old models and the tasks, not the query's
features). `calib`, which certifies, is never read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import ml_collections
import numpy as np

from proteus.data.dataset import RoutingDataset, concatenate
from proteus.data.labels import ModelLabels
from proteus.training import columns, reopen

MIN_LABELLED = 50  # pool queries with the new model's label below which nothing is transferred


class Transfer(NamedTuple):
    """Soft labels for the pool queries the new model has no label for.

    rows: [U] indices of those queries in the pool; scores: [U] float32 in (0, 1); costs: [U]
    float32 USD, or None (no realised costs given); ridge: the chosen ridge; n_fit: the labelled
    pool queries fitted on.
    """

    rows: np.ndarray
    scores: np.ndarray
    costs: np.ndarray | None
    ridge: float
    n_fit: int


def transfer_design(old_scores: np.ndarray, tasks: np.ndarray) -> np.ndarray:
    """[P, M + T] float32: the old models' scores [P, M] and a one-hot [P, T] of each query's
    task (T: the distinct non-empty task labels of `tasks` [P], sorted)."""
    tasks = np.asarray(tasks).astype(str)
    names = np.asarray(sorted(set(tasks.tolist()) - {""}))
    onehot = (tasks[:, None] == names[None, :]).astype(np.float32)
    return np.column_stack([np.asarray(old_scores, np.float32), onehot])


def transfer_labels(old_scores: np.ndarray, old_costs: np.ndarray, tasks: np.ndarray,
                    fold: np.ndarray, labelled: np.ndarray, scores: np.ndarray,
                    costs: np.ndarray | None, n_folds: int) -> Transfer:
    """The new model's soft labels (and costs) on the pool queries it has no label for.

    Args:
      old_scores, old_costs: [P, M] every old model's score and USD cost on the pool queries.
      tasks: [P] str task of each query ("" unknown); fold: [P] int32 in [0, n_folds).
      labelled: [P] bool, the queries the new model has a label for; scores: [P] its score
        there (read where `labelled`); costs: [P] its USD cost there, or None.
      n_folds: the router's cross-fitting folds (>= 2).

    Raises:
      ValueError: fewer than `MIN_LABELLED` labelled pool queries.
    """
    labelled = np.asarray(labelled, bool)
    if labelled.sum() < MIN_LABELLED:
        raise ValueError(f"{int(labelled.sum())} of the new model's labelled queries are pool "
                         f"queries; transferring labels needs >= {MIN_LABELLED}")
    design = transfer_design(old_scores, tasks)
    z = jnp.broadcast_to(jnp.asarray(design), (n_folds, *design.shape))  # one design per fold
    keep = jnp.asarray(labelled, jnp.float32)
    fold = jnp.asarray(fold, jnp.int32)
    ridges = jnp.asarray(columns.RIDGES, jnp.float32)
    target = jnp.asarray(np.where(labelled, scores, 0.0), jnp.float32)
    _, _, logit, ridge = columns.fit_head(columns.fit_logistic, columns.bce_loss, z, target, fold,
                                          ridges, keep)
    rows = np.flatnonzero(~labelled)
    soft = np.asarray(1.0 / (1.0 + np.exp(-np.asarray(logit, np.float64)[rows])), np.float32)
    cost = None
    if costs is not None:
        log = lambda c: np.log(np.maximum(np.asarray(c, np.float64), 1e-12)).astype(np.float32)
        x = jnp.broadcast_to(jnp.asarray(log(old_costs)), (n_folds, *old_costs.shape))
        target = jnp.asarray(np.where(labelled, log(costs), 0.0))
        _, _, log_cost, _ = columns.fit_head(columns.fit_ridge, columns.mse_loss, x, target, fold,
                                             ridges, keep)
        cost = np.exp(np.asarray(log_cost, np.float64)[rows]).astype(np.float32)
    return Transfer(rows, soft, cost, float(ridge), int(labelled.sum()))


def with_transferred(pool: RoutingDataset, models: Sequence[str], pool_ids: np.ndarray,
                     pool_folds: np.ndarray, train: ModelLabels, features: np.ndarray,
                     n_folds: int) -> tuple[ModelLabels, Transfer]:
    """The training labels `train` (features [N, D]) followed by soft labels for every query of
    `pool` the new model has no label for (`transfer_labels`), as one `ModelLabels` with
    features; and the `Transfer`.

    pool: the router's training pool with every old model's labels; models: the artifact's
    models (the pool's must be these, in order); pool_ids, pool_folds: [Q] the artifact's
    training-pool ids and their folds.

    Raises:
      ValueError: other models, a pool query that is not one of the artifact's, or too few
        labelled ones.
    """
    if tuple(pool.models) != tuple(models):
        raise ValueError(f"the pool's models {list(pool.models)} are not the artifact's "
                         f"{list(models)}: pass the data the router was trained on")
    fold_of = dict(zip(np.asarray(pool_ids).astype(str).tolist(),
                       np.asarray(pool_folds).tolist(), strict=True))
    ids = np.asarray(pool.query_ids).astype(str)
    unknown = [q for q in ids.tolist() if q not in fold_of]
    if unknown:
        raise ValueError(f"{len(unknown)} of the pool's {len(ids)} queries are not in the "
                         f"artifact's training pool (e.g. {unknown[0]!r}): pass the data the "
                         "router was trained on (its pred and policy splits)")
    index = {q: i for i, q in enumerate(train.query_ids.tolist())}
    at = np.asarray([index.get(q, -1) for q in ids.tolist()], np.int64)
    labelled = at >= 0
    pick = lambda a: np.where(labelled, np.asarray(a)[np.maximum(at, 0)], 0.0)
    moved = transfer_labels(pool.scores, pool.costs, pool.tasks,
                            np.asarray([fold_of[q] for q in ids.tolist()], np.int32), labelled,
                            pick(train.scores), None if train.costs is None
                            else pick(train.costs), n_folds)
    r = moved.rows
    both = ModelLabels(
        query_ids=np.concatenate([train.query_ids, ids[r]]),
        scores=np.concatenate([train.scores, moved.scores]),
        costs=None if train.costs is None else np.concatenate([train.costs, moved.costs]),
        features=np.concatenate([features, np.asarray(pool.features, np.float32)[r]]),
        tasks=np.concatenate([np.asarray(train.tasks).astype(str),
                              np.asarray(pool.tasks).astype(str)[r]]))
    return both, moved


def lineage(moved: Transfer | None) -> dict[str, Any]:
    """The manifest lineage's record of a transfer: {"n_transferred": U, "transfer":
    {"fitted_on", "ridge"}} ({"n_transferred": 0} without one)."""
    if moved is None:
        return {"n_transferred": 0}
    return {"n_transferred": len(moved.rows),
            "transfer": {"fitted_on": moved.n_fit, "ridge": moved.ridge}}


def training_pool(artifact: str) -> RoutingDataset:
    """The training pool of an exported router (`pool_of` of the config and models its bundle
    records), for `pipeline.onboard(..., pool=...)`.

    Raises:
      ValueError: the artifact records no training config, or its data lacks one of its models.
    """
    bundle, _, _ = reopen.read_bundle(artifact)
    recorded = bundle.training.get("config")
    if not isinstance(recorded, dict):
        raise ValueError(f"{artifact} records no training config; re-export it")
    return pool_of(ml_collections.ConfigDict(recorded), bundle.models)


def pool_of(config: ml_collections.ConfigDict, models: Sequence[str]) -> RoutingDataset:
    """The training pool a router was trained on: its `pred` and `policy` splits rebuilt from
    its recorded training config (`pipeline.load_splits`: the same source, encoder, excluded
    models and split), with the columns of `models` [M], in that order.

    Raises:
      ValueError: the data has no labels of one of `models` (a model added by onboarding).
    """
    from proteus.pipeline.setup import load_splits  # noqa: PLC0415 (reads and encodes data)

    splits = load_splits(config, progress=False)
    pool = concatenate([splits["pred"], splits["policy"]])
    missing = [m for m in models if m not in pool.models]
    if missing:
        raise ValueError(f"the training data {config.data.source!r} has no labels of "
                         f"{missing}: the pool can only transfer from models it was trained on")
    return pool.without_models([m for m in pool.models if m not in models])
