"""What the library reads from a training config: one pure helper per settings object.

The config (`experiments/configs/common.py:base_config`, one comment per field) is the single
source of every default; `experiments/validate.py` holds its schema. The settings objects of the
training code (`StaticConfig`, `DualSettings`, `LoopConfig`, `RouterSpec`, `HParams`) have no
defaults of their own: they are built here, and only here, from a config. Nothing here mutates
the config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from proteus.training import duals, loop, networks, train


class ConfigError(ValueError):
    """A config that breaks the schema; the message names every bad setting and its value."""


STEP_FIELDS = ("train.pred_max_steps", "train.policy_steps")  # run in whole chunks


def chunk_problems(flat: Mapping[str, Any]) -> list[str]:
    """The host loop runs whole compiled chunks, so each phase's step count must be a multiple
    of `train.chunk_size`: one "name=value: ..." line per violation (values of the wrong type
    are the schema's business and are skipped).

    Args:
      flat: the config flattened to dotted names ({"train.chunk_size": 100, ...}).
    """
    chunk = flat.get("train.chunk_size")
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk <= 0:
        return []
    return [f"{name}={flat[name]}: must be a multiple of train.chunk_size={chunk}"
            for name in STEP_FIELDS
            if isinstance(flat.get(name), int) and flat[name] % chunk]


def router_spec(config: ml_collections.ConfigDict, n_models: int, feature_dim: int,
                n_tasks: int) -> networks.RouterSpec:
    """The networks' shapes: `model.*` and `train.folds`, with the data's M, D and task count."""
    m = config.model
    return networks.RouterSpec(
        n_models=n_models, feature_dim=feature_dim, hidden=m.hidden,
        policy_hidden=m.policy_hidden, use_tau_input=m.use_tau_input,
        use_lambda_input=m.use_lambda_input, static_cost=m.static_cost,
        folds=config.train.folds, groups=m.groups, tasks=n_tasks)


def dual_settings(config: ml_collections.ConfigDict) -> duals.DualSettings:
    """The duals' static settings; `train.dual_avg_start` is a fraction of the policy phase."""
    t = config.train
    return duals.DualSettings(
        kind=t.dual, pid_gains=tuple(t.pid_gains), ema=t.dual_ema, avg=t.dual_avg,
        avg_start=int(t.dual_avg_start * t.policy_steps), lr_late=t.dual_lr_late,
        lam_max=t.lam_max)


def static_config(config: ml_collections.ConfigDict,
                  spec: networks.RouterSpec) -> train.StaticConfig:
    """The compiled program's static settings (`train.*`) around the networks `spec`."""
    t = config.train
    return train.StaticConfig(
        spec=spec, batch_size=t.batch_size, cost_weight=t.cost_weight,
        weight_decay=t.weight_decay, grad_clip=t.grad_clip, algo=t.algo, ppo_epochs=t.ppo_epochs,
        ppo_clip=t.ppo_clip, duals=dual_settings(config), tau_jitter=t.tau_jitter)


def loop_config(config: ml_collections.ConfigDict) -> loop.LoopConfig:
    """The host loop's settings.

    Raises:
      ConfigError: a phase's steps are not a multiple of `train.chunk_size` (`chunk_problems`).
    """
    t = config.train
    problems = chunk_problems({"train.chunk_size": t.chunk_size,
                               **{name: t[name.split(".")[1]] for name in STEP_FIELDS}})
    if problems:
        raise ConfigError("; ".join(problems))
    return loop.LoopConfig(chunk_size=t.chunk_size, pred_max_steps=t.pred_max_steps,
                           pred_patience=t.pred_patience, policy_steps=t.policy_steps,
                           run_batch=t.run_batch)


def hparams_from_config(config: ml_collections.ConfigDict, n_runs: int) -> train.HParams:
    """The config's scalar hyperparameters (`train.<field>` for every HParams field), broadcast
    to [S] = [n_runs] runs."""
    return train.HParams(**{name: jnp.full((n_runs,), config.train[name], jnp.float32)
                            for name in train.HParams._fields})


def run_keys_for(base_seed: int, runs: Sequence[int] | np.ndarray,
                 ) -> tuple[jax.Array, jax.Array]:
    """(init_keys, run_keys), [S] typed keys each: run r's key is fold_in(key(base_seed), r),
    split into its parameter-initialisation and per-step keys (a sweep passes r = seed)."""
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.key(base_seed), r))(
        jnp.asarray(runs, jnp.int32))
    init_keys, run_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
    return init_keys, run_keys
