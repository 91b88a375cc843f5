"""The PROTEUS experiment: data -> splits -> vmapped training with checkpoints -> test evaluation.

Launchers (`launch/train.py`, `launch/evaluate.py`, `launch/sweep.py`) are thin wrappers around the
functions here; tests run them on shrunk configs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from experiments import validate
from experiments import workdir as workdir_lib
from experiments.configs import common
from proteus.data import check_routable, load_source
from proteus.data.dataset import RoutingDataset, split_indices, task_index, task_vocabulary
from proteus.encoders import encode_dataset
from proteus.evaluation.baselines.cluster import kmeans
from proteus.training import checkpoint, loop, networks, train
from proteus.types import Decisions

SPLITS = ("pred", "policy", "val", "calib", "test")


def load_splits(config: ml_collections.ConfigDict) -> dict[str, RoutingDataset]:
    """Load the configured source, encode its features (cached) and split it by query-id hash."""
    ds = load_source(config.data.source)
    check_routable(ds)  # one model / constant scores / equal costs: fail before any training
    ds = encode_dataset(ds, config.data.encoder, cache_dir=config.data.cache_dir or None)
    fractions = {name: float(config.data.splits[name]) for name in SPLITS}
    splits = ds.split(fractions, salt=config.data.split_salt)
    for name, part in splits.items():
        if part.n_queries == 0:
            raise ValueError(f"split {name!r} of {ds.name} is empty; adjust config.data.splits")
    return splits


def training_pool(splits: dict[str, RoutingDataset], folds: int,
                  salt: str) -> tuple[RoutingDataset, np.ndarray]:
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


def training_data(config: ml_collections.ConfigDict,
                  splits: dict[str, RoutingDataset]) -> dict[str, train.Batch]:
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


def task_names(config: ml_collections.ConfigDict,
               splits: dict[str, RoutingDataset]) -> tuple[str, ...]:
    """The task vocabulary of the calibration's task prior: the training pool's distinct tasks
    (sorted), or () when `model.task_prior` is off. Raises `validate.ConfigError` (a one-line
    launcher error) if the pool has < 2."""
    if not config.model.get("task_prior", False):
        return ()
    pred = splits["pred"]  # the pool is `pred` and `policy` (`training_pool`)
    names = task_vocabulary(np.concatenate([pred.tasks, splits["policy"].tasks]))
    if len(names) < 2:
        raise validate.ConfigError(
            f"model.task_prior=True needs a task column with >= 2 tasks in the training pool; "
            f"{pred.source or pred.name} has {len(names)}: set model.task_prior=False")
    return names


def query_tasks(setup: Setup, ds: RoutingDataset) -> jax.Array | None:
    """[N] int32 task index of each query of `ds` in the setup's vocabulary (-1 unknown), or
    None when the run has no task prior."""
    return jnp.asarray(task_index(setup.task_names, ds.tasks)) if setup.task_names else None


@dataclasses.dataclass(frozen=True)
class Setup:
    """Everything derived from a config and the data that the compiled program needs."""

    static: train.StaticConfig
    loop: loop.LoopConfig
    hparams: train.HParams  # [S] leaves
    run_keys: jax.Array  # [S] typed keys, the base of every per-step key
    init_keys: jax.Array  # [S] typed keys for parameter initialisation
    lane_taus: jax.Array  # [K]
    stats: dict[str, jax.Array]
    task_names: tuple[str, ...] = ()  # the task prior's vocabulary (spec.tasks names)


def hparams_from_config(config: ml_collections.ConfigDict, n_runs: int) -> train.HParams:
    """Broadcast the config's scalar hyperparameters (`train.<field>` for every HParams field)
    to [S] runs."""
    return train.HParams(**{name: jnp.full((n_runs,), config.train[name], jnp.float32)
                            for name in train.HParams._fields})


def run_keys_for(base_seed: int, runs) -> tuple[jax.Array, jax.Array]:
    """(init_keys, run_keys), [S] typed keys each: run r's key is fold_in(key(base_seed), r),
    split into its parameter-initialisation and per-step keys (a sweep passes r = seed)."""
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.key(base_seed), r))(
        jnp.asarray(runs, jnp.int32))
    init_keys, run_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
    return init_keys, run_keys


def make_setup(config: ml_collections.ConfigDict, splits: dict[str, RoutingDataset],
               hparams: train.HParams | None = None) -> Setup:
    """Derive the static config, lanes, data statistics and per-run keys (a pure helper)."""
    pred, policy = splits["pred"], splits["policy"]
    if config.train.folds > 1:  # cross-fitting: both roles are played by the whole pool
        pred = policy = training_pool(splits, config.train.folds, config.data.split_salt)[0]
    names = task_names(config, splits)
    spec = networks.RouterSpec(
        n_models=pred.n_models, feature_dim=int(pred.features.shape[1]),
        hidden=config.model.hidden, policy_hidden=config.model.policy_hidden,
        use_tau_input=config.model.use_tau_input, use_lambda_input=config.model.use_lambda_input,
        static_cost=config.model.static_cost, folds=config.train.folds,
        groups=config.model.groups, tasks=len(names))
    t = config.train
    static = train.StaticConfig(
        spec=spec, batch_size=t.batch_size, cost_weight=t.cost_weight,
        weight_decay=t.weight_decay, grad_clip=t.grad_clip, algo=t.algo, ppo_epochs=t.ppo_epochs,
        ppo_clip=t.ppo_clip, dual=t.dual, pid_gains=tuple(t.pid_gains), dual_ema=t.dual_ema,
        dual_avg=t.dual_avg, dual_avg_start=int(t.dual_avg_start * t.policy_steps),
        dual_lr_late=t.dual_lr_late,
        lam_max=t.lam_max, tau_jitter=t.tau_jitter)
    loop_cfg = loop.LoopConfig(chunk_size=t.chunk_size, pred_max_steps=t.pred_max_steps,
                               pred_patience=t.pred_patience, policy_steps=t.policy_steps,
                               run_batch=t.run_batch)
    for name in ("pred_max_steps", "policy_steps"):
        if getattr(loop_cfg, name) % loop_cfg.chunk_size:
            raise ValueError(f"train.{name} must be a multiple of train.chunk_size")
    hparams = hparams if hparams is not None else hparams_from_config(config, config.num_seeds)
    n_runs = int(hparams.pred_lr.shape[0])
    init_keys, run_keys = run_keys_for(config.seed, np.arange(n_runs))
    lanes = train.lane_grid(policy.scores, policy.costs, config.lanes.n,
                            lo=config.lanes.lo if config.lanes.lo >= 0 else None,
                            hi=config.lanes.hi if config.lanes.hi >= 0 else None,
                            spacing=config.lanes.spacing)
    stats = networks.data_stats(pred.features, pred.costs)
    if spec.groups:  # label-free query groups for the calibration's priors (fixed data)
        unit = pred.features / np.maximum(np.linalg.norm(pred.features, axis=1, keepdims=True),
                                          1e-12)
        stats["centroids"] = jnp.asarray(kmeans(unit, spec.groups, seed=config.seed),
                                         jnp.float32)
    return Setup(static, loop_cfg, hparams, run_keys, init_keys, lanes, stats, names)


def initial_state(setup: Setup, config: ml_collections.ConfigDict) -> train.TrainState:
    """Fresh [S]-batched state."""
    return _initial_states(setup.static, setup.init_keys, setup.stats, setup.lane_taus,
                           jnp.asarray(config.train.lam_init, jnp.float32))


@functools.partial(jax.jit, static_argnums=0)
def _initial_states(static: train.StaticConfig, init_keys: jax.Array, stats: dict[str, jax.Array],
                    lane_taus: jax.Array, lam_init: jax.Array) -> train.TrainState:
    """One compile per static config and shapes (a resume builds its restore template here too)."""
    def one(key):
        params = networks.init_params(static.spec, key, stats)
        return train.init_state(static, params, lane_taus, lam_init)

    return jax.vmap(one)(init_keys)


def train_runs(config: ml_collections.ConfigDict, workdir: str,
               splits: dict[str, RoutingDataset], setup: Setup | None = None,
               progress: bool = True, placement=None) -> tuple[train.TrainState, Setup]:
    """Train (or resume) the configured runs in `workdir`; returns the final [S] state.

    `placement` (a `proteus.training.sharding.Placement`) puts the runs and minibatches on a device
    mesh; None trains on the default device.
    """
    setup = setup or make_setup(config, splits)
    data = training_data(config, splits)
    every = config.checkpoint.every_chunks * setup.loop.chunk_size
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                   max_to_keep=config.checkpoint.max_to_keep,
                                   save_interval_steps=every)
    state, phase = initial_state(setup, config), "predictor"
    if placement is not None:  # sharding hook: runs on the mesh (a restore keeps it), data whole
        state, data = placement.runs(state), placement.replicate(data)
        setup = dataclasses.replace(setup, run_keys=placement.runs(setup.run_keys),
                                    hparams=placement.runs(setup.hparams))
    if ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state)
        phase = meta["phase"]
        logging.info("resumed from step %d (%s phase)", ckpt.latest_step(), phase)
    if jax.process_index() == 0:  # records past the restored step are written again: drop them
        workdir_lib.truncate_metrics(workdir, ckpt.latest_step())
    metrics_path = os.path.join(workdir, "metrics.jsonl")

    def on_metrics(phase_name: str, step: int, metrics: dict) -> None:
        if jax.process_index() != 0:  # sharding hook: one writer in a multi-host job
            return
        record = {"phase": phase_name, "step": step,
                  **{k: np.asarray(v).tolist() for k, v in metrics.items()}}
        with open(metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def save(phase_name: str, st: train.TrainState, phase_end: bool) -> None:
        ckpt.save(int(np.asarray(st.step)[0]), st, {"phase": phase_name, "name": config.name},
                  force=phase_end)  # every `every` steps (Orbax's interval) and at phase ends

    callbacks = loop.Callbacks(on_metrics=on_metrics, save=save)
    state = loop.fit(setup.static, setup.loop, state, setup.run_keys, setup.hparams, data,
                     phase=phase, callbacks=callbacks, progress=progress,
                     constrain=placement.constrain_batch if placement is not None else None)
    ckpt.close()
    return state, setup


def run_slice(tree: Any, run: int) -> Any:
    """Run `run` of an [S]-batched pytree."""
    return jax.tree.map(lambda x: x[run], tree)


def eval_taus(config: ml_collections.ConfigDict, lane_taus: jax.Array) -> np.ndarray:
    """The DESIGN.md default grid (tau_lo..tau_hi by tau_step) plus a wide grid over the lanes."""
    e = config.eval
    n_default = int(round((e.tau_hi - e.tau_lo) / e.tau_step)) + 1
    grid = np.round(np.linspace(e.tau_lo, e.tau_hi, n_default), 6)
    if e.wide_n > 0:
        lanes = np.asarray(lane_taus, np.float64)  # float32 rounding would duplicate grid points
        wide = np.round(np.linspace(lanes[0], lanes[-1], e.wide_n), 4)
        grid = np.union1d(grid, wide)
    return grid.astype(np.float64)


def route_split(setup: Setup, state: train.TrainState, run: int, ds: RoutingDataset,
                taus: np.ndarray) -> Decisions:
    """Deterministic PROTEUS decisions of run `run` on `ds` at every τ: model [T, N], mu [T, N]."""
    one = run_slice(state, run)
    return loop.route_grid(setup.static.spec, one.params, one.lane_taus, one.duals.lam_avg,
                           jnp.asarray(ds.features, jnp.float32), jnp.asarray(taus, jnp.float32),
                           query_tasks(setup, ds))


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a workdir's run stands under: `config.json` (written by the main job) with the
    changes later jobs were allowed (`experiments.workdir.recorded_config`)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir!r} a PROTEUS training workdir?")
    config = ml_collections.ConfigDict(
        workdir_lib.recorded_config(workdir, common.base_config().to_dict()))
    config.lock()
    return config


def load_trained(workdir: str, splits: dict[str, RoutingDataset] | None = None,
                 ) -> tuple[ml_collections.ConfigDict, dict[str, RoutingDataset], Setup,
                            train.TrainState]:
    """Restore (config, splits, setup, final state) from a finished training workdir."""
    config = load_config(workdir)
    splits = splits or load_splits(config)
    setup = make_setup(config, splits)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        state, meta = ckpt.restore(initial_state(setup, config))
    finally:
        ckpt.close()
    end = int(np.asarray(state.pred_steps)[0]) + setup.loop.policy_steps
    if meta.get("phase") != "policy" or int(np.asarray(state.step)[0]) < end:
        raise ValueError(f"training in {workdir!r} has not finished (step "
                         f"{int(np.asarray(state.step)[0])}, phase {meta.get('phase')}); "
                         "run launch.train again to resume it")
    return config, splits, setup, state
