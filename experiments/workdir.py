"""A training workdir's guards: one job at a time, one config per run, metrics without repeats.

`prepare(config, workdir)` runs at the start of every job, before anything is written:

  1. the config is validated (`experiments.validate`);
  2. the workdir is locked (`fcntl.flock` on `WORKDIR/.lock`, held until the process exits or
     `release`), so a second run on the same workdir stops with a message naming the holder
     instead of interleaving checkpoints and metrics;
  3. the config is compared with the one the workdir was started with (`config.json`). When the
     workdir holds training state (checkpoints or results), any difference is refused with the
     differing fields listed, unless those fields are allowed (`allow_change`, the launchers'
     `--allow_config_change=field1,field2`); an allowed change is logged and appended to
     `config_changes.jsonl`, and `config.json` keeps the config the run started with. The run's
     config is then `config.json` with those changes (`recorded_config`): later jobs compare with
     it and `runs.load_config` returns it. A workdir with nothing to resume simply records
     the new config;
  4. a finished workdir whose checkpoints are gone (results.json but no checkpoint step) is
     refused: training would start over and overwrite its results. `allow_retrain` (the
     launchers' `--allow_retrain`) accepts it, with a warning.

`truncate_metrics(workdir, step)` runs after a restore: records past the restored step were
written by the interrupted run and will be written again, so they are dropped.

A job may call `prepare` again in the same process (a launcher, then the job it starts): the
lock is re-entrant per process and a config already accepted for the workdir passes.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections
from absl import logging

from experiments import outputs, validate
from proteus.data import DataValidationError, canonical_spec
from proteus.training.checkpoint import CheckpointError

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
CHANGES_FILE = "config_changes.jsonl"
METRICS_FILE = "metrics.jsonl"
# Fields that say where things are kept or how runs are executed, not what is trained: they may
# differ on resume (a run started on a GPU may resume on a CPU).
HOST_ONLY = frozenset({"data.cache_dir", "train.run_batch"})
# Settings added after workdirs were recorded without them, with the value every run before them
# ran with: a recorded config that lacks one ran as this value says (the library reads every
# setting from the config, so this is the one place such a value is written).
ADDED_SETTINGS = {"model.task_prior": False, "eval.aiq_step": 0.0, "certify.window": 0,
                  "certify.tolerance": 0.0, "data.exclude_models": ""}

_HELD: dict[str, int] = {}  # abs workdir -> fd holding its lock (this process)
_ACCEPTED: dict[str, str] = {}  # abs workdir -> JSON of the config accepted for it


class WorkdirError(RuntimeError):
    """A workdir that is in use, or that holds a run of a different config."""


# What a launcher reports as one line (the message names the setting, file, field or step), not
# as a traceback: the input or the workdir is at fault, not the program.
USER_ERRORS = (validate.ConfigError, WorkdirError, DataValidationError, CheckpointError,
               outputs.OutputDirError)


def prepare(config: ml_collections.ConfigDict | Mapping[str, Any], workdir: str,
            allow_change: Iterable[str] = (), allow_retrain: bool = False) -> None:
    """Validate, lock, and check or record the config of `workdir` (see the module docstring).

    Raises:
      validate.ConfigError: a bad setting (nothing is written, not even the workdir).
      outputs.OutputDirError: `workdir` is a file or cannot be created.
      WorkdirError: another process holds the workdir, its recorded config differs in fields
        not listed in `allow_change`, or it has results but no checkpoints (unless
        `allow_retrain`).
    """
    validate.validate(config)
    path = os.path.abspath(workdir)
    current = _as_json(config)
    if _ACCEPTED.get(path) == json.dumps(current, sort_keys=True):
        return
    outputs.make_dir(path)
    lock(path)
    recorded_path = os.path.join(path, CONFIG_FILE)
    if os.path.exists(recorded_path) and has_state(path):
        recorded = recorded_config(path, {})  # a change allowed once stays allowed
        _check_changes(path, recorded, current, set(allow_change))
        _check_retrain(path, allow_retrain)
    else:
        _write_json(recorded_path, current)
    _ACCEPTED[path] = json.dumps(current, sort_keys=True)


def _check_changes(path: str, recorded: Mapping[str, Any], current: Mapping[str, Any],
                   allowed: set[str]) -> None:
    """Refuse a resume under changed fields unless allowed; log and record allowed ones."""
    diff = config_diff(recorded, current)
    refused = {k: v for k, v in diff.items() if k not in allowed and k not in HOST_ONLY}
    if refused:
        lines = "\n  ".join(f"{k}: recorded {a!r}, now {b!r}" for k, (a, b) in refused.items())
        raise WorkdirError(
            f"{path} holds a run started with a different config ({os.path.join(path, CONFIG_FILE)}"
            f"); resuming would mix two configs. Differing fields:\n  {lines}\nUse a new "
            f"--workdir, or accept the change with --allow_config_change={','.join(refused)}")
    if diff:
        # a host-only change (where features are cached, how runs are batched) is routine
        log = logging.warning if set(diff) - HOST_ONLY else logging.info
        log("%s: resuming with changed config fields %s (allowed)", path, sorted(diff))
        entry = {"time": _now(), "changes": {k: list(v) for k, v in diff.items()}}
        with open(os.path.join(path, CHANGES_FILE), "a") as f:
            f.write(json.dumps(entry) + "\n")


def _check_retrain(path: str, allowed: bool) -> None:
    """Refuse to retrain over the results of a workdir whose checkpoints are gone."""
    if has_checkpoints(path) or not os.path.exists(os.path.join(path, "results.json")):
        return
    if not allowed:
        raise WorkdirError(
            f"{path} holds results.json but no checkpoints ({os.path.join(path, 'checkpoints')} "
            "is missing or empty): running it would train from scratch and overwrite those "
            "results. Restore the checkpoints, use a new --workdir, or pass --allow_retrain")
    logging.warning("%s: no checkpoints; training from scratch over its results.json "
                    "(--allow_retrain)", path)


def recorded_config(workdir: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The config a workdir's run now stands under, as a nested dict.

    That is `config.json` (the config it started with) with the allowed changes of
    `config_changes.jsonl` applied in order, then each HOST_ONLY field it lacks taken from
    `defaults` and each `ADDED_SETTINGS` field it lacks set to the value runs had before it: a
    workdir written before such a setting existed has no value for it, and that value is what the
    run did. Other fields it lacks stay missing.

    Raises:
      FileNotFoundError: the workdir has no config.json.
    """
    with open(os.path.join(workdir, CONFIG_FILE)) as f:
        config = json.load(f)
    changes_path = os.path.join(workdir, CHANGES_FILE)
    if os.path.exists(changes_path):
        with open(changes_path) as f:
            for line in filter(str.strip, f):
                for key, (_, new) in json.loads(line)["changes"].items():
                    _set_dotted(config, key, new)
    flat_defaults = validate.flatten(defaults)
    flat = validate.flatten(config)
    for key in sorted(HOST_ONLY):
        if key not in flat and key in flat_defaults:
            _set_dotted(config, key, flat_defaults[key])
    for key, value in ADDED_SETTINGS.items():
        if key not in flat:
            _set_dotted(config, key, value)
    return config


