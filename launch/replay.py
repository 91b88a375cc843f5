"""Replay benchmark of the online floor controller under drift (see `experiments/replay.py`).

    python -m launch.replay --artifact=artifacts/rb --scenario=model_regression --tau=0.75 \\
        --feedback_fraction=0.2 --delay=200 --workdir=runs/replay_rb_regression

Rebuilds the artifact's test split (--split=val or calib: a held-out split on which the
controller's settings are tuned) from its recorded data source (or --source), streams
--n requests through the static, static certified and online routers (--via=http: the online
router through a running gateway, fed over HTTP; --via=both: both, and how often they agree),
and writes
WORKDIR/replay.json, WORKDIR/replay.png and prints the summary table and the done-when checks.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from experiments import logs, outputs
from proteus.serving import Router, extras

with extras.serve_extra("launch.replay", launcher=True):  # one line naming the serve extra
    from experiments import replay as rp
    from proteus.online import controller as ctl
    from proteus.online import drift

_ARTIFACT = flags.DEFINE_string("artifact", None, "An exported router artifact.", required=True)
_SOURCE = flags.DEFINE_string("source", None, "Data spec of the artifact's training data "
                              "(default: the one its manifest records).")
_SCENARIO = flags.DEFINE_enum("scenario", "stationary", rp.SCENARIOS, "Drift scenario.")
_TAU = flags.DEFINE_float("tau", None, "Accuracy target τ.", required=True)
_FRACTION = flags.DEFINE_float("feedback_fraction", 0.2, "Share of requests with feedback.")
_DELAY = flags.DEFINE_integer("delay", 200, "Feedback arrives this many requests later.")
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "val", "calib"], "The artifact's split to "
                           "replay (tune on val or calib, measure on test; calib is where the "
                           "static certified point was certified).")
_N = flags.DEFINE_integer("n", 20_000, "Requests streamed.")
_VIA = flags.DEFINE_enum("via", "inprocess", list(rp.VIAS), "The online router in-process, "
                         "through a running gateway over HTTP (`experiments.http_replay`), or "
                         "both (with their agreement).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the draws and the feedback.", lower_bound=0)
_SEEDS = flags.DEFINE_list("seeds", None, "Several seeds in one process (overrides --seed); "
                           "each writes WORKDIR/seed<N>/.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
flags.register_validator("seeds", lambda seeds: seeds is None or all(
    s.strip().isdigit() for s in seeds), "--seeds: integers >= 0, e.g. --seeds=0,1,2")
_CONTROLLER_HELP = {  # ControllerConfig fields a replay sets (defaults: the dataclass's)
    "k_i": "Integral gain.", "k_p": "Proportional gain.", "k_d": "Derivative gain.",
    "margin": "Setpoint τ + margin.", "forget": "Forgetting factor ρ.",
    "boost": "Gain multiplier on a significant shortfall.", "boost_z": "... significant: z.",
    "smith": "Delay compensation weight.", "dead_band": "Offsets below this serve the static "
    "point itself.", "confirm_forget": "> 0: leave the static point only while an estimate with "
    "this forgetting factor is below τ too."}
_CONTROLLER = {name: flags.DEFINE_float(name, getattr(ctl.ControllerConfig, name), text)
               for name, text in _CONTROLLER_HELP.items()}
_BELOW = flags.DEFINE_bool("allow_below_certified", ctl.ControllerConfig.allow_below_certified,
                           "Let the knob go below the static (certified) point once trusted.")
_MIN_SLOPE = flags.DEFINE_float("knob_min_slope", rp.ReplayConfig.knob_min_slope,
                                "Knob slope floor through flat lanes (`adapter.knob`).")
_DRIFT = flags.DEFINE_bool("drift", drift.DriftConfig.enabled, "Per-model drift test and "
                           "routing around a model that falls below its p̂.")
_DRIFT_HELP = {  # DriftConfig fields a replay sets (defaults: the dataclass's)
    "tolerance": "H_ok: a model realises at least p̂ − tolerance.",
    "shift": "H_fallen: it realises p̂ − shift or less.",
    "arl": "Feedbacks of a model between false alarms, at least (threshold log(arl))."}
_DRIFT_FLAGS = {name: flags.DEFINE_float(f"drift_{name}", getattr(drift.DriftConfig, name), text)
                for name, text in _DRIFT_HELP.items()}
_MIX = flags.DEFINE_bool("drift_mix", drift.DriftConfig.mix, "Serve a stream off its point, "
                         "while models are routed around, on the held-out envelope.")
_PROBE_EVERY = flags.DEFINE_integer("probe_every", drift.DriftConfig.probe_every,
                                    "While excluded, 1 in this many of a model's requests "
                                    "probes it.")
_BUDGET = flags.DEFINE_float("budget", None, "USD per request (price_change: default the "
                             "static certified router's spend before the shift).")
_PRIORITY = flags.DEFINE_enum("priority", "floor", ["floor", "budget"],
                              "Which constraint wins when both cannot hold.")


def main(argv):
    del argv
    logs.job_logging()  # warnings only: no library noise around the table
    try:  # a bad setting, artifact or data source: one line naming it (ValueErrors, OSErrors)
        controller = ctl.ControllerConfig(
            budget=_BUDGET.value, priority=_PRIORITY.value, allow_below_certified=_BELOW.value,
            **{name: flag.value for name, flag in _CONTROLLER.items()})
        drift_cfg = drift.DriftConfig(enabled=_DRIFT.value, probe_every=_PROBE_EVERY.value,
                                      mix=_MIX.value,
                                      **{name: flag.value for name, flag in _DRIFT_FLAGS.items()})
        seeds = [int(s) for s in _SEEDS.value] if _SEEDS.value else [_SEED.value]
        cfgs = [rp.ReplayConfig(scenario=_SCENARIO.value, tau=_TAU.value, n=_N.value,
                                feedback_fraction=_FRACTION.value, delay=_DELAY.value,
                                seed=seed, controller=controller, drift=drift_cfg,
                                knob_min_slope=_MIN_SLOPE.value) for seed in seeds]
        router = Router.load(_ARTIFACT.value)
        test = rp.load_split(router.manifest, _SOURCE.value, _SPLIT.value, _ARTIFACT.value)
    except (ValueError, OSError) as err:
        sys.exit(f"launch.replay: {err}")
    for cfg in cfgs:  # one process: the router and the split load (and compile) once
        seed = cfg.seed
        workdir = os.path.join(_WORKDIR.value, f"seed{seed}") if _SEEDS.value else _WORKDIR.value
        try:
            rp.replay_to(router, test, cfg, workdir, _VIA.value,
                         artifact=os.path.abspath(_ARTIFACT.value), split=_SPLIT.value)
        except outputs.OutputDirError as err:  # checked before the replay runs
            sys.exit(f"launch.replay: {err}")


if __name__ == "__main__":
    app.run(main)
