"""Smoke test of the real launcher: `python -m launch.train` on the quickstart smoke config."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

SMOKE = "--config=experiments/configs/quickstart.py:smoke"

# DESIGN.md section 7: the results.json contract.
TOP_KEYS = {"dataset", "split", "n_queries", "models", "encoder", "oracle", "best_fixed", "taus",
            "routers", "summary"}
ROUTER_KEYS = {"accuracy", "cost", "feasible"}
SUMMARY_KEYS = {"floor_compliance", "target_response_corr", "max_savings_vs_best_fixed",
                "oracle_gap", "aiq", "n_infeasible"}


def _launch(*flags: str) -> subprocess.Popen:
    # Skipping LLVM's expensive passes halves CPU compile time (as tests/test_sharding does).
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_llvm_disable_expensive_passes=true"}
    return subprocess.Popen([sys.executable, "-m", "launch.train", *flags], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run with a seed override, and, concurrently, one with a mistyped override."""
    workdir = tmp_path_factory.mktemp("smoke")
    run = _launch(SMOKE, f"--workdir={workdir}", "--noprogress", "--config.seed=3")
    typo = _launch(SMOKE, f"--workdir={workdir / 'typo'}", "--noprogress",
                   "--config.train.dula_lr=1")
    typo_out, typo_err = typo.communicate(timeout=300)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-4000:]
    return workdir, out, (typo.returncode, typo_err, workdir / "typo")


def test_smoke_results_follow_the_contract(smoke_run):
    workdir, out, _ = smoke_run
    results = json.loads((workdir / "results.json").read_text())
    assert TOP_KEYS <= set(results)
    assert results["split"] == "test" and results["n_queries"] > 0
    assert len(results["models"]) == 11  # the synthetic RouterBench preset
    assert set(results["oracle"]) >= {"accuracy", "cost"}
    assert set(results["best_fixed"]) >= {"model", "accuracy", "cost"}
    n_taus = len(results["taus"])
    assert n_taus > 0 and results["taus"] == sorted(results["taus"])
    assert {"proteus", "oracle", "best_fixed"} <= set(results["routers"])
    for name, block in results["routers"].items():
        assert ROUTER_KEYS <= set(block), name
        assert len(block["accuracy"]) == len(block["cost"]) == len(block["feasible"]) == n_taus
        assert SUMMARY_KEYS <= set(results["summary"][name]), name
    proteus = results["routers"]["proteus"]
    assert len(proteus["mean_mu"]) == n_taus
    assert all(0.0 <= a <= 1.0 for a in proteus["accuracy"])
    assert all(c > 0 and math.isfinite(c) for c in proteus["cost"])
    assert "floor compliance" in out  # the launcher prints the compliance table


def test_smoke_override_reaches_the_run(smoke_run):
    workdir, _, _ = smoke_run
    config = json.loads((workdir / "config.json").read_text())
    assert config["seed"] == 3 and config["name"] == "quickstart"
    assert config["train"]["policy_steps"] == 40  # the smoke variant is applied
    assert (workdir / "checkpoints").is_dir() and (workdir / "metrics.jsonl").is_file()


def test_mistyped_override_fails(smoke_run):
    _, _, (returncode, err, typo_dir) = smoke_run
    assert returncode != 0
    assert "dula_lr" in err
    assert not (typo_dir / "results.json").exists()
