"""proteus.pipeline.evaluation: the full evaluation (every baseline) and its AIQ sweep.

Before the sweep, AIQ was the hull of the points a router reached on the report grid, which starts
at the cheapest model's training accuracy: a router with a safety margin never reached its cheapest
point there, and its curve was sampled at about a dozen points.
"""

import jax
import numpy as np
import pytest

from experiments import redraws, runs
from proteus import pipeline
from proteus.evaluation import metrics, results
from proteus.pipeline import baselines, evaluation, routing
from tests import core_helpers

pytest_plugins = ["tests.serving_fixtures"]


def test_sweep_taus_and_on_grid_by_hand():
    config = core_helpers.tiny_config()
    config.eval.aiq_step = 0.25
    grid = np.array([0.6, 0.75])
    taus = evaluation.sweep_taus(config, grid)
    np.testing.assert_allclose(taus, [0.0, 0.25, 0.5, 0.6, 0.75, 1.0])  # 0.75 once
    config.eval.aiq_step = 0.0
    np.testing.assert_array_equal(evaluation.sweep_taus(config, grid), grid)

    block = {"accuracy": [0.5, 0.5, 0.7, 0.8, 0.9, 0.9], "cost": [1.0, 1.0, 2.0, 3.0, 4.0, 4.0],
             "feasible": [True] * 5 + [False], "reason": ["a", "b", "c", "d", "e", "f"],
             "note": "kept"}
    out = evaluation.on_grid(block, np.isin(taus, grid))
    assert out["accuracy"] == [0.8, 0.9] and out["cost"] == [3.0, 4.0]
    assert out["feasible"] == [True, True] and out["reason"] == ["d", "e"]
    assert out["note"] == "kept"
    assert out["sweep"] == {"cost": [1.0, 2.0, 3.0, 4.0], "accuracy": [0.5, 0.7, 0.8, 0.9]}


@pytest.fixture(scope="module")
def evaluated(trained):
    """The full evaluation of the serving fixtures' trained run: (results, grid, certification)."""
    ev = pipeline.evaluate(trained.run)
    return ev.results, routing.eval_taus(trained.config, trained.one.lane_taus), ev.certificate()


def test_every_router_is_reported_on_the_grid_and_scored_on_its_sweep(evaluated):
    res, grid, _ = evaluated
    results.validate_results(res, required_routers=baselines.BASELINE_NAMES[:-1] + (
        "proteus", "proteus_certified"))
    np.testing.assert_allclose(res["taus"], grid)
    for name, block in res["routers"].items():
        assert len(block["accuracy"]) == len(grid), name
        if name in ("oracle", "best_fixed"):  # one point, whatever τ
            assert "sweep" not in block
            continue
        sweep = block["sweep"]
        on_sweep = set(zip(sweep["cost"], sweep["accuracy"], strict=True))
        assert set(zip(block["cost"], block["accuracy"], strict=True)) <= on_sweep, name
        assert res["summary"][name]["aiq"] == pytest.approx(
            metrics.aiq(sweep["cost"], sweep["accuracy"], res["cost_range"])), name
    # τ = 0 is in the sweep: PROTEUS reaches a point at least as cheap as any on the grid
    proteus = res["routers"]["proteus"]
    assert min(proteus["sweep"]["cost"]) <= min(proteus["cost"])
    assert res["predictor"]["task_prior"] == []  # this run's predictor reads no task


def test_paired_differences_are_those_of_the_reported_aiq(evaluated):
    # The bootstrap runs on each router's distinct routings over the sweep; on the test split
    # itself (no resampling) its differences must be the summary's.
    res, _, _ = evaluated
    aiq = {name: s["aiq"] for name, s in res["summary"].items()}
    for name, d in res["paired_aiq"]["routers"].items():
        assert d["diff"] == pytest.approx(aiq["proteus"] - aiq[name], abs=1e-12), name
        assert d["lo"] <= d["hi"]


def test_crossfit_aiq_is_recorded_for_every_router_and_is_an_area(evaluated):
    res, _, _ = evaluated
    cv = res["aiq_crossfit"]
    assert cv["repeats"] == evaluation.CROSSFIT_REPEATS
    assert set(cv["routers"]) == set(res["paired_aiq"]["routers"]) | {"proteus"}
    assert all(0.0 < v < 1.0 for v in cv["routers"].values())


def test_results_record_the_library_versions(evaluated):
    versions = evaluated[0]["versions"]
    assert versions["jax"] == jax.__version__ and versions["python"].startswith("3.")


def test_the_certified_router_serves_a_cheap_tau_below_the_grid_cheaper(evaluated):
    # Certified below the report grid too: τ = 0 is certified by the cheapest point (every
    # accuracy is >= 0), which no grid τ's certificate reaches here.
    res, grid, certification = evaluated
    cert = certification["certification"]
    assert cert["taus"][0] == 0.0 and set(np.round(grid, 6)) <= set(np.round(cert["taus"], 6))
    assert cert["route_to"][0] == int(np.argmin(cert["cost"])) and cert["feasible"][0]
    certified = res["routers"]["proteus_certified"]
    assert min(certified["sweep"]["cost"]) < min(certified["cost"])  # the grid's cheapest point


def test_results_state_the_certificate_the_certified_router_was_scored_with(evaluated, trained):
    """proteus_certified is scored with a certificate about a window the size of the test split
    (what the test split can check); the exported one is about `certify.window` requests."""
    res, _, certification = evaluated
    n_test = trained.splits["test"].n_queries
    assert res["certificate"] == {"delta": 0.05, "window": n_test, "tolerance": 0.0,
                                  "served_window": 1000,
                                  "promise": f"P(accuracy of {n_test} requests < τ) <= 0.05"}
    assert certification["evaluation_certification"]["window"] == n_test
    assert certification["certification"]["window"] == 1000


def test_redraws_are_recorded_and_printed(trained, tmp_path):
    """`runs.evaluate(redraws=N)` (launch.evaluate --redraws) adds results.json's "redraw": the
    uncertified, window and population routers over N re-cuts at the split sizes."""
    import shutil

    workdir = tmp_path / "workdir"
    shutil.copytree(trained.workdir, workdir)
    res = runs.evaluate(trained.config, str(workdir), progress=False, baselines=False,
                        redraws=12)
    block = results.read_results(workdir / "results.json")["redraw"]
    assert block == res["redraw"] and block["redraws"] == 12
    assert block["sizes"] == {name: trained.splits[name].n_queries
                              for name in ("val", "calib", "test")}
    assert set(block["routers"]) == {"proteus", "proteus_certified", "population_certified"}
    grid = routing.eval_taus(trained.config, trained.one.lane_taus)
    for r in block["routers"].values():
        assert len(r["miss_share"]) == len(grid) and r["worst_tau"] in block["taus"]
        assert all(0.0 <= v <= 1.0 for v in r["served_share"] + r["miss_share"])
    text = redraws.format_block(block)
    assert "12 re-cuts" in text and "proteus_certified" in text and "holds:" in text
