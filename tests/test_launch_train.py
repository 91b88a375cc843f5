"""Smoke test of the real launcher: `python -m launch.train` on the quickstart smoke config.

    python -m launch.train --config=experiments/configs/quickstart.py:smoke --workdir=TMP \
        --noprogress --config.seed=3
"""

import fcntl
import json
import math
import os
import subprocess
import sys

import pytest

from experiments import runs
from tests import core_helpers
from tests.conftest import REPO_ROOT

# DESIGN.md section 7: the results.json contract.
TOP_KEYS = {"dataset", "split", "n_queries", "models", "encoder", "oracle", "best_fixed", "taus",
            "routers", "summary"}
ROUTER_KEYS = {"accuracy", "cost", "feasible"}
SUMMARY_KEYS = {"floor_compliance", "target_response_corr", "max_savings_vs_best_fixed",
                "oracle_gap", "aiq", "n_infeasible"}


@pytest.fixture(scope="module")
def smoke_run():
    """The smoke run with `--config.seed=3` and, beside it, one with a mistyped override.

    Both are started by tests/core_helpers (in the background, as soon as the first core test
    module runs, or here if this module runs alone); this waits for them.
    """
    launches = core_helpers.start_launcher_smoke()
    run, workdir = launches["smoke"]
    typo, typo_dir = launches["typo"]
    _, typo_err = typo.communicate(timeout=300)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-4000:]
    return workdir, (out, err), (typo.returncode, typo_err, typo_dir)


def test_smoke_results_follow_the_contract(smoke_run):
    workdir, (out, _), _ = smoke_run
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
    assert "compliance" in out  # the launcher prints the compliance table


def test_main_job_prints_both_routers_writes_the_report_and_no_noise(smoke_run):
    """Issue 28 item 4: both routers with units, a legend and their promises; report.md and the
    plots written and named; and on stderr (no progress bar here) nothing at all: no absl INFO
    lines, no Orbax checkpointing internals."""
    workdir, (out, err), _ = smoke_run
    assert "proteus (uncertified)" in out and "proteus_certified (served by export)" in out
    assert "USD per 1,000 queries" in out and "legend:" in out and "promises:" in out
    results = json.loads((workdir / "results.json").read_text())
    promise = results["certificate"]["promise"]
    assert promise in " ".join(out.split())
    for name in runs.output_files():
        assert (workdir / name).stat().st_size > 0, name
    assert f"wrote {workdir}: {', '.join(runs.output_files())}" in out
    assert "proteus_certified" in (workdir / "report.md").read_text()
    assert "orbax" not in err.lower() and "I1" not in err and err == "", err[-2000:]


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


def _rerun(workdir, *flags):
    """`launch.train` again on the finished smoke workdir (it stops before loading data)."""
    return subprocess.run(
        [sys.executable, "-m", "launch.train", *core_helpers.LAUNCH_SMOKE,
         f"--workdir={workdir}", "--config.seed=3", *flags],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)


def test_rerun_with_changed_config_is_refused_and_run_kept(smoke_run):
    """Issue 11 item 3: `--config.lanes.n=8` on a finished workdir used to overwrite config.json
    and die in a shape error; now it is refused up front, naming the field."""
    workdir, _, _ = smoke_run
    before = (workdir / "config.json").read_bytes()
    done = _rerun(workdir, "--config.lanes.n=8")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "lanes.n: recorded 4, now 8" in done.stderr
    assert "--allow_config_change=lanes.n" in done.stderr
    assert (workdir / "config.json").read_bytes() == before


def test_second_run_on_a_busy_workdir_is_refused(smoke_run):
    """Issue 11 item 7: two runs on one workdir interleaved; the second now stops at the lock."""
    workdir, _, _ = smoke_run
    fd = os.open(workdir / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a run in progress
    try:
        done = _rerun(workdir)
    finally:
        os.close(fd)
    assert done.returncode == 1 and "is in use by another run" in done.stderr