def _set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """config[a][b] = value for key "a.b" (parents created); value None removes the field."""
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
        node = node.setdefault(name, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value


def config_diff(recorded: Mapping[str, Any], current: Mapping[str, Any]
                ) -> dict[str, tuple[Any, Any]]:
    """Dotted field -> (recorded value, current value) for every field that differs.

    A field present on one side only shows as None on the other. Data source specs compare
    without their `allow_pickle` opt-in (it grants permission, it does not change the data).
    """
    a, b = validate.flatten(recorded), validate.flatten(current)
    out = {}
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        if key == "data.source" and isinstance(left, str) and isinstance(right, str):
            if canonical_spec(left) == canonical_spec(right):
                continue
        if left != right:
            out[key] = (left, right)
    return out


def has_checkpoints(workdir: str) -> bool:
    """True when `workdir/checkpoints` holds a checkpoint step."""
    ckpt = os.path.join(workdir, "checkpoints")
    return os.path.isdir(ckpt) and any(n.isdigit() for n in os.listdir(ckpt))


def has_state(workdir: str) -> bool:
    """True when `workdir` holds something a run would resume or report: checkpoint steps or a
    results file."""
    return has_checkpoints(workdir) or os.path.exists(os.path.join(workdir, "results.json"))


def lock(workdir: str) -> None:
    """Take `WORKDIR/.lock` for this process (re-entrant); raise `WorkdirError` if held."""
    path = os.path.abspath(workdir)
    if path in _HELD:
        return
    lock_path = os.path.join(path, LOCK_FILE)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise WorkdirError(
            f"{path} is in use by another run ({holder}); wait for it to finish, or use "
            "another --workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {_now()}\n".encode(), 0)
    _HELD[path] = fd


def release(workdir: str) -> None:
    """Give the workdir's lock back (it is also released when the process exits)."""
    path = os.path.abspath(workdir)
    fd = _HELD.pop(path, None)
    _ACCEPTED.pop(path, None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def truncate_metrics(workdir: str, step: int | None) -> int:
    """Drop `metrics.jsonl` records with `step` > the restored step (None: no checkpoint, 0).

    The host loop writes a chunk's record before it checkpoints, so after a kill the records
    after the last checkpoint are written again on resume; dropping them keeps one record per
    step. Unreadable lines (a write cut by the kill) are dropped too. Returns how many lines
    were dropped; the file is replaced atomically.
    """
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return 0
    limit = 0 if step is None else int(step)
    with open(path) as f:
        lines = f.readlines()
    steps = [_record_step(line) for line in lines]
    kept = [line for line, s in zip(lines, steps, strict=True) if s is not None and s <= limit]
    if len(kept) == len(lines):
        return 0
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)
    logging.info("%s: dropped %d record(s) past restored step %d", path, len(lines) - len(kept),
                 limit)
    return len(lines) - len(kept)


def _record_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _as_json(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
    """The config as it reads back from config.json (tuples become lists)."""
    if isinstance(config, ml_collections.ConfigDict):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(config))


def _write_json(path: str, payload: Mapping[str, Any]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)  # an interrupted write never leaves half a config.json


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
