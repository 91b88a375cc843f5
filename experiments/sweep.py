"""Sweeps: a grid of seeds x hyperparameters trained as vmapped runs, one results table, a best run.

    python -m launch.sweep --config=experiments/configs/quickstart.py --workdir=runs/sweep \
        --sweep.seeds=4 --sweep.policy_lr="(3e-4, 1e-3)" --sweep.dual_lr="(0.5, 1.0)"

The swept learning rates, entropy weight, dual step and margin are traced `HParams`, so any mix of
them is one compiled program; the number of τ lanes is a shape, so each value gets its own. Runs are
packed into as few programs as fit the memory budget (`plan_groups`), each program is trained by
`experiments.runs.train` (checkpoints, resume) on a device mesh (`proteus.training.sharding`). Every
run is scored on `val` (the rows its operating points are measured on, which only early-stopped its
predictor; no calib or test label), the best run is picked there, and only the chosen run is
evaluated on the test split, like `results.json`'s "proteus" router: picking on test would be
model selection on the test split.

Run keys: run (seed s, any hyperparameters) uses `fold_in(key(config.seed), s)`, the key of run s
of a plain `launch.train` job, so runs that differ only in a hyperparameter share their
initialisation and minibatches, and a run's result does not depend on how runs were grouped.

Best-run rule (`BEST_RULE`, on the `val` rows): highest floor compliance on the DESIGN grid (τ in
[eval.tau_lo, eval.tau_hi]); then lowest mean cost over the DESIGN-grid τ it meets; then highest
target-response correlation (over the whole evaluation grid); then the lowest run index. On `val`
each τ's point is the one the uncertified rule picks, scored by its raw `val` accuracy and cost.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from experiments import distributed, outputs, validate
from experiments import runs as workdir_runs
from experiments.sweep_plan import (
    Group,
    RunSpec,
    memory_budget,
    nbytes,
    plan_groups,
    run_bytes,
)
from proteus import operating
from proteus.data.dataset import RoutingDataset
from proteus.evaluation import metrics, results
from proteus.pipeline import routing
from proteus.pipeline.config import run_keys_for
from proteus.pipeline.evaluation import cost_range, on_grid, sweep_taus
from proteus.pipeline.setup import Setup, load_splits, make_setup
from proteus.training import sharding, train

SWEPT = train.HParams._fields  # the traced per-run hyperparameters (config.train.<name>)
SELECTION_SPLIT = "val"  # the rows the best run is picked on; test is reported for it only
BEST_RULE = ("on val: highest floor compliance on the DESIGN grid; then lowest mean cost over the "
             "DESIGN-grid tau it meets; then highest target-response correlation; then lowest run")
COLUMNS = ("run", "group", "seed", "lanes", *SWEPT, "floor_compliance", "n_feasible",
           "target_response_corr", "acc_at_tau", "cost_at_tau", "savings_at_tau",
           "mean_cost_met", "max_savings", "oracle_gap", "aiq")


def default_grid() -> ml_collections.ConfigDict:
    """The `--sweep.*` flags; a swept field left empty takes the training config's value."""
    g = ml_collections.ConfigDict()
    g.seeds = 2  # seeds 0..n-1 (run keys fold_in(key(config.seed), seed))
    g.pred_lr = ()  # predictor learning rates
    g.policy_lr = (3e-4, 1e-3)  # policy learning rates
    g.ent_coef = ()  # entropy weights
    g.dual_lr = (0.5, 1.0)  # dual steps η_λ
    g.margin = ()  # dual margins
    g.lanes = ()  # τ lanes K per run (a shape: one compiled program per value)
    g.memory_budget_gb = 0.0  # per device; 0 = half the device's memory (4 GiB where unknown)
    g.max_runs_per_program = 0  # cap on runs per compiled program (0 = memory only)
    g.mesh_runs = -1  # devices on the "runs" axis (-1 = auto)
    g.mesh_batch = -1  # devices on the "batch" axis (-1 = auto: the rest)
    g.tau_ref = 0.9  # the τ of the table's "at_tau" columns (nearest grid point)
    return g


def expand_grid(config: ml_collections.ConfigDict, grid: ml_collections.ConfigDict,
                ) -> list[RunSpec]:
    """Every (lanes, hyperparameters, seed) combination, seed varying fastest.

    Example: seeds=2, policy_lr=(a, b), the rest empty -> 4 runs
    (seed 0, a), (seed 1, a), (seed 0, b), (seed 1, b).
    """
    values = {name: tuple(grid[name]) or (config.train[name],) for name in SWEPT}
    lanes = tuple(grid.lanes) or (config.lanes.n,)
    if grid.seeds < 1:
        raise ValueError(f"sweep.seeds must be >= 1, got {grid.seeds}")
    combos = itertools.product(lanes, *(values[n] for n in SWEPT), range(grid.seeds))
    return [RunSpec(i, seed, int(k), *map(float, hp))
            for i, (k, *hp, seed) in enumerate(combos)]


