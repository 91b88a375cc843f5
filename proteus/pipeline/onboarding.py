"""Add or remove a model of an exported router without retraining it, re-measured and re-certified.

    from proteus import pipeline
    queries = pipeline.heldout_queries("artifacts/rb")          # run the new model on these
    pipeline.onboard("artifacts/rb", "new-model", labels, "artifacts/rb+new",
                     price=(1e-6, 3e-6))                        # labels: `ModelLabels`
    pipeline.remove_model("artifacts/rb+new", "claude-v2", "artifacts/rb-claude")

The policy outputs one quality preference μ and the routing rule is argmax_m μ·p̂_m −
(1 − μ)·ĉ_m / c_ref, so the policy does not depend on the model pool: it is reused as trained,
and so are the fold predictors' trunks, every other model's heads and calibration, c_ref (the
normaliser stays the trained one even if the new model is dearer or the removed one was the
dearest) and the λ(τ) table, whose top lanes at the dual's bound an added model re-opens
(`reopen_capped_lanes`). A new model gets its own column, fitted out of fold on the
frozen trunks (`proteus.training.columns.fit_column`) from its N training queries and the `val`
rows, whose labels onboarding needs anyway; a removed model's column is dropped. Then, as the
evaluation does, the operating points (the policy at the same τ' and every fixed model) are
re-measured on the artifact's `val` rows, each row routed by a column fitted without it
(`_FitRows.route_val_out_of_fold`), and re-certified on its `calib` rows, which no column is
fitted on. An added
model's candidates also include the policy at the same τ' routing around it (the parent's
routing, its lanes re-opened; `proteus.operating.exclusion`): where N labels leave the new
column worse than not having the model, the `val` rows can choose those points instead (a choice
on held-out rows, not a guarantee; measured in docs/onboard.md). The points are measured on
`val` and certified on `calib`
(`proteus.pipeline.routing`), both carried by the artifact (`proteus.training.reopen`), and a
new artifact is written whose manifest's "lineage" says what was done to which parent.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np

from proteus.data.dataset import RoutingDataset, split_indices, task_index
from proteus.data.labels import ModelLabels
from proteus.pipeline import transfer
from proteus.pipeline.routing import RunRouter, certify_table, measure_points, point_routes
from proteus.training import columns, destination, export, reopen

MIN_TRAIN = 50  # training queries below which no column is fitted
# A lane whose dual ended at the projection bound (train.lam_max) had a target the old pool
# could not meet; onboarding re-opens such top lanes with λ up to this many times the bound.
LAMBDA_REACH = 1000.0
CAPPED = 0.99  # a lane's λ at or above this fraction of lam_max counts as at the bound


class OnboardError(ValueError):
    """The artifact, the model or its labels do not allow the operation (the message says why)."""


def heldout_queries(artifact: str) -> list[dict[str, Any]]:
    """The held-out queries a new model must be run on: one {"id", "split", "task", "query"}
    per row ("query" None when the artifact's rows carry features only)."""
    _, rows, _ = reopen.read_bundle(artifact)
    rows = _require_rows(artifact, rows)
    return [{"id": str(q), "split": name, "task": str(t) or None,
             "query": None if ds.texts is None else str(x)}
            for name, ds in rows.splits().items()
            for q, t, x in zip(ds.query_ids, ds.tasks,
                               ds.texts if ds.texts is not None else [None] * ds.n_queries,
                               strict=True)]


def onboard(artifact: str, model: str, labels: ModelLabels, out: str, *,
            price: tuple[float, float] | None = None, heldout: reopen.HeldoutRows | None = None,
            pool: RoutingDataset | None = None, overwrite: bool = False,
            platforms: Sequence[str] = export.DEFAULT_PLATFORMS) -> dict[str, Any]:
    """Write `out`: the router of `artifact` with `model` added, re-measured and re-certified.

    Args:
      artifact: an exported router (with held-out rows, or pass `heldout`).
      model: the new model's name (not one of the artifact's).
      labels: its labelled queries: one for every held-out row (by id; the `val` rows' are
        fitted on too, `calib`'s only certify) and N training queries (every other id; text or
        features).
      out: the new artifact's directory.
      price: (USD per input token, USD per output token) of the model, recorded in the
        manifest; needed when `labels` has no costs (a static cost is estimated from it).
      heldout: held-out rows with every model's labels, for an artifact that carries none.
      pool: the router's training pool (its `pred` and `policy` queries with every old model's
        labels and features; `pool_of` rebuilds it from the artifact's data source): its
        queries without the new model's label are fitted on too, with soft labels transferred
        from the old models' labels (`proteus.pipeline.transfer`).

    Returns:
      the new manifest.
    """
    destination.check_out(out, overwrite)  # before any fitting (or encoding of the labels' texts)
    export.check_platforms(platforms)
    _check_price(price)
    bundle, rows, manifest = reopen.read_bundle(artifact)
    rows, config = _require_rows(artifact, heldout or rows), training_config(artifact, bundle)
    if model in bundle.models:
        raise OnboardError(f"{artifact} already routes to {model!r}; remove it first")
    if bundle.spec.folds < 2:
        raise OnboardError(f"{artifact} has one predictor (train.folds=1): onboarding fits a "
                           "column per cross-fitting fold and needs train.folds >= 2")
    held, train = _split_labels(artifact, rows, labels)
    n_train, moved = train.n, None
    static = None if labels.costs is not None else _static_cost(bundle, rows, model, price)
    new_rows = rows.replace_models(
        (*bundle.models, model),
        {n: np.column_stack([ds.scores, held[n].scores]) for n, ds in rows.splits().items()},
        {n: np.column_stack([ds.costs, held[n].costs if held[n].costs is not None
                             else np.full(ds.n_queries, static, np.float32)])
         for n, ds in rows.splits().items()})
    if pool is not None:
        train, moved = _transfer(bundle, rows, pool, train)
    fit = _FitRows.of(bundle, config, rows, train, held["val"], static)
    lams = reopen_capped_lanes(bundle.lane_lams, float(config.train.lam_max))
    prices = {**bundle.prices, **({model: tuple(map(float, price))} if price else {})}
    grow = lambda column: with_column(bundle, model, column, lams, prices)
    column = fit.column(bundle, np.ones(fit.n, bool))
    step = {"added": model, "removed": None, "n_train": n_train,
            "n_val_fitted": fit.n - train.n, "val_measured": "out of fold",
            **transfer.lineage(moved),
            "cost": "head" if static is None else f"static {static:.6g} USD from prices",
            "ridge": {"performance": float(column.perf_ridge),
                      "cost": None if static is not None else float(column.cost_ridge)},
            "lanes_reopened": int(np.sum(lams != np.asarray(bundle.lane_lams, np.float32)))}
    route = lambda raw: fit.route_val_out_of_fold(bundle, grow, new_rows.val, raw)
    return _finish(grow(column), new_rows, config, manifest, step, out, overwrite, platforms,
                   masked=(len(bundle.models),), route=route)


def _check_price(price: tuple[float, float] | None) -> None:
    if price is not None and not (len(price) == 2 and all(
            math.isfinite(p) and p >= 0.0 for p in price)):
        raise OnboardError(f"price must be (USD per input token, USD per output token), two "
                           f"finite numbers >= 0; got {price!r}")


def _transfer(bundle: export.RouterBundle, rows: reopen.HeldoutRows, pool: RoutingDataset,
              train: ModelLabels) -> tuple[ModelLabels, transfer.Transfer]:
    """`transfer.with_transferred` for `onboard`: the training labels and the pool's soft ones."""
    try:
        return transfer.with_transferred(pool, bundle.models, rows.pool_ids, rows.pool_folds,
                                         train, _features(bundle, train), bundle.spec.folds)
    except ValueError as e:
        raise OnboardError(str(e)) from e


def with_column(bundle: export.RouterBundle, model: str, column: columns.Column,
                lane_lams: np.ndarray, prices: dict[str, tuple[float, float]]
                ) -> export.RouterBundle:
    """`bundle` routing to one more model, `model`, by its fitted `column`, with the λ table
    `lane_lams` [K] and `prices` (its operating table and certificate are still the parent's)."""
    return dataclasses.replace(
        bundle, spec=bundle.spec._replace(n_models=len(bundle.models) + 1),
        params=columns.append_model(bundle.params, column.leaves),
        models=(*bundle.models, model), prices=prices, lane_lams=lane_lams)


@dataclasses.dataclass(frozen=True)
class _FitRows:
    """The rows a new model's column is fitted on: the N training queries, then the `val` rows
    (their labels are needed anyway; the points measured on `val` route each of its rows with a
    column fitted without it, `route_val_out_of_fold`). `calib` is never fitted on: it certifies.

    features [R, D]; scores [R]; log_costs [R] or None (static cost); task_ids [R] int32 in
    [-1, T), or None without a task prior; fold [R] int32 in [0, F); is_val [R] bool; static:
    the static USD cost, or None.
    """

    features: np.ndarray
    scores: np.ndarray
    log_costs: np.ndarray | None
    task_ids: np.ndarray | None
    fold: np.ndarray
    is_val: np.ndarray
    static: float | None

    @property
    def n(self) -> int:
        return len(self.scores)

    @classmethod
    def of(cls, bundle: export.RouterBundle, config: ml_collections.ConfigDict,
           rows: reopen.HeldoutRows, train: ModelLabels, val: ModelLabels,
           static: float | None) -> _FitRows:
        tasks = np.concatenate([train.tasks.astype(str), rows.val.tasks.astype(str)])
        ids = np.concatenate([train.query_ids, rows.val.query_ids.astype(str)])
        both = ModelLabels(query_ids=ids, scores=np.concatenate([train.scores, val.scores]),
                           tasks=tasks)
        log_costs = None if static is not None else np.log(np.maximum(
            np.concatenate([train.costs, val.costs]), 1e-12)).astype(np.float32)
        features = np.concatenate([_features(bundle, train),
                                   np.asarray(rows.val.features, np.float32)])
        task_ids = task_index(bundle.tasks, tasks) if bundle.spec.tasks else None
        return cls(features, both.scores, log_costs, task_ids, _folds(rows, both, config),
                   np.arange(len(ids)) >= train.n, static)

    def column(self, bundle: export.RouterBundle, keep: np.ndarray) -> columns.Column:
        """The column fitted out of fold on the rows `keep` ([R] bool; the others are weighted
        0, so every subset shares one compiled fit)."""
        optional = lambda a: None if a is None else jnp.asarray(a)
        return columns.fit_column(
            bundle.spec, bundle.params, jnp.asarray(self.features), jnp.asarray(self.scores),
            optional(self.log_costs), jnp.asarray(self.fold), optional(self.task_ids),
            None if self.static is None else jnp.log(jnp.float32(self.static)),
            jnp.asarray(keep, jnp.float32))

    def route_val_out_of_fold(self, bundle: export.RouterBundle,
                              grow: Callable[[columns.Column], export.RouterBundle],
                              val: RoutingDataset, raw: dict[str, Any]) -> np.ndarray:
        """The candidates `raw` (a table's "tau", "model", "excluded") routed on `val` [C, V]:
        the rows of fold k by the router `grow` makes of a column fitted without them (one fit
        per fold), so no `val` label measures a column that saw it. The deployed column, fitted
        on every row, is never measured on `val`; `calib` certifies it."""
        val_fold = self.fold[self.is_val]
        choices = np.zeros((len(raw["model"]), val.n_queries), np.int64)
        for k in np.unique(val_fold):
            part = np.flatnonzero(val_fold == k)
            keep = ~self.is_val | (self.fold != k)
            router = RunRouter.of_bundle(grow(self.column(bundle, keep)))
            choices[:, part] = point_routes(router, val.subset(part), raw)[0]
        return choices


def certified_around(manifest: dict[str, Any]) -> tuple[int, int] | None:
    """(K, N): of the N τ of a manifest's certification grid that are certified, the K whose
    point routes around a model (an onboarded router's points without the model it added);
    None when nothing is certified or no point routes around any model."""
    cert, excluded = manifest["certification"]["table"], manifest["operating"].get("excluded")
    if cert is None or not excluded:
        return None
    served = [j for j, ok in zip(cert["route_to"], cert["feasible"], strict=True) if ok]
    return sum(bool(excluded[j]) for j in served), len(served)


def reopen_capped_lanes(lane_lams: Sequence[float] | np.ndarray, lam_max: float,
                        reach: float = LAMBDA_REACH) -> np.ndarray:
    """The λ(τ) table [K] with its top lanes that ended at the bound re-opened (float32).

    A lane's dual reaches `lam_max` when the trained pool could not meet its τ, and the policy
    learned there that quality could not be bought (its μ falls well short of 1). A new model may
    make those targets reachable, so the J top lanes at the bound get λ = lam_max · reach^(j/J),
    j = 1..J, rising geometrically to reach x the bound: the policy, which reads λ and whose
    μ's prior logit is log λ, then buys more quality there. These λ lie outside what the policy
    was trained on; what it does with them is measured on `val` and certified on `calib` like
    every other point. Lanes below the top run of capped ones are kept as trained.
    """
    lams = np.asarray(lane_lams, np.float32).copy()
    below = np.flatnonzero(lams < CAPPED * lam_max)  # lanes whose dual stayed under the bound
    n_top = len(lams) - (int(below[-1]) + 1 if below.size else 0)
    if n_top:
        steps = np.arange(1, n_top + 1, dtype=np.float64) / n_top
        lams[len(lams) - n_top:] = (lam_max * reach ** steps).astype(np.float32)
    return lams


def remove_model(artifact: str, model: str, out: str, *, heldout: reopen.HeldoutRows | None = None,
           overwrite: bool = False,
           platforms: Sequence[str] = export.DEFAULT_PLATFORMS) -> dict[str, Any]:
    """Write `out`: the router of `artifact` without `model` (its column dropped, so it is never
    chosen), re-measured and re-certified on the held-out rows without it. Returns the manifest.
    """
    destination.check_out(out, overwrite)
    export.check_platforms(platforms)
    bundle, rows, manifest = reopen.read_bundle(artifact)
    rows, config = _require_rows(artifact, heldout or rows), training_config(artifact, bundle)
    if model not in bundle.models:
        raise OnboardError(f"{artifact} has no model {model!r}; its models are "
                           f"{list(bundle.models)}")
    if len(bundle.models) <= 2:
        raise OnboardError(f"{artifact} routes between {len(bundle.models)} models; routing "
                           "needs at least two after the removal")
    keep = [m for m, name in enumerate(bundle.models) if name != model]
    models = tuple(bundle.models[m] for m in keep)
    new_rows = rows.replace_models(models, {n: ds.scores[:, keep] for n, ds in
                                            rows.splits().items()},
                                   {n: ds.costs[:, keep] for n, ds in rows.splits().items()})
    step = {"added": None, "removed": model, "n_train": 0}
    new = dataclasses.replace(bundle, spec=bundle.spec._replace(n_models=len(models)),
                              params=columns.take_models(bundle.params, keep), models=models,
                              prices={k: v for k, v in bundle.prices.items() if k != model})
    return _finish(new, new_rows, config, manifest, step, out, overwrite, platforms)


def remeasure(bundle: export.RouterBundle, rows: reopen.HeldoutRows,
              config: ml_collections.ConfigDict, parent_certification: dict[str, Any] | None,
              masked: Sequence[int] = (), route=None) -> tuple[dict, dict | None]:
    """The operating points of `bundle` measured on `rows.val` (policy points also routing around
    the `masked` models, `measure_points`) and, when the parent was certified, their certificate
    on `rows.calib` at the parent's τ grid and the served window (`certify.window`):
    (operating table, certification dict or None), as the export writes. `route`: how the
    candidates are routed on `val` (`measure_points`; None: by `bundle`'s router)."""
    router = RunRouter.of_bundle(bundle)
    table = measure_points(config, router, rows.val, masked, route)
    if parent_certification is None:
        return table, None
    taus = np.asarray(parent_certification["taus"], np.float64)
    (cert,) = certify_table(config, router, rows.calib, table, taus,
                            (int(config.certify.window),))
    return table, cert.to_dict()


def _finish(bundle: export.RouterBundle, rows: reopen.HeldoutRows,
            config: ml_collections.ConfigDict, parent: dict[str, Any], step: dict[str, Any],
            out: str, overwrite: bool, platforms: Sequence[str],
            masked: Sequence[int] = (), route=None) -> dict[str, Any]:
    """Re-measure (routing around `masked` too; `route`: `remeasure`'s), re-certify and write
    the changed bundle with its lineage step."""
    from proteus.evaluation.results import to_jsonable  # noqa: PLC0415 (JSON form of tables)

    table, cert = remeasure(bundle, rows, config, parent["certification"]["table"], masked,
                            route)
    step = {"parent": parent["manifest_sha256"], "parent_models": list(parent["models"]),
            **step, "heldout": {"val": rows.val.n_queries, "calib": rows.calib.n_queries},
            "policy": "reused", "c_ref": "as trained",
            "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    bundle = dataclasses.replace(bundle, operating=to_jsonable(table),
                                 certification=None if cert is None else to_jsonable(cert),
                                 heldout=rows, lineage=(*bundle.lineage, step))
    return export.write_artifact(bundle, out, overwrite=overwrite, platforms=platforms)


def _require_rows(artifact: str, rows: reopen.HeldoutRows | None) -> reopen.HeldoutRows:
    if rows is None:
        raise OnboardError(f"{artifact} carries no held-out rows (exported before they were "
                           "stored, or with heldout=False): re-export it, or pass the val and "
                           "calib rows with every model's labels as `heldout`")
    return rows


def training_config(artifact: str, bundle: export.RouterBundle) -> ml_collections.ConfigDict:
    """The training config the manifest records (its certify, operating and data settings)."""
    recorded = bundle.training.get("config")
    if not isinstance(recorded, dict):
        raise OnboardError(f"{artifact} records no training config; re-export it")
    return ml_collections.ConfigDict(recorded)


def _split_labels(artifact: str, rows: reopen.HeldoutRows,
                  labels: ModelLabels) -> tuple[dict[str, ModelLabels], ModelLabels]:
    """({"val", "calib"}: the labels of those rows, in their order; the training labels)."""
    index = {q: i for i, q in enumerate(labels.query_ids.tolist())}
    held = {}
    for name, ds in rows.splits().items():
        ids = ds.query_ids.astype(str).tolist()
        missing = [q for q in ids if q not in index]
        if missing:
            raise OnboardError(f"the labels miss {len(missing)} of the {len(ids)} held-out "
                               f"{name} queries of {artifact} (e.g. {missing[0]!r}); every "
                               "held-out query needs the new model's label (launch.onboard "
                               "--list_heldout writes them)")
        held[name] = labels.subset(np.asarray([index[q] for q in ids]))
    heldout_ids = {q for ds in rows.splits().values() for q in ds.query_ids.astype(str).tolist()}
    train = labels.subset(np.asarray([i for i, q in enumerate(labels.query_ids.tolist())
                                      if q not in heldout_ids], np.int64))
    if train.n < MIN_TRAIN:
        raise OnboardError(f"{train.n} training queries besides the held-out ones: fitting a "
                           f"model's column out of fold needs >= {MIN_TRAIN} (a few hundred "
                           "give a usable one; docs/onboard.md)")
    return held, train


def _folds(rows: reopen.HeldoutRows, train: ModelLabels,
           config: ml_collections.ConfigDict) -> np.ndarray:
    """[N] int32 fold of each training query: a query of the trained pool keeps its fold (the
    predictor that never saw it scores it out of fold); new queries are split like the pool."""
    folds = int(config.train.folds)
    pool = dict(zip(rows.pool_ids.astype(str).tolist(), rows.pool_folds.tolist(), strict=True))
    fold = np.asarray([pool.get(q, -1) for q in train.query_ids.tolist()], np.int32)
    new = np.flatnonzero(fold < 0)
    if new.size:
        parts = split_indices(train.query_ids[new], train.tasks[new].astype(str),
                              {f"fold{k}": 1.0 / folds for k in range(folds)},
                              f"{config.data.split_salt}/folds")
        for k in range(folds):
            fold[new[parts[f"fold{k}"]]] = k
    return fold


def _features(bundle: export.RouterBundle, train: ModelLabels) -> np.ndarray:
    """[N, D] float32 features of the training queries: given, or encoded with the artifact's
    encoder."""
    if train.features is not None:
        x = np.asarray(train.features, np.float32)
    elif train.texts is not None and all(str(t).strip() for t in train.texts):
        from proteus.encoders import encoder_from_config  # noqa: PLC0415 (text labels only)

        x = np.asarray(encoder_from_config(bundle.encoder).encode(
            [str(t) for t in train.texts]), np.float32)
    else:
        raise OnboardError("every training query needs its text ('query') or 'features'")
    if x.shape != (train.n, bundle.spec.feature_dim) or not np.all(np.isfinite(x)):
        raise OnboardError(f"training features must be [{train.n}, {bundle.spec.feature_dim}] "
                           f"finite floats, got {x.shape}")
    return x


def _static_cost(bundle: export.RouterBundle, rows: reopen.HeldoutRows, model: str,
                 price: tuple[float, float] | None) -> float:
    """A static per-call cost from the model's prices: the mean input and output tokens per
    query, fitted (least squares, >= 0) to the priced models' mean held-out cost, times them."""
    priced = [m for m, name in enumerate(bundle.models) if name in bundle.prices]
    if price is None or len(priced) < 2:
        raise OnboardError(f"the labels carry no cost for {model!r}: give each call's 'cost', "
                           "or the model's price (and an artifact with >= 2 priced models)")
    mean = np.concatenate([rows.val.costs, rows.calib.costs])[:, priced].mean(axis=0)
    a = np.asarray([bundle.prices[bundle.models[m]] for m in priced], np.float64)
    tokens = np.maximum(np.linalg.lstsq(a, mean, rcond=None)[0], 0.0)
    return float(np.dot(tokens, price))

