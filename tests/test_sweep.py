"""experiments.sweep: grid expansion, keys, grouping, the best-run rule, and a smoke sweep."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

from experiments import sweep, sweep_plan
from experiments.configs import quickstart
from proteus.evaluation import results
from proteus.pipeline.config import hparams_from_config
from proteus.pipeline.setup import initial_state, load_splits, make_setup
from tests.conftest import REPO_ROOT, drop_compile_caches, xla_flags

# The sweep's mechanics on the 64-d precomputed features: the quickstart's own text features
# (1,024-d hashing) make a shrunk run's calibration ill-conditioned, which magnifies the rounding
# differences the sharded-equality test bounds.
SMOKE = "smoke,precomputed"
# ... on 2,000 of the preset's queries (its 20,000 by default): the policy phase's inputs (the
# cross-fitted calibration, a Newton fit per fold, model and run) cost CPU in proportion to the
# rows, and the mechanics are the same.
SMOKE_SOURCE = "synthetic:routerbench?n=2000&seed=0&signal=1.0"
# ... and 10 steps per phase (the smoke's 40) in chunks of 5: two chunks each, so a chunk still
# starts from a chunk's output. On 8 forced devices the steps' collectives cost most of the
# sharded run's time.
SMOKE_STEPS = {"pred_max_steps": 10, "policy_steps": 10, "chunk_size": 5}


def smoke_config():
    """quickstart:SMOKE on SMOKE_SOURCE, SMOKE_STEPS: what the launcher's flags below make too."""
    config = quickstart.get_config(SMOKE)
    config.data.source = SMOKE_SOURCE
    config.train.update(SMOKE_STEPS)
    return config


@pytest.fixture(scope="module")
def config():
    return smoke_config()


def _grid(**values):
    grid = sweep.default_grid()
    grid.update({"policy_lr": (), "dual_lr": (), **values})
    return grid


def test_expand_grid_hand_checked(config):
    runs = sweep.expand_grid(config, _grid(seeds=2, policy_lr=(1e-3, 3e-4), lanes=(4, 8)))
    assert len(runs) == 8
    # lanes slowest, then the hyperparameters, seed fastest; unswept fields from the config.
    assert [(r.lanes, r.policy_lr, r.seed) for r in runs] == [
        (4, 1e-3, 0), (4, 1e-3, 1), (4, 3e-4, 0), (4, 3e-4, 1),
        (8, 1e-3, 0), (8, 1e-3, 1), (8, 3e-4, 0), (8, 3e-4, 1)]
    assert [r.index for r in runs] == list(range(8))
    assert {(r.pred_lr, r.ent_coef, r.dual_lr, r.margin) for r in runs} == {
        (config.train.pred_lr, config.train.ent_coef, config.train.dual_lr, config.train.margin)}
    hp = sweep.grid_hparams(runs[:3])
    np.testing.assert_allclose(hp.policy_lr, [1e-3, 1e-3, 3e-4])
    assert hp.margin.shape == (3,) and hp.margin.dtype == np.float32


def test_expand_grid_defaults_to_one_run(config):
    runs = sweep.expand_grid(config, _grid(seeds=1))
    assert runs == [sweep.RunSpec(0, 0, config.lanes.n, config.train.pred_lr,
                                  config.train.policy_lr, config.train.ent_coef,
                                  config.train.dual_lr, config.train.margin)]
    with pytest.raises(ValueError, match="seeds"):
        sweep.expand_grid(config, _grid(seeds=0))


def test_seed_keys_are_the_pipelines_run_keys(config):
    """Seed s of a sweep uses the keys of run s of a plain training job."""
    init_keys, run_keys = sweep.seed_keys(config.seed, [0, 1, 2])
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.key(config.seed), r))(
        np.arange(3))
    want_init, want_run = jax.vmap(jax.random.split, out_axes=1)(keys)
    np.testing.assert_array_equal(jax.random.key_data(init_keys), jax.random.key_data(want_init))
    np.testing.assert_array_equal(jax.random.key_data(run_keys), jax.random.key_data(want_run))
    _, only_two = sweep.seed_keys(config.seed, [2])
    np.testing.assert_array_equal(jax.random.key_data(only_two[0]),
                                  jax.random.key_data(run_keys[2]))


def _runs(lanes):
    return [sweep.RunSpec(i, 0, k, 0.0, 0.0, 0.0, 0.0, 0.0) for i, k in enumerate(lanes)]


