"""The one config schema: type, range or enum of every field, checked before anything is written.

`validate(config)` is called by every launcher and at the start of every job
(`experiments.workdir.prepare`), so a nonsense setting (`train.batch_size=0`, `train.algo=dqn`,
a NaN learning rate, `certify.delta=2`, steps that are not a multiple of `train.chunk_size`, ...)
stops the run up front with a message naming the setting, instead of training to NaN or dying
later in a ZeroDivisionError that names nothing. All problems are reported at once.

`SCHEMA` holds one rule per field of `experiments.configs.common.base_config()` (a test keeps the
two in step); `_cross_checks` holds the rules that relate fields. A field of the config that
`SCHEMA` does not know is logged as a warning, not refused: a config file may carry extras.
A setting of `proteus.pipeline.config.AUTO_SETTINGS` may also hold "auto" (decided by
`proteus.pipeline.resolve`, which records its choices under `auto`, a section the schema does
not check).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
from absl import logging

from proteus.data import check_spec
from proteus.encoders import get_encoder
from proteus.operating.bounds import METHODS
from proteus.pipeline.config import (
    AUTO,
    AUTO_RECORD,
    AUTO_SETTINGS,
    ConfigError,
    chunk_problems,
)

Check = Callable[[Any], str | None]  # value -> what is wrong with it, or None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    """An int (not a bool) in [lo, hi]."""
    def check(v):
        if not isinstance(v, int) or isinstance(v, bool):
            return f"expected an integer, got {type(v).__name__}"
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return f"expected an integer in [{lo}, {hi if hi is not None else 'inf'}]"
        return None
    return check


def real(lo: float = -math.inf, hi: float = math.inf, lo_open: bool = False,
         hi_open: bool = False) -> Check:
    """A finite number in the interval (open ends where asked); NaN and inf are refused."""
    def check(v):
        if not _is_number(v) or not math.isfinite(v):
            return f"expected a finite number, got {v!r}"
        low_bad = v <= lo if lo_open else v < lo
        high_bad = v >= hi if hi_open else v > hi
        if low_bad or high_bad:
            return (f"expected a number in {'(' if lo_open else '['}{lo}, {hi}"
                    f"{')' if hi_open else ']'}")
        return None
    return check


def boolean() -> Check:
    return lambda v: None if isinstance(v, bool) else f"expected true/false, got {v!r}"


def text(nonempty: bool = False) -> Check:
    def check(v):
        if not isinstance(v, str):
            return f"expected a string, got {type(v).__name__}"
        return "expected a non-empty string" if nonempty and not v.strip() else None
    return check


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"expected one of {list(choices)}"


def reals(n: int, lo: float = -math.inf) -> Check:
    """A list or tuple of `n` finite numbers >= lo."""
    item = real(lo)

    def check(v):
        if not isinstance(v, (list, tuple)) or len(v) != n:
            return f"expected {n} numbers, got {v!r}"
        bad = [e for e in map(item, v) if e]
        return bad[0] if bad else None
    return check


def _by(parse: Callable[[str], Any]) -> Check:
    """A string that `parse` accepts (a data source or encoder spec); its error is the message."""
    def check(v):
        if not isinstance(v, str):
            return f"expected a string, got {type(v).__name__}"
        try:
            parse(v)
        except (ValueError, TypeError, FileNotFoundError) as e:  # a missing pickle is named
            return str(e)
        return None
    return check


def model_list(value: str) -> None:
    """`data.exclude_models`: "" or comma-separated, distinct, non-empty model names."""
    names = [n.strip() for n in value.split(",")] if value.strip() else []
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"expected distinct comma-separated model names, got {value!r}")


_LR = real(0.0, lo_open=True)  # a zero or negative step size trains nothing or diverges
_FRACTION = real(0.0, 1.0, lo_open=True)  # every split is used: an empty one is an error later
_STEPS = integer(1)

SCHEMA: dict[str, Check] = {
    "name": text(nonempty=True),
    "seed": integer(0),
    "num_seeds": integer(1),
    "data.source": _by(check_spec),  # also enforces the pickle opt-in before anything runs
    "data.encoder": _by(get_encoder),
    "data.cache_dir": text(),
    "data.split_salt": text(),
    "data.exclude_models": _by(model_list),  # names checked against the source when loaded
    **{f"data.splits.{s}": _FRACTION for s in ("pred", "policy", "val", "calib", "test")},
    "model.hidden": integer(1),
    "model.policy_hidden": integer(1),
    "model.use_tau_input": boolean(),
    "model.use_lambda_input": boolean(),
    "model.static_cost": boolean(),
    "model.groups": integer(0),  # 0: no group priors
    "model.task_prior": boolean(),
    "lanes.n": integer(2),  # the lanes' λ table is interpolated: it needs two ends
    "lanes.lo": real(hi=1.0),  # < 0: automatic (see common.py)
    "lanes.hi": real(hi=1.0),
    "lanes.spacing": one_of("log1m", "linear"),
    "train.folds": integer(1),  # 1: the two-split scheme; >= 2: cross-fitting
    "train.batch_size": integer(1),
    "train.pred_lr": _LR,
    "train.policy_lr": _LR,
    "train.ent_coef": real(0.0),
    "train.dual_lr": real(0.0),  # 0: fixed λ (an ablation), allowed
    "train.margin": real(-0.5, 0.5),
    "train.lam_init": real(0.0),
    "train.lam_max": real(0.0, lo_open=True),
    "train.algo": one_of("reinforce", "ppo"),
    "train.ppo_epochs": integer(1),
    "train.ppo_clip": real(0.0, 1.0, lo_open=True, hi_open=True),
    "train.dual": one_of("plain", "pid"),
    "train.pid_gains": reals(3, lo=0.0),
    "train.dual_ema": real(0.0, 1.0, hi_open=True),
    "train.dual_avg": real(0.0, 1.0, hi_open=True),
    "train.dual_avg_start": real(0.0, 1.0),
    "train.dual_lr_late": real(0.0),
    "train.tau_jitter": real(0.0, 0.5),
    "train.cost_weight": real(0.0),
    "train.weight_decay": real(0.0),
    "train.grad_clip": real(0.0, lo_open=True),
    "train.chunk_size": _STEPS,
    "train.pred_max_steps": _STEPS,
    "train.pred_patience": integer(1),
    "train.policy_steps": _STEPS,
    "train.run_batch": integer(0),
    "eval.tau_lo": real(0.0, 1.0),
    "eval.tau_hi": real(0.0, 1.0),
    "eval.tau_step": real(0.0, 1.0, lo_open=True),
    "eval.wide_n": integer(0),
    "eval.aiq_step": real(0.0, 0.5),
    "certify.delta": real(0.0, 1.0, lo_open=True, hi_open=True),
    "certify.window": integer(0),
    "certify.tolerance": real(0.0, 1.0, hi_open=True),
    "certify.n_points": integer(1),
    "certify.method": one_of("auto", *METHODS),
    "certify.fallback": one_of("best_effort", "refuse"),
    "operating.fixed_models": boolean(),
    "operating.margin_z": real(0.0, 10.0),
    "operating.credit_z": real(0.0, 10.0),
    "checkpoint.max_to_keep": integer(1),
    "checkpoint.every_chunks": integer(1),
}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"batch_size": 8}} -> {"train.batch_size": 8} (ConfigDicts and dicts alike)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, (Mapping, ml_collections.ConfigDict)):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _cross_checks(flat: Mapping[str, Any]) -> list[str]:
    """Rules that relate fields; each message names the settings involved."""
    problems = []
    get = flat.get
    problems += chunk_problems(flat)  # the library's own rule (`proteus.pipeline.config`)
    splits = [get(f"data.splits.{s}") for s in ("pred", "policy", "val", "calib", "test")]
    if all(_is_number(f) for f in splits) and abs(sum(splits) - 1.0) > 1e-6:
        problems.append(f"data.splits: fractions must sum to 1, got {sum(splits):.6g}")
    lo, hi = get("lanes.lo"), get("lanes.hi")
    if _is_number(lo) and _is_number(hi) and lo >= 0 and hi >= 0 and not lo < hi:
        problems.append(f"lanes.lo={lo}, lanes.hi={hi}: need lanes.lo < lanes.hi")
    if _is_number(get("eval.tau_lo")) and _is_number(get("eval.tau_hi")) \
            and get("eval.tau_lo") > get("eval.tau_hi"):
        problems.append(f"eval.tau_lo={get('eval.tau_lo')} > eval.tau_hi={get('eval.tau_hi')}")
    if isinstance(get("model.groups"), int) and get("model.groups") > 0 \
            and get("train.folds") == 1:
        problems.append(f"model.groups={get('model.groups')} needs cross-fitting (train.folds "
                        ">= 2): the group priors are computed out of fold; set model.groups=0")
    if get("model.task_prior") is True and get("train.folds") == 1:
        problems.append("model.task_prior=True needs cross-fitting (train.folds >= 2): the task "
                        "priors are computed out of fold; set model.task_prior=False")
    if get("certify.window") == 0 and _is_number(get("certify.tolerance")) \
            and get("certify.tolerance") > 0:
        problems.append(f"certify.tolerance={get('certify.tolerance')} needs a window "
                        "(certify.window >= 1): the population promise has no tolerance")
    lam, lam_max = get("train.lam_init"), get("train.lam_max")
    if _is_number(lam) and _is_number(lam_max) and lam > lam_max:
        problems.append(f"train.lam_init={lam} > train.lam_max={lam_max}")
    return problems


def problems(config: Mapping[str, Any] | ml_collections.ConfigDict) -> list[str]:
    """Every violation of `SCHEMA` and the cross-field rules, as "setting=value: what" lines."""
    flat = flatten(config)
    out = []
    for name, check in SCHEMA.items():
        if name in flat:  # an absent field is the config file's business (ConfigDict is locked)
            if name in AUTO_SETTINGS and flat[name] == AUTO:
                continue  # decided by `proteus.pipeline.resolve` before anything runs
            error = check(flat[name])
            if error:
                out.append(f"{name}={flat[name]!r}: {error}")
    # A cross rule about a field already reported bad would only repeat it.
    bad = {line.split("=", 1)[0] for line in out}
    return out + [p for p in _cross_checks(flat) if p.split("=", 1)[0] not in bad]


def validate(config: Mapping[str, Any] | ml_collections.ConfigDict) -> None:
    """Raise `ConfigError` naming every bad setting; warn about fields the schema does not know.

    Reads nothing but the config (a data source is parsed, and its pickle opt-in checked, not
    loaded), so it is cheap enough to run at the top of every entry point.
    """
    unknown = sorted(name for name, value in flatten(config).items() if name not in SCHEMA
                     and not (name in AUTO_SETTINGS and value == AUTO)  # "data.splits"
                     and not name.startswith(f"{AUTO_RECORD}."))  # the choices' record
    if unknown:
        logging.warning("config fields without a validation rule (add them to "
                        "experiments/validate.py): %s", unknown)
    found = problems(config)
    if found:
        lines = "\n  ".join(found)
        raise ConfigError(f"invalid config ({len(found)} setting(s)):\n  {lines}")


def validate_grid(grid: Mapping[str, Any] | ml_collections.ConfigDict,
                  swept: tuple[str, ...]) -> None:
    """Check a sweep grid's values with the same rules as the config fields they replace.

    Args:
      grid: the `--sweep.*` ConfigDict (`experiments.sweep.default_grid`).
      swept: the names of the swept `train.*` fields (`experiments.sweep.SWEPT`).

    Raises:
      ConfigError: naming every bad `sweep.<name>` value.
    """
    found = []
    rules = [("seeds", integer(1))] if "seeds" in grid else []
    for name, rule in rules:
        error = rule(grid[name])
        if error:
            found.append(f"sweep.{name}={grid[name]!r}: {error}")
    fields = [(name, f"train.{name}") for name in swept] + [("lanes", "lanes.n")]
    for name, field in fields:
        for value in tuple(grid.get(name, ()) or ()):
            error = SCHEMA[field](value)
            if error:
                found.append(f"sweep.{name} value {value!r} (for {field}): {error}")
    if found:
        lines = "\n  ".join(found)
        raise ConfigError(f"invalid sweep grid ({len(found)} value(s)):\n  {lines}")
