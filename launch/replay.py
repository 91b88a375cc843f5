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
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_K_I = flags.DEFINE_float("k_i", ctl.ControllerConfig.k_i, "Integral gain.")
_K_P = flags.DEFINE_float("k_p", ctl.ControllerConfig.k_p, "Proportional gain.")
_K_D = flags.DEFINE_float("k_d", ctl.ControllerConfig.k_d, "Derivative gain.")
_MARGIN = flags.DEFINE_float("margin", ctl.ControllerConfig.margin, "Setpoint τ + margin.")
_BUDGET = flags.DEFINE_float("budget", None, "USD per request (price_change: default the "
                             "static certified router's spend before the shift).")
_PRIORITY = flags.DEFINE_enum("priority", "floor", ["floor", "budget"],
                              "Which constraint wins when both cannot hold.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    controller = ctl.ControllerConfig(k_i=_K_I.value, k_p=_K_P.value, k_d=_K_D.value,
                                      margin=_MARGIN.value, budget=_BUDGET.value,
                                      priority=_PRIORITY.value)
    cfg = rp.ReplayConfig(scenario=_SCENARIO.value, tau=_TAU.value, n=_N.value,
                          feedback_fraction=_FRACTION.value, delay=_DELAY.value,
                          seed=_SEED.value, controller=controller)
    router = Router.load(_ARTIFACT.value)
    test = rp.load_split(router.manifest, _SOURCE.value, _SPLIT.value)
    payload = rp.replay(router, test, cfg)
    payload["artifact"] = os.path.abspath(_ARTIFACT.value)
    payload["split"] = _SPLIT.value
    os.makedirs(_WORKDIR.value, exist_ok=True)
    with open(os.path.join(_WORKDIR.value, "replay.json"), "w") as f:
        json.dump(payload, f, indent=1)
    rp.plot(payload, os.path.join(_WORKDIR.value, "replay.png"))
    print(f"{cfg.scenario} at τ={cfg.tau} on {test.name} ({_SPLIT.value} split, {test.n_queries} "
          f"queries; {cfg.n} requests, feedback {cfg.feedback_fraction:.0%} after {cfg.delay})")
    print(rp.table(payload))
    print("checks:", json.dumps(payload["checks"]))


if __name__ == "__main__":
    app.run(main)