def test_plan_groups_hand_checked():
    runs = _runs([4] * 8)
    # 100 bytes a run, 350 per device: 3 runs per program, 8 runs -> 3 equal groups (3, 3, 2+pad).
    groups = sweep_plan.plan_groups(runs, {4: 100}, 350)
    assert [(g.runs, g.size) for g in groups] == [((0, 1, 2), 3), ((3, 4, 5), 3), ((6, 7), 3)]
    assert groups[2].padded() == (6, 7, 7)
    # A runs axis of 2 devices holds 3 runs each: 6 per program -> 2 groups of 4.
    groups = sweep_plan.plan_groups(runs, {4: 100}, 350, runs_axis=2)
    assert [(g.runs, g.size) for g in groups] == [((0, 1, 2, 3), 4), ((4, 5, 6, 7), 4)]
    # Everything fits: one program; a cap splits it.
    assert len(sweep_plan.plan_groups(runs, {4: 100}, 10**6)) == 1
    capped = sweep_plan.plan_groups(runs, {4: 100}, 10**6, max_runs=5)
    assert [g.runs for g in capped] == [(0, 1, 2, 3), (4, 5, 6, 7)]
    # Lanes are shapes: one program per value at least.
    mixed = sweep_plan.plan_groups(_runs([4, 8, 4, 8]), {4: 1, 8: 1}, 10**6)
    assert [(g.lanes, g.runs) for g in mixed] == [(4, (0, 2)), (8, (1, 3))]
    assert [g.index for g in mixed] == [0, 1]


def test_estimate_run_bytes_grows_with_lanes(config):
    splits = load_splits(config)
    sizes = []
    for k in (4, 16):
        cfg = sweep.config_for(config, k)
        setup = make_setup(cfg, splits, hparams=hparams_from_config(cfg, 1))
        sizes.append(sweep_plan.estimate_run_bytes(cfg, setup))
    assert 0 < sizes[0] < sizes[1]
    halved = sweep_plan.estimate_run_bytes(cfg, setup, batch_shards=2)
    assert halved < sizes[1]
    assert config.lanes.n == 4  # config_for copies


def test_run_bytes_from_xla_memory_analysis_or_the_estimate(config, monkeypatch):
    splits = load_splits(config)
    setup = make_setup(config, splits, hparams=hparams_from_config(config, 1))
    measured = sweep_plan.run_bytes(config, setup, splits)
    state = jax.eval_shape(lambda: initial_state(setup))
    one_state = sweep_plan.nbytes(state) // setup.init_keys.shape[0]
    assert measured > one_state  # at least one run's state
    assert sweep_plan.run_bytes(config, setup, splits, batch_shards=2) <= measured
    monkeypatch.setattr(sweep_plan, "_policy_chunk_memory", lambda *args: None)  # backend says None
    estimate = sweep_plan.estimate_run_bytes(config, setup)
    assert sweep_plan.run_bytes(config, setup, splits) == estimate


def _row(run, comp, cost, corr):
    return {"run": run, "floor_compliance": comp, "mean_cost_met": cost,
            "target_response_corr": corr}


def test_best_run_rule():
    nan = math.nan
    rows = [_row(0, 0.8, 1.0, 0.99), _row(1, 1.0, 3.0, 0.90), _row(2, 1.0, 2.0, 0.80),
            _row(3, 1.0, 2.0, 0.95), _row(4, nan, nan, 0.99)]
    assert sweep.best_run(rows)["run"] == 3  # compliance 1.0, then cost 2.0, then r 0.95
    assert sweep.best_run(rows[:3])["run"] == 2
    assert sweep.best_run([_row(0, nan, nan, nan), _row(1, 0.0, nan, 0.5)])["run"] == 1
    assert sweep.best_run([_row(5, 1.0, 2.0, 0.9), _row(4, 1.0, 2.0, 0.9)])["run"] == 4


SMOKE_FLAGS = [f"--config.data.source={SMOKE_SOURCE}", "--sweep.seeds=2",
               *(f"--config.train.{k}={v}" for k, v in SMOKE_STEPS.items()),
               "--sweep.policy_lr=(3e-4, 1e-3)", "--sweep.dual_lr=()"]
# Both training subprocesses compile with the suite's XLA flags (tests/conftest.py), so the two
# programs compared are compiled the same way.
_CPU_ENV = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags()}


