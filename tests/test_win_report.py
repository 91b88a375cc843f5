"""benchmarks/win_report.py: issue 9's checks on results.json files, hand-checked."""

import json

import pytest

from benchmarks import win_report


def _results(omnirouter_aiq: float) -> dict:
    """Three τ; the uncertified router meets 0.5 and misses 0.6 by 0.01 (0.7 infeasible); the
    certified one costs twice as much at both τ it certifies and misses none."""
    return {
        "dataset": "toy", "n_queries": 100, "models": ["a", "b"],
        "taus": [0.5, 0.6, 0.7],
        "best_fixed": {"model": "b", "accuracy": 0.8, "cost": 1.0},
        "oracle": {"accuracy": 0.95},
        "routers": {
            "proteus": {"accuracy": [0.55, 0.59, 0.75], "cost": [1.0, 2.0, 3.0],
                        "feasible": [True, True, False]},
            "proteus_certified": {"accuracy": [0.6, 0.7, 0.8], "cost": [2.0, 4.0, 6.0],
                                  "feasible": [True, True, False]}},
        "summary": {"proteus": {"aiq": 0.80}, "proteus_certified": {"aiq": 0.79},
                    "omnirouter": {"aiq": omnirouter_aiq}, "oracle": {"aiq": 0.95},
                    "best_fixed": {"aiq": 0.7}, "fixed:a": {"aiq": 0.6}},
    }


def test_measure_hand_checked():
    m = win_report.measure(_results(0.803))
    assert m["tops"] == {"proteus": 0.75, "proteus_certified": 0.8}
    assert m["others"] == {"proteus_certified": 0.79, "omnirouter": 0.803}  # no oracle/fixed
    assert (m["met"], m["n_feasible"]) == (1, 2)
    assert m["gap"] == pytest.approx(0.02) and m["worst_gap"] == pytest.approx(-0.01)
    assert (m["n_certified"], m["silent"], m["ratio_max"], m["ratio_mean"]) == (2, 0, 2.0, 2.0)
    assert m["goals"] == {"proteus top": False, "proteus_certified top": True, "AIQ": False,
                          "uncertified floors": False, "certified silent misses": True}
    assert win_report.measure(_results(0.801))["goals"]["AIQ"]  # 0.80 >= 0.801 − 0.002


def test_across_seeds(tmp_path, capsys):
    paths = []
    for seed, omni in enumerate((0.803, 0.797)):
        paths.append(str(tmp_path / f"seed{seed}.json"))
        with open(paths[-1], "w") as f:
            json.dump(_results(omni), f)
    win_report.main(["--across", *paths])
    out = capsys.readouterr().out
    assert "== toy: 2 file(s); proteus AIQ 0.8000, 0.8000" in out
    # −0.003 and +0.003: mean 0, the goal (>= −0.002) held on one seed of two
    assert "AIQ(proteus) − AIQ(omnirouter): mean +0.0000 [-0.0030, +0.0030]; goal held in 1/2" \
        in out
    assert "uncertified met: 1/2 (+0.0200), 1/2 (+0.0200)" in out
    assert "goals met in: proteus top 0/2, proteus_certified top 2/2, AIQ 1/2" in out


def test_crossfit_aiq_is_reported_beside_the_aiq(tmp_path, capsys):
    paths = []
    for seed, omni_cv in enumerate((0.790, 0.799)):
        res = _results(0.803)
        res["aiq_crossfit"] = {"repeats": 20, "seed": seed,
                               "routers": {"proteus": 0.795, "omnirouter": omni_cv}}
        paths.append(str(tmp_path / f"seed{seed}.json"))
        with open(paths[-1], "w") as f:
            json.dump(res, f)
    assert win_report.measure(_results(0.803))["cv"] is None  # older files: nothing to print
    win_report.main(paths[:1])
    assert "cross-fitted AIQ (hull chosen on half the test split, measured on the other): " \
        "proteus 0.7950; omnirouter 0.7900" in capsys.readouterr().out
    win_report.main(["--across", *paths])
    out = capsys.readouterr().out
    # +0.005 and −0.004: mean +0.0005, within 0.002 on one of two; not one of the goals
    assert "cross-fitted AIQ(proteus) − AIQ(omnirouter): mean +0.0005 [-0.0040, +0.0050]; " \
        "within 0.002 in 1/2" in out
    assert "goals met in: proteus top 0/2, proteus_certified top 2/2, AIQ 0/2" in out
