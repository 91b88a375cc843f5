"""Replay benchmark of the online floor controller under drift (see `experiments/replay.py`).

    python -m launch.replay --artifact=artifacts/rb --scenario=model_regression --tau=0.75 \\
        --feedback_fraction=0.2 --delay=200 --workdir=runs/replay_rb_regression

Rebuilds the artifact's test split (--split=val: its val split, on which the controller's
settings are tuned) from its recorded data source (or --source), streams
--n requests through the static, static certified and online routers, and writes
WORKDIR/replay.json, WORKDIR/replay.png and prints the summary table and the done-when checks.
"""

from __future__ import annotations

import json
import os

from absl import app, flags, logging

from experiments import replay as rp
from proteus.online import controller as ctl
from proteus.serving import Router

_ARTIFACT = flags.DEFINE_string("artifact", None, "An exported router artifact.", required=True)
_SOURCE = flags.DEFINE_string("source", None, "Data spec of the artifact's training data "
                              "(default: the one its manifest records).")
_SCENARIO = flags.DEFINE_enum("scenario", "stationary", rp.SCENARIOS, "Drift scenario.")
_TAU = flags.DEFINE_float("tau", None, "Accuracy target τ.", required=True)
_FRACTION = flags.DEFINE_float("feedback_fraction", 0.2, "Share of requests with feedback.")
_DELAY = flags.DEFINE_integer("delay", 200, "Feedback arrives this many requests later.")
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "val"], "The artifact's split to replay "
                           "(tune on val, measure on test).")
_N = flags.DEFINE_integer("n", 20_000, "Requests streamed.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the draws and the feedback.")
_SEEDS = flags.DEFINE_list("seeds", None, "Several seeds in one process (overrides --seed); "
                           "each writes WORKDIR/seed<N>/.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_K_I = flags.DEFINE_float("k_i", ctl.ControllerConfig.k_i, "Integral gain.")
_K_P = flags.DEFINE_float("k_p", ctl.ControllerConfig.k_p, "Proportional gain.")
_K_D = flags.DEFINE_float("k_d", ctl.ControllerConfig.k_d, "Derivative gain.")
_MARGIN = flags.DEFINE_float("margin", ctl.ControllerConfig.margin, "Setpoint τ + margin.")
_FORGET = flags.DEFINE_float("forget", ctl.ControllerConfig.forget, "Forgetting factor ρ.")
_BOOST = flags.DEFINE_float("boost", ctl.ControllerConfig.boost, "Gain multiplier on a "
                            "significant shortfall.")
_BOOST_Z = flags.DEFINE_float("boost_z", ctl.ControllerConfig.boost_z, "... significant: z.")
_SMITH = flags.DEFINE_float("smith", ctl.ControllerConfig.smith, "Delay compensation weight.")
_MIN_SLOPE = flags.DEFINE_float("knob_min_slope", rp.ReplayConfig.knob_min_slope,
                                "Knob slope floor through flat lanes (`adapter.knob`).")
_BUDGET = flags.DEFINE_float("budget", None, "USD per request (price_change: default the "
                             "static certified router's spend before the shift).")
_PRIORITY = flags.DEFINE_enum("priority", "floor", ["floor", "budget"],
                              "Which constraint wins when both cannot hold.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    controller = ctl.ControllerConfig(k_i=_K_I.value, k_p=_K_P.value, k_d=_K_D.value,
                                      margin=_MARGIN.value, forget=_FORGET.value,
                                      boost=_BOOST.value, boost_z=_BOOST_Z.value,
                                      smith=_SMITH.value, budget=_BUDGET.value,
                                      priority=_PRIORITY.value)
    router = Router.load(_ARTIFACT.value)
    test = rp.load_split(router.manifest, _SOURCE.value, _SPLIT.value)
    seeds = [int(s) for s in _SEEDS.value] if _SEEDS.value else [_SEED.value]
    for seed in seeds:  # one process: the router and the split load (and compile) once
        cfg = rp.ReplayConfig(scenario=_SCENARIO.value, tau=_TAU.value, n=_N.value,
                              feedback_fraction=_FRACTION.value, delay=_DELAY.value,
                              seed=seed, controller=controller,
                              knob_min_slope=_MIN_SLOPE.value)
        workdir = os.path.join(_WORKDIR.value, f"seed{seed}") if _SEEDS.value else _WORKDIR.value
        run_one(router, test, cfg, workdir)


def run_one(router: Router, test, cfg: rp.ReplayConfig, workdir: str) -> None:
    """One replay: WORKDIR/replay.json and replay.png, the table and checks on stdout."""
    payload = rp.replay(router, test, cfg)
    payload["artifact"] = os.path.abspath(_ARTIFACT.value)
    payload["split"] = _SPLIT.value
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "replay.json"), "w") as f:
        json.dump(payload, f, indent=1)
    rp.plot(payload, os.path.join(workdir, "replay.png"))
    print(f"{cfg.scenario} at τ={cfg.tau}, seed {cfg.seed}, on {test.name} ({_SPLIT.value} "
          f"split, {test.n_queries} queries; {cfg.n} requests, feedback "
          f"{cfg.feedback_fraction:.0%} after {cfg.delay})")
    print(rp.table(payload))
    print("checks:", json.dumps(payload["checks"]))

if __name__ == "__main__":
    app.run(main)