def worker_sweep_on_mesh(workdir: str, reference: str) -> None:
    """The smoke grid on a (runs=2, batch=4) mesh of 8 forced CPU devices; then resumed; then
    compared with the (finished) one-device launcher run whose workdir is `reference`."""
    from proteus.training import checkpoint, sharding

    grid = _grid(seeds=2, policy_lr=(3e-4, 1e-3), mesh_runs=2, mesh_batch=4)
    config = smoke_config()
    trained = []  # what training hands back, before it leaves the devices
    fetch = sharding.fetch
    sharding.fetch = lambda tree: trained.append(tree) or fetch(tree)
    first = sweep.run_sweep(config, workdir, grid)
    again = sweep.run_sweep(config, workdir, grid)  # finished: restores the sharded checkpoint
    ckpt = checkpoint.Checkpointer(f"{reference}/group_000/checkpoints")
    one_device, _ = ckpt.restore(trained[0])  # the 1-device state, resharded onto this mesh
    ckpt.close()
    diffs: dict[str, float] = {}  # max |one device - mesh| per part of the state
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(fetch(one_device)),
                            jax.tree.leaves(first.states[0]), strict=True):
        part = "policy" if "policy" in jax.tree_util.keystr(path) else "rest"
        diff = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
        diffs[part] = max(diffs.get(part, 0.0), diff)
    print(json.dumps({
        "devices": jax.device_count(), "mesh": first.mesh_shape, "groups": len(first.groups),
        "specs": sorted({str(x.sharding.spec) for x in jax.tree.leaves(trained[0])}),
        "devices_used": len(jax.tree.leaves(trained[0])[0].sharding.device_set),
        "resumed_rows_equal": json.dumps(first.rows) == json.dumps(again.rows),  # NaN-safe
        "max_abs_diff": diffs, "rows": results.to_jsonable(first.rows)}))


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """`python -m launch.sweep` on quickstart:smoke (2 seeds x 2 policy learning rates, one
    device) and, once it has finished, the same grid on 8 forced devices
    (`worker_sweep_on_mesh`). One after the other, not side by side: the two processes' memory
    (about 1 and 2 GB) would otherwise add up beside the suite's own."""
    one = str(tmp_path_factory.mktemp("sweep"))
    mesh = str(tmp_path_factory.mktemp("sweep_mesh"))
    launcher = [sys.executable, "-m", "launch.sweep", f"--workdir={one}", "--noprogress",
                f"--config=experiments/configs/quickstart.py:{SMOKE}", *SMOKE_FLAGS]
    worker = [sys.executable, "-c",
              f"import tests.test_sweep as t; t.worker_sweep_on_mesh({mesh!r}, {one!r})"]
    forced = {"XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=8")}
    drop_compile_caches()  # this process only waits from here: its memory beside theirs
    outs = []
    for cmd, extra in ((launcher, {}), (worker, forced)):
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={**os.environ, **_CPU_ENV, **extra})
        try:
            outs.append(proc.communicate(timeout=600))
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, outs[-1][1][-4000:]
    with open(f"{one}/sweep_results.json") as f:
        payload = json.load(f)  # strict JSON: NaN written as null
    return one, outs[0][0], payload, json.loads(outs[1][0].strip().splitlines()[-1])