def grid_hparams(runs: list[RunSpec]) -> train.HParams:
    """HParams with [S] leaves for `runs`, in order."""
    return train.HParams(**{n: jnp.asarray([getattr(r, n) for r in runs], jnp.float32)
                            for n in SWEPT})


def seed_keys(base_seed: int, seeds) -> tuple[jax.Array, jax.Array]:
    """(init_keys, run_keys), [S] each: `make_setup`'s derivation with run r = seed."""
    return run_keys_for(base_seed, seeds)


def config_for(config: ml_collections.ConfigDict, lanes: int) -> ml_collections.ConfigDict:
    """A copy of `config` with `lanes.n = lanes` (the caller's config is not touched)."""
    out = copy.deepcopy(config)
    out.lanes.n = int(lanes)
    return out


# ----------------------------------------------------------------------------- evaluation


def selection_block(cfg: ml_collections.ConfigDict, setup: Setup,
                    state: train.TrainState, slot: int, val: RoutingDataset,
                    taus: np.ndarray) -> dict[str, list]:
    """PROTEUS (uncertified) on `val`, the rows its operating points are measured on: per τ the
    point the rule picks and that point's raw `val` accuracy and cost (no calib or test label)."""
    table = routing.operating_table(cfg, setup, state, slot, val)
    policy = operating.OperatingPolicy(table, None, cfg.certify.fallback, val.models)
    n_points = len(table["model"])
    return routing.router_block(routing.resolve_grid(policy, taus),
                                   np.asarray(table["raw_accuracy"]), np.asarray(table["cost"]),
                                   np.full(n_points, np.nan))


def table_row(cfg: ml_collections.ConfigDict, block: dict[str, list], ds: RoutingDataset,
              spec: RunSpec, group: int, taus: np.ndarray, tau_ref: float) -> dict[str, Any]:
    """A table row (`COLUMNS`) from a router block measured on `ds` (oracle, best fixed model
    and cost range from `ds` too; AIQ from the block's "sweep" points when it has them)."""
    e = cfg.eval
    acc, cost = np.asarray(block["accuracy"]), np.asarray(block["cost"])
    feasible = np.asarray(block["feasible"], bool)
    oracle_acc, _ = ds.oracle()
    _, _, best_cost = ds.best_fixed()
    sweep = block.get("sweep")
    full = metrics.summarize(taus, acc, cost, feasible, oracle_acc, best_cost,
                             cost_range(ds),
                             None if sweep is None else (sweep["cost"], sweep["accuracy"]))
    design = (taus >= e.tau_lo - 1e-9) & (taus <= e.tau_hi + 1e-9)
    met = metrics.meets_floor(taus[design], acc[design])
    ref = int(np.argmin(np.abs(taus - tau_ref)))
    return {
        "run": spec.index, "group": group, "seed": spec.seed, "lanes": spec.lanes,
        **{n: getattr(spec, n) for n in SWEPT},
        "floor_compliance": metrics.floor_compliance(taus[design], acc[design], feasible[design]),
        "n_feasible": int(feasible[design].sum()),
        "target_response_corr": full["target_response_corr"],
        "acc_at_tau": float(acc[ref]), "cost_at_tau": float(cost[ref]),
        "savings_at_tau": float(1.0 - cost[ref] / best_cost),
        "mean_cost_met": float(cost[design][met].mean()) if met.any() else float("nan"),
        "max_savings": full["max_savings_vs_best_fixed"], "oracle_gap": full["oracle_gap"],
        "aiq": full["aiq"],
    }


def evaluate_run(cfg: ml_collections.ConfigDict, setup: Setup, state: train.TrainState,
                 slot: int, spec: RunSpec, group: int, splits: dict[str, RoutingDataset],
                 taus: np.ndarray, tau_ref: float, split: str = "val") -> dict[str, Any]:
    """The table row of the run in slot `slot` of a group's (host) state on `split`.

    "val" (selection): `selection_block`. "test" (reported, for the chosen run only): PROTEUS
    uncertified as `results.json`'s "proteus" router (`routing.proteus_blocks`).
    """
    sweep = sweep_taus(cfg, taus)  # the grid and the AIQ sweep
    if split == "val":
        block = selection_block(cfg, setup, state, slot, splits["val"], sweep)
    elif split == "test":
        block = routing.proteus_blocks(cfg, setup, state, slot, splits, sweep,
                                          cert_taus=taus)[0]["proteus"]
    else:
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    block = on_grid(block, np.isin(sweep, taus))
    return table_row(cfg, block, splits[split], spec, group, taus, tau_ref)


