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


AUTO = "auto"
AUTO_RECORD = "auto"  # the section of a resolved config that records each choice and evidence
SPLIT_NAMES = ("pred", "policy", "val", "calib", "test")  # `data.splits`, in cut order


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _parse_splits(text: str) -> dict[str, float]:
    """"0.35,0.25,0.1,0.1,0.2" -> {"pred": 0.35, ..., "test": 0.2} (the split order)."""
    parts = [float(p) for p in text.split(",")]
    if len(parts) != len(SPLIT_NAMES):
        raise ValueError(f"expected {len(SPLIT_NAMES)} fractions ({','.join(SPLIT_NAMES)}), "
                         f"got {text!r}")
    return dict(zip(SPLIT_NAMES, parts, strict=True))


# The settings a config may leave to `proteus.pipeline.auto.resolve` by giving the value "auto",
# each with the parser of the string a command line gives it there (a field that holds "auto"
# is a string field, so `--config.model.task_prior=true` arrives as "true").
AUTO_SETTINGS = {
    "data.encoder": str,
    "model.task_prior": _parse_bool,
    "eval.tau_lo": float,
    "eval.tau_hi": float,
    "data.splits": _parse_splits,
    "train.batch_size": int,
}


def get_dotted(config: ml_collections.ConfigDict | Mapping[str, Any], name: str) -> Any:
    """config["a"]["b"] for name "a.b"; None where a part is missing."""
    node: Any = config
    for part in name.split("."):
        if not isinstance(node, (Mapping, ml_collections.ConfigDict)) or part not in node:
            return None
        node = node[part]
    return node


def auto_settings(config: ml_collections.ConfigDict | Mapping[str, Any]) -> tuple[str, ...]:
    """The `AUTO_SETTINGS` that `config` leaves to `auto.resolve` (value "auto"), in order."""
    return tuple(name for name in AUTO_SETTINGS if get_dotted(config, name) == AUTO)


def concrete_value(name: str, value: Any) -> Any:
    """A concrete value of auto-able setting `name`: its command-line string form parsed
    ("true" -> True, "0.8" -> 0.8), any other value as is.

    Raises:
      ConfigError: a string that does not parse, naming the setting.
    """
    parse = AUTO_SETTINGS[name]
    if not isinstance(value, str) or parse is str or value == AUTO:
        return value
    try:
        return parse(value)
    except ValueError as e:
        raise ConfigError(f"{name}={value!r}: {e}") from None


def require_concrete(config: ml_collections.ConfigDict) -> None:
    """Raise `ConfigError` if `config` leaves a setting to `auto.resolve`: the library reads
    concrete values only, so an "auto" is resolved once, before data is split or runs built."""
    names = auto_settings(config)
    if names:
        raise ConfigError(
            f"settings {list(names)} are 'auto': resolve them first with "
            "proteus.pipeline.resolve(config) (the launchers do)")
