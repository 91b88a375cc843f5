"""From a config and data to what the compiled training program needs (pure; no workdir).

`load_splits` reads and encodes the configured source and splits it by query-id hash;
`make_setup` derives the static settings, per-run keys and data statistics; `initial_state`
builds the fresh [S]-run `TrainState`. The lanes' τ are derived once, from the `policy` labels,
into the fresh state: after that `TrainState.lane_taus` (checkpointed with the run) is the one
copy every reader takes them from.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from proteus.data import check_routable, load_source
from proteus.data.dataset import RoutingDataset, split_indices, task_index, task_vocabulary
from proteus.encoders import encode_dataset
from proteus.evaluation.baselines.cluster import kmeans
from proteus.pipeline import config as config_lib
from proteus.training import loop, networks, train

SPLITS = config_lib.SPLIT_NAMES
Splits = dict[str, RoutingDataset]  # split name (`SPLITS`) -> its rows


def load_splits(config: ml_collections.ConfigDict, progress: bool = True) -> Splits:
    """Load the configured source, encode its features (cached; a progress bar while encoding
    unless `progress` is False), drop the models `data.exclude_models` names and split it by
    query-id hash (the rows do not depend on the models kept, so a run without a model has the
    same splits as one with it)."""
    config_lib.require_concrete(config)
    ds = load_source(config.data.source)
    check_routable(ds)  # one model / constant scores / equal costs: fail before any training
    return encode_and_split(ds, config, progress)


def encode_and_split(ds: RoutingDataset, config: ml_collections.ConfigDict,
                     progress: bool = True) -> Splits:
    """`ds` (as loaded) encoded with `config.data.encoder` (cached; `progress`: a bar while
    encoding) and split by query-id hash with `config.data.splits` and
    `config.data.split_salt`, less the models `data.exclude_models` names."""
    ds = encode_dataset(ds, config.data.encoder, cache_dir=config.data.cache_dir or None,
                        progress=progress)
    excluded = excluded_models(config)
    if excluded:  # after encoding: the features (cached by the data's fingerprint) are shared
        ds = ds.without_models(excluded)
        check_routable(ds)
    fractions = {name: float(config.data.splits[name]) for name in SPLITS}
    splits = ds.split(fractions, salt=config.data.split_salt)
    for name, part in splits.items():
        if part.n_queries == 0:
            raise ValueError(f"split {name!r} of {ds.name} is empty; adjust config.data.splits")
    return splits


def excluded_models(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The model names `data.exclude_models` (comma-separated) drops from the source."""
    return tuple(n.strip() for n in config.data.exclude_models.split(",") if n.strip())


def training_pool(splits: Splits, folds: int, salt: str) -> tuple[RoutingDataset, np.ndarray]:
    """The cross-fitting pool (`pred` and `policy` together) and each query's fold [N] int32.

    Folds are assigned by a hash of the query id, stratified by task, like the splits themselves.
    """
    pred, policy = splits["pred"], splits["policy"]
    cat = lambda a, b: None if a is None else np.concatenate([a, b])
    pool = dataclasses.replace(pred, **{f: cat(getattr(pred, f), getattr(policy, f)) for f in (
        "scores", "costs", "query_ids", "tasks", "texts", "features")})
    parts = split_indices(pool.query_ids, pool.tasks, {f"fold{k}": 1.0 / folds
                                                       for k in range(folds)}, f"{salt}/folds")
    fold = np.zeros(pool.n_queries, np.int32)
    for k in range(folds):
        fold[parts[f"fold{k}"]] = k
    return pool, fold


def training_data(config: ml_collections.ConfigDict, splits: Splits) -> dict[str, train.Batch]:
    """What each phase trains on: {"pred", "val", "policy"} train.Batch (whole splits).

    Cross-fitting (train.folds > 1): every phase sees the whole pool with its fold ids (the fold
    predictors fit and early-stop on complementary folds; the policy learns on out-of-fold
    outputs). One predictor: `pred` fits it, `val` early-stops it, `policy` trains the policy.
    """
    if config.train.folds > 1:
        pool, fold = training_pool(splits, config.train.folds, config.data.split_salt)
        names = task_names(config, splits)
        data = train.Batch.from_dataset(pool, fold, task_index(names, pool.tasks) if names
                                        else None)
        return {"pred": data, "val": data, "policy": data}
    return {name: train.Batch.from_dataset(splits[name]) for name in ("pred", "policy", "val")}