def best_run(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row that `BEST_RULE` picks (nan compliance or correlation ranks last, nan cost too)."""
    def key(row):
        comp, cost = row["floor_compliance"], row["mean_cost_met"]
        corr = row["target_response_corr"]
        return (-(comp if np.isfinite(comp) else -1.0), cost if np.isfinite(cost) else np.inf,
                -(corr if np.isfinite(corr) else -2.0), row["run"])

    return min(rows, key=key)


# ----------------------------------------------------------------------------- the sweep


class SweepResult(NamedTuple):
    """Table rows (one per run, on `val`), the best row, the chosen run's row on test, the
    programs and, per group, its host state."""

    rows: list[dict[str, Any]]
    best: dict[str, Any]
    best_test: dict[str, Any]
    groups: list[Group]
    mesh_shape: dict[str, int]
    seconds: dict[str, float]
    states: list[train.TrainState]  # numpy leaves [size, ...], padded slots included


def _plan(config, splits, grid, runs, mesh) -> list[Group]:
    per_run = {}
    for k in sorted({r.lanes for r in runs}):
        cfg = config_for(config, k)
        setup = make_setup(cfg, splits, hparams=grid_hparams(runs[:1]))
        per_run[k] = run_bytes(cfg, setup, splits, mesh.shape[sharding.BATCH])
    data_bytes = sum(nbytes(splits[n].features) + nbytes(splits[n].scores) * 2
                     for n in ("pred", "policy", "val"))
    budget = max(memory_budget(grid) - data_bytes, 1)
    groups = plan_groups(runs, per_run, budget, mesh.shape[sharding.RUNS],
                         grid.max_runs_per_program)
    logging.info("sweep: %d runs in %d program(s); bytes per run %s, budget %.2f GiB/device",
                 len(runs), len(groups), per_run, budget / 2**30)
    return groups


def train_group(config: ml_collections.ConfigDict, splits: dict[str, RoutingDataset],
                runs: list[RunSpec], group: Group, workdir: str,
                placement: sharding.Placement | None, progress: bool,
                ) -> tuple[Setup, train.TrainState]:
    """Train one group's (padded) runs in `workdir/group_XXX`; returns (setup, host state)."""
    cfg = config_for(config, group.lanes)
    members = [runs[i] for i in group.padded()]
    setup = make_setup(cfg, splits, hparams=grid_hparams(members))
    init_keys, run_keys = seed_keys(cfg.seed, [r.seed for r in members])
    setup = dataclasses.replace(setup, init_keys=init_keys, run_keys=run_keys)
    gdir = os.path.join(workdir, f"group_{group.index:03d}")
    trained = workdir_runs.train(cfg, gdir, splits, setup=setup, progress=progress,
                                 placement=placement)
    return trained.setup, sharding.fetch(trained.state)


def run_sweep(config: ml_collections.ConfigDict, workdir: str,
              grid: ml_collections.ConfigDict | None = None, progress: bool = False,
              splits: dict[str, RoutingDataset] | None = None) -> SweepResult:
    """Train and evaluate the grid in `workdir`; the primary process writes the table.

    Re-running in the same workdir resumes unfinished groups from their checkpoints and skips
    finished ones (the grid must be unchanged).
    """
    grid = grid or default_grid()
    start = time.perf_counter()
    splits = splits or load_splits(config)  # the encoding bar whatever --progress (per phase)
    runs = expand_grid(config, grid)
    mesh = sharding.mesh_for(len(runs), config.train.batch_size, grid.mesh_runs,
                             grid.mesh_batch, pad_runs=True)
    groups = _plan(config, splits, grid, runs, mesh)
    _check_plan(workdir, config, grid, groups)
    placement = sharding.Placement(mesh) if mesh.size > 1 else None  # one device: as is
    rows, states, setups = [], [], []
    seconds = {"load_and_plan": time.perf_counter() - start, "train": 0.0, "eval": 0.0}
    for group in groups:
        t0 = time.perf_counter()
        setup, state = train_group(config, splits, runs, group, workdir, placement, progress)
        states.append(state)
        setups.append(setup)
        t1 = time.perf_counter()
        rows += [_evaluate(config, setup, state, group, slot, runs, splits, grid, "val")
                 for slot in range(len(group.runs))]
        seconds["train"] += t1 - t0
        seconds["eval"] += time.perf_counter() - t1
    best = best_run(rows)
    group = groups[best["group"]]
    best_test = _evaluate(config, setups[group.index], states[group.index], group,
                          group.runs.index(best["run"]), runs, splits, grid, "test")
    result = SweepResult(rows, best, best_test, groups, dict(mesh.shape), seconds, states)
    if sharding.is_primary():
        write_tables(workdir, config, grid, result)
    return result


def launch(config: ml_collections.ConfigDict, workdir: str, grid: ml_collections.ConfigDict,
           progress: bool = False) -> str | None:
    """The sweep job (`launch.sweep`): validate the config and the grid before any process
    writes a plan or a checkpoint, join the multi-process job before anything touches a device,
    train and evaluate the grid, and return the summary the primary process prints (None on the
    others)."""
    validate.validate(config)
    validate.validate_grid(grid, SWEPT)
    info = distributed.join_from_env()
    result = run_sweep(config, workdir, grid, progress=progress)
    if info.process_index != 0:
        return None
    seconds = {k: round(v, 1) for k, v in result.seconds.items()}
    return "\n".join([
        markdown_table(result.rows, result.best),
        f"best run {result.best['run']} by: {BEST_RULE}",
        f"{len(result.rows)} runs in {len(result.groups)} program(s) on mesh {result.mesh_shape} "
        f"over {info.process_count} process(es); seconds {seconds}"])


def _evaluate(config, setup, state, group: Group, slot: int, runs: list[RunSpec], splits,
              grid, split: str) -> dict[str, Any]:
    cfg = config_for(config, group.lanes)
    taus = routing.eval_taus(cfg, state.lane_taus[slot])  # the slot's lanes
    return evaluate_run(cfg, setup, state, slot, runs[group.runs[slot]], group.index, splits,
                        taus, grid.tau_ref, split)


# ----------------------------------------------------------------------------- files


def _check_plan(workdir: str, config, grid, groups: list[Group]) -> None:
    """Write `sweep_plan.json`, or refuse a workdir that holds a different sweep's checkpoints."""
    plan = {"config": config.name, "seed": config.seed, "grid": grid.to_dict(),
            "groups": [g._asdict() for g in groups]}
    plan = json.loads(json.dumps(plan))  # tuples -> lists, as the file holds them
    path = os.path.join(workdir, "sweep_plan.json")
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != plan:
            raise ValueError(f"{workdir!r} holds a different sweep ({path}); use a new workdir")
    elif sharding.is_primary():
        outputs.make_dir(workdir)
        _write_json(path, plan)


def _write_json(path: str, payload: dict[str, Any]) -> None:
    """Strict JSON (NaN and inf as null), written atomically."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(results.to_jsonable(payload), f, indent=1, allow_nan=False)
    os.replace(tmp, path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if not np.isfinite(value) else f"{value:.4g}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]], best: dict[str, Any]) -> str:
    """One line per run; the best run's index is bold."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [_fmt(row[c]) for c in COLUMNS]
        if row["run"] == best["run"]:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tables(workdir: str, config: ml_collections.ConfigDict,
                 grid: ml_collections.ConfigDict, result: SweepResult) -> dict[str, str]:
    """sweep_results.csv, .md and .json in `workdir` (rows on `val`, the chosen run's test row
    in .md and .json); returns their paths."""
    outputs.make_dir(workdir)
    paths = {ext: os.path.join(workdir, f"sweep_results.{ext}") for ext in ("csv", "md", "json")}
    with open(paths["csv"], "w") as f:
        f.write(",".join(COLUMNS) + "\n")
        for row in result.rows:
            f.write(",".join(repr(row[c]) if isinstance(row[c], float) else str(row[c])
                             for c in COLUMNS) + "\n")
    best, test = result.best, result.best_test
    summary = (f"best run {best['run']} (seed {best['seed']}, lanes {best['lanes']}, "
               + ", ".join(f"{n}={best[n]:.3g}" for n in SWEPT)
               + f"): on val floor compliance {_fmt(best['floor_compliance'])}, mean cost at met "
               f"tau {_fmt(best['mean_cost_met'])}, r {_fmt(best['target_response_corr'])}; on "
               f"test floor compliance {_fmt(test['floor_compliance'])}, mean cost at met tau "
               f"{_fmt(test['mean_cost_met'])}, r {_fmt(test['target_response_corr'])}")
    with open(paths["md"], "w") as f:
        f.write(f"# Sweep {config.name}\n\nRule: {BEST_RULE}. Rows: every run on "
                f"{SELECTION_SPLIT}.\n\n{summary}\n\n{markdown_table(result.rows, best)}\n\n"
                f"The chosen run on test:\n\n{markdown_table([test], test)}\n")
    _write_json(paths["json"], {
        "config_name": config.name, "dataset": config.data.source, "best_rule": BEST_RULE,
        "selection_split": SELECTION_SPLIT, "best": best, "best_test": test,
        "rows": result.rows, "columns": list(COLUMNS), "grid": grid.to_dict(),
        "groups": [g._asdict() for g in result.groups], "n_programs": len(result.groups),
        "mesh": result.mesh_shape, "processes": jax.process_count(), "seconds": result.seconds,
        "tau_ref": grid.tau_ref})
    logging.info("%s", summary)
    return paths
