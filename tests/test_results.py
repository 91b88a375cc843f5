"""Tests for proteus.evaluation.results: contract validation and strict JSON (report:
test_report.py, plots: test_plots.py)."""

import copy
import json
import math
import re

import numpy as np
import pytest

from proteus.evaluation import metrics, results

TAUS = [0.8, 0.9]


def _results(**overrides) -> dict:
    routers = {
        "proteus": {
            "accuracy": [0.82, 0.91],
            "cost": [1.0, 2.0],
            "feasible": [True, True],
            "mean_mu": [0.3, 0.6],
        },
        "carrot": {"accuracy": [0.79, 0.92], "cost": [0.5, 3.0], "feasible": [True, True]},
        "best_fixed": {"accuracy": [0.93, 0.93], "cost": [4.0, 4.0], "feasible": [True, True]},
        "oracle": {"accuracy": [0.97, 0.97], "cost": [0.8, 0.8], "feasible": [True, True]},
        "fixed:small": {"accuracy": [0.6, 0.6], "cost": [0.1, 0.1], "feasible": [False, False]},
    }
    kwargs = dict(
        dataset="toy",
        models=["small", "big"],
        encoder="hashing",
        n_queries=100,
        taus=np.array(TAUS),
        oracle=(0.97, 0.8),
        best_fixed=("big", 0.93, 4.0),
        routers=routers,
        cost_range=(0.0, 4.0),
        extra={"oracle_frontier": {"taus": TAUS, "cost": [0.3, np.inf]}},
    )
    kwargs.update(overrides)
    return results.build_results(**kwargs)


def test_build_results_has_the_contract_and_summaries():
    res = _results()
    assert set(results.TOP_KEYS) <= set(res)
    assert res["split"] == "test" and res["taus"] == TAUS
    s = res["summary"]["proteus"]
    assert tuple(s) == metrics.SUMMARY_KEYS
    assert s["floor_compliance"] == 1.0
    assert s["max_savings_vs_best_fixed"] == pytest.approx(0.75)  # 1 - 1/4 at τ = 0.8
    assert s["oracle_gap"] == pytest.approx(0.06)
    assert res["summary"]["carrot"]["floor_compliance"] == 0.5
    assert res["summary"]["fixed:small"]["n_infeasible"] == 2
    assert res["oracle_frontier"]["cost"] == [0.3, None]  # inf became null
    assert res["cost_range"] == [0.0, 4.0]


def test_a_router_sweep_is_what_its_aiq_is_computed_from():
    res = _results()
    routers = copy.deepcopy(res["routers"])
    routers["carrot"]["sweep"] = {"cost": [0.0, 0.5, 3.0], "accuracy": [0.5, 0.79, 0.92]}
    swept = _results(routers=routers)
    # x = 0, 0.125, 0.75: the chord from (0, 0.5) to (0.125, 0.79), then to (0.75, 0.92), then flat
    expected = 0.125 * (0.5 + 0.79) / 2 + 0.625 * (0.79 + 0.92) / 2 + 0.25 * 0.92
    assert swept["summary"]["carrot"]["aiq"] == pytest.approx(expected)
    assert swept["summary"]["carrot"]["aiq"] > res["summary"]["carrot"]["aiq"]
    assert swept["summary"]["proteus"] == res["summary"]["proteus"]
    assert swept["routers"]["carrot"]["sweep"]["cost"] == [0.0, 0.5, 3.0]


def test_build_results_default_cost_range():
    res = _results(cost_range=None)
    assert res["cost_range"] == [0.1, 4.0]


def test_nan_becomes_null_and_file_is_strict_json(tmp_path):
    res = _results()
    # best_fixed has constant accuracy: its correlation is nan and must be written as null.
    assert res["summary"]["best_fixed"]["target_response_corr"] is None
    path = results.write_results(res, tmp_path / "run" / "results.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == res
    assert results.read_results(path) == res
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp files left


def test_read_results_names_the_file(tmp_path):
    garbled = tmp_path / "garbled.json"
    garbled.write_text("not json")
    with pytest.raises(results.ResultsValidationError,
                       match=f"^{garbled}: not a JSON file: Expecting value"):
        results.read_results(garbled)
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    with pytest.raises(results.ResultsValidationError,
                       match=re.escape(f"{other}: results['dataset']: missing key")):
        results.read_results(other)


def test_to_jsonable():
    obj = {"a": np.float32(0.5), "b": np.array([1, 2]), "c": (np.bool_(True), math.nan, -math.inf)}
    assert results.to_jsonable(obj) == {"a": 0.5, "b": [1, 2], "c": [True, None, None]}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("encoder"), r"results\['encoder'\]: missing key"),
        (lambda r: r.update(split="val"), r"results\['split'\]: expected 'test'"),
        (lambda r: r.update(n_queries=0), r"\['n_queries'\]"),
        (lambda r: r["oracle"].pop("cost"), r"\['oracle'\]\['cost'\]: missing key"),
        (lambda r: r["best_fixed"].update(model="gpt"), r"\['best_fixed'\]\['model'\]"),
        (
            lambda r: r["routers"]["carrot"]["accuracy"].pop(),
            r"\['routers'\]\['carrot'\]\['accuracy'\]: expected a list of 2 values",
        ),
        (
            lambda r: r["routers"]["carrot"]["feasible"].__setitem__(0, 1),
            r"\['routers'\]\['carrot'\]\['feasible'\]\[0\]: expected a bool",
        ),
        (
            lambda r: r["routers"]["proteus"].pop("mean_mu"),
            r"\['routers'\]\['proteus'\]\['mean_mu'\]: missing key",
        ),
        (
            lambda r: r["routers"].update(omni_router=r["routers"]["carrot"]),
            r"\['routers'\]\['omni_router'\]: unknown router",
        ),
        (
            lambda r: r["summary"].pop("carrot"),
            r"\['summary'\]\['carrot'\]: missing summary",
        ),
        (
            lambda r: r["summary"]["carrot"].pop("aiq"),
            r"\['summary'\]\['carrot'\]\['aiq'\]: missing key",
        ),
        (
            lambda r: r["summary"]["carrot"].update(n_infeasible=5),
            r"\['summary'\]\['carrot'\]\['n_infeasible'\]",
        ),
        (lambda r: r["taus"].__setitem__(1, math.nan), r"\['taus'\]\[1\]: expected a finite"),
        (
            lambda r: r["routers"]["carrot"].update(sweep={"cost": [1.0], "accuracy": []}),
            r"\['carrot'\]\['sweep'\]\['accuracy'\]: expected a list of 1 values \(one per point",
        ),
        (
            lambda r: r["routers"]["carrot"].update(sweep={"cost": []}),
            r"\['carrot'\]\['sweep'\]: expected \{'cost': \[P\]",
        ),
    ],
)
def test_validate_names_the_bad_key(mutate, message):
    res = copy.deepcopy(_results())
    mutate(res)
    with pytest.raises(results.ResultsValidationError, match=message):
        results.validate_results(res)


def test_validate_required_routers_and_extra_keys_allowed():
    res = _results()
    res["notes"] = "anything"
    res["routers"]["carrot"]["setting"] = [0.1, 0.2]
    results.validate_results(res, required_routers=("proteus", "carrot"))
    with pytest.raises(results.ResultsValidationError, match=r"\['routers'\]\['knn'\]: missing"):
        results.validate_results(res, required_routers=("knn",))