def task_names(config: ml_collections.ConfigDict, splits: Splits) -> tuple[str, ...]:
    """The task vocabulary of the calibration's task prior: the training pool's distinct tasks
    (sorted), or () when `model.task_prior` is off. Raises `ConfigError` (a one-line launcher
    error) if the pool has < 2."""
    if not config.model.task_prior:
        return ()
    pred = splits["pred"]  # the pool is `pred` and `policy` (`training_pool`)
    names = task_vocabulary(np.concatenate([pred.tasks, splits["policy"].tasks]))
    if len(names) < 2:
        raise config_lib.ConfigError(
            f"model.task_prior=True needs a task column with >= 2 tasks in the training pool; "
            f"{pred.source or pred.name} has {len(names)}: set model.task_prior=False")
    return names


class InitInputs(NamedTuple):
    """What `initial_state` builds a fresh run from besides its key (derived from the data).

    Read only by `initial_state`: a trained run's lanes are `TrainState.lane_taus`.
    """

    stats: dict[str, jax.Array]  # `networks.data_stats` (+ k-means centroids with groups)
    lane_taus: jax.Array  # [K] the lanes' τ (`train.lane_grid` on the policy labels)
    lam_init: jax.Array  # [] every lane's initial λ


@dataclasses.dataclass(frozen=True)
class Setup:
    """Everything derived from a config and the data that the compiled program needs."""

    static: train.StaticConfig
    loop: loop.LoopConfig
    hparams: train.HParams  # [S] leaves
    run_keys: jax.Array  # [S] typed keys, the base of every per-step key
    init_keys: jax.Array  # [S] typed keys for parameter initialisation
    init: InitInputs
    task_names: tuple[str, ...] = ()  # the task prior's vocabulary (spec.tasks names)


def make_setup(config: ml_collections.ConfigDict, splits: Splits,
               hparams: train.HParams | None = None) -> Setup:
    """Derive the static config, lanes, data statistics and per-run keys (a pure helper).

    hparams: [S]-run hyperparameters (a sweep's grid); None: the config's, for `num_seeds` runs.
    """
    config_lib.require_concrete(config)
    pred, policy = splits["pred"], splits["policy"]
    if config.train.folds > 1:  # cross-fitting: both roles are played by the whole pool
        pred = policy = training_pool(splits, config.train.folds, config.data.split_salt)[0]
    names = task_names(config, splits)
    spec = config_lib.router_spec(config, pred.n_models, int(pred.features.shape[1]), len(names))
    loop_cfg = config_lib.loop_config(config)
    hparams = hparams if hparams is not None else config_lib.hparams_from_config(
        config, config.num_seeds)
    init_keys, run_keys = config_lib.run_keys_for(config.seed,
                                                  np.arange(int(hparams.pred_lr.shape[0])))
    lanes = config.lanes
    lane_taus = train.lane_grid(policy.scores, policy.costs, lanes.n, spacing=lanes.spacing,
                                lo=lanes.lo if lanes.lo >= 0 else None,
                                hi=lanes.hi if lanes.hi >= 0 else None)
    stats = networks.data_stats(pred.features, pred.costs)
    if spec.groups:  # label-free query groups for the calibration's priors (fixed data)
        unit = pred.features / np.maximum(np.linalg.norm(pred.features, axis=1, keepdims=True),
                                          1e-12)
        stats["centroids"] = jnp.asarray(kmeans(unit, spec.groups, seed=config.seed),
                                         jnp.float32)
    init = InitInputs(stats, lane_taus, jnp.asarray(config.train.lam_init, jnp.float32))
    return Setup(config_lib.static_config(config, spec), loop_cfg, hparams, run_keys, init_keys,
                 init, names)


def initial_state(setup: Setup) -> train.TrainState:
    """Fresh [S]-batched state (also the structure a checkpoint is restored into)."""
    return _initial_states(setup.static, setup.init_keys, *setup.init)


def state_template(setup: Setup) -> train.TrainState:
    """What `initial_state(setup)` would be, as shapes, dtypes and placement only
    (`jax.ShapeDtypeStruct` leaves, [S]-batched, on the default device): the structure a
    checkpoint is restored into, with nothing compiled or computed (the fresh state's program
    took ~2-3 s on CPU to build a template whose values a restore overwrites)."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                        jax.eval_shape(lambda: initial_state(setup)))


@functools.partial(jax.jit, static_argnums=0)
def _initial_states(static: train.StaticConfig, init_keys: jax.Array, stats: dict[str, jax.Array],
                    lane_taus: jax.Array, lam_init: jax.Array) -> train.TrainState:
    """One compile per static config and shapes (a resume builds its restore template here too)."""
    def one(key):
        params = networks.init_params(static.spec, key, stats)
        return train.init_state(static, params, lane_taus, lam_init)

    return jax.vmap(one)(init_keys)


def query_tasks(setup: Setup, ds: RoutingDataset) -> jax.Array | None:
    """[N] int32 task index of each query of `ds` in the setup's vocabulary (-1 unknown), or
    None when the run has no task prior."""
    return jnp.asarray(task_index(setup.task_names, ds.tasks)) if setup.task_names else None