def test_sweep_launcher_table(sweeps):
    workdir, stdout, payload, _ = sweeps
    rows, best = payload["rows"], payload["best"]
    assert payload["n_programs"] == 1 and payload["groups"][0]["size"] == 4
    assert [r["run"] for r in rows] == [0, 1, 2, 3]
    assert payload["best_rule"] == sweep.BEST_RULE
    assert f"best run {best['run']} by: {sweep.BEST_RULE}" in stdout
    assert "4 runs in 1 program(s)" in stdout
    with open(f"{workdir}/sweep_results.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(sweep.COLUMNS) and len(table) == 4
    assert [float(r["policy_lr"]) for r in table] == [3e-4, 3e-4, 1e-3, 1e-3]
    with open(f"{workdir}/sweep_results.md") as f:
        assert f"| **{best['run']}** |" in f.read()
    # The rows are measured on val, the chosen run (by the stated rule) is reported on test.
    nan_rows = [{k: math.nan if v is None else v for k, v in r.items()} for r in rows]
    assert payload["selection_split"] == "val" and best["run"] == sweep.best_run(nan_rows)["run"]
    test_row = payload["best_test"]
    assert {k: test_row[k] for k in sweep.SWEPT + ("run", "seed")} == \
        {k: best[k] for k in sweep.SWEPT + ("run", "seed")}
    splits = load_splits(smoke_config())
    for row, ds in [(r, splits["val"]) for r in rows] + [(test_row, splits["test"])]:
        _, _, best_fixed_cost = ds.best_fixed()
        assert row["savings_at_tau"] == pytest.approx(1 - row["cost_at_tau"] / best_fixed_cost,
                                                      rel=1e-9)
        # the oracle gap is the oracle's accuracy minus the router's best, at most acc_at_tau's
        assert row["oracle_gap"] <= ds.oracle()[0] - row["acc_at_tau"] + 1e-9
        if row["n_feasible"]:  # compliance counts met τ among the feasible ones
            met = row["floor_compliance"] * row["n_feasible"]
            assert met == pytest.approx(round(met), abs=1e-9)


def test_sweep_guards_its_workdir(sweeps, config):
    """The launcher's flags made the grid `_grid` makes; another grid may not reuse the workdir."""
    workdir, _, payload, _ = sweeps
    with open(f"{workdir}/sweep_plan.json") as f:
        plan = json.load(f)
    grid = _grid(seeds=2, policy_lr=(3e-4, 1e-3))
    assert plan["grid"] == results.to_jsonable(grid.to_dict()) == payload["grid"]
    with pytest.raises(ValueError, match="different sweep"):
        sweep.run_sweep(config, workdir, _grid(seeds=3, policy_lr=(3e-4, 1e-3)))


def test_sharded_sweep_matches_one_device(sweeps):
    """8 forced CPU devices, mesh (runs=2, batch=4): the same final states and table."""
    _, _, payload, mesh = sweeps
    assert mesh["devices"] == 8 and mesh["mesh"] == {"runs": 2, "batch": 4}
    assert mesh["devices_used"] == 8 and mesh["groups"] == 1
    # Every state leaf keeps its run axis on "runs" (per-run scalars are [S]).
    assert all(s.startswith("P('runs'") for s in mesh["specs"]), mesh["specs"]
    # Reductions over the sharded batch may reorder, so gradients agree to float rounding. The
    # predictor, duals and step counters then agree to ~1e-7. Policy parameters and their Adam
    # state drift further: where a gradient entry is itself at rounding level, Adam's m/sqrt(v)
    # turns the two devices' different roundings into steps of size ~lr (1e-3 here) in either
    # direction, a drift of about lr whatever the tolerance of the sum. The routing and every
    # metric of the table agree.
    diff = mesh["max_abs_diff"]
    table = max(abs(got[k] - v) for got, want in zip(mesh["rows"], payload["rows"], strict=True)
                for k, v in want.items() if isinstance(v, float) and math.isfinite(v))
    # Measured on 2 cores: rest 3.8e-6, policy 6.0e-8, table 0.0 (identical rows); at 4,000 queries
    # and 20 steps per phase: 1.9e-6, 2.0e-6, 0.0.
    assert diff["rest"] < 1e-5 and diff["policy"] < 5e-3, diff
    assert table < 1e-9, table
    assert mesh["resumed_rows_equal"]  # a finished sweep resumes from its sharded checkpoint


def test_sweep_picks_on_val_and_reports_test_for_the_chosen_run_only(config, tmp_path,
                                                                    monkeypatch):
    """`run_sweep`'s plumbing with training and scoring stubbed: a run's score is the accuracy of
    model <run> on the split it is scored on. On val model 2 is best, on test model 0 (then, with
other test labels, model 2): the sweep
    must pick run 2, score every run on val only, evaluate test once (for run 2), and give the
    same rows and choice whatever the test labels are."""
    splits = load_splits(config)
    val, test = splits["val"], splits["test"]

    def favour(ds, m):  # model m right everywhere, models 0..3 otherwise right on half the rows
        scores = ds.scores.copy()
        scores[:, :4] = (np.arange(ds.n_queries)[:, None] % 2).astype(np.float32)
        scores[:, m] = 1.0
        return dataclasses.replace(ds, scores=scores)

    calls = []

    def fake_evaluate_run(cfg, setup, state, slot, spec, group, splits, taus, tau_ref, split):
        calls.append((spec.index, split))
        row = {c: 0.0 for c in sweep.COLUMNS}
        row.update(run=spec.index, group=group, seed=spec.seed, lanes=spec.lanes,
                   **{n: getattr(spec, n) for n in sweep.SWEPT})
        row["floor_compliance"] = float(splits[split].scores[:, spec.index].mean())
        return row

    monkeypatch.setattr(sweep, "_plan", lambda config, splits, grid, runs, mesh: (
        sweep_plan.plan_groups(runs, {r.lanes: 1 for r in runs}, 10**6)))
    monkeypatch.setattr(sweep, "train_group", lambda *args: (  # (setup, host state [S])
        None, types.SimpleNamespace(lane_taus=np.tile(np.linspace(0.5, 0.9, 4), (8, 1)))))
    monkeypatch.setattr(sweep, "evaluate_run", fake_evaluate_run)
    grid = _grid(seeds=2, policy_lr=(3e-4, 1e-3))
    outcomes = []
    for name, test_split in (("a", favour(test, 0)), ("b", favour(test, 2))):
        calls.clear()
        both = {**splits, "val": favour(val, 2), "test": test_split}
        result = sweep.run_sweep(config, str(tmp_path / name), grid, splits=both)
        assert calls == [(0, "val"), (1, "val"), (2, "val"), (3, "val"), (2, "test")]
        assert result.best["run"] == result.best_test["run"] == 2
        outcomes.append(result)
    assert outcomes[0].rows == outcomes[1].rows  # test labels changed, selection rows did not
    assert outcomes[0].best_test != outcomes[1].best_test
    with open(tmp_path / "a" / "sweep_results.json") as f:
        payload = json.load(f)
    assert payload["best"]["run"] == payload["best_test"]["run"] == 2
