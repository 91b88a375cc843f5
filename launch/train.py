"""Train PROTEUS, evaluate it on the test split, write DIR/results.json, report.md and plots.

    python -m launch.train --config=experiments/configs/quickstart.py --workdir=runs/quickstart
    python -m launch.train --config=experiments/configs/quickstart.py:smoke --workdir=/tmp/s \
        --config.seed=3

Flags and one call: the run is `experiments.runs.evaluate` (the library's train and evaluate,
`proteus.pipeline`, in a workdir). Bad settings, a workdir in use or started with another config,
and bad data stop the run with one line naming the cause (see `experiments.workdir`).
"""

import os

from absl import app, flags
from ml_collections import config_flags

from experiments import logs, runs
from proteus import pipeline
from proteus.pipeline import auto

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variants].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar with ETA.")
_ALLOW_CHANGE = flags.DEFINE_list(
    "allow_config_change", [], "Config fields (e.g. train.dual_lr) that may differ from the "
    "config the workdir was started with when resuming it.")
_ALLOW_RETRAIN = flags.DEFINE_bool(
    "allow_retrain", False, "Train from scratch in a workdir whose results.json is there but "
    "whose checkpoints are gone (refused otherwise: it would overwrite those results).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logs.job_logging()  # warnings only: no library noise between the progress bars
    with runs.one_line_errors("launch.train"):
        results = runs.evaluate(_CONFIG.value, _WORKDIR.value, allow_change=_ALLOW_CHANGE.value,
                                allow_retrain=_ALLOW_RETRAIN.value, progress=_PROGRESS.value,
                                baselines=False)
    if "auto" in results:
        print(auto.describe(results["auto"]), end="\n\n")
    print(pipeline.compliance_table(results))  # both routers, units, legend and promises
    workdir = os.path.abspath(_WORKDIR.value)
    print(f"\nwrote {workdir}: {', '.join(runs.output_files())}")
    artifact = os.path.join("artifacts", os.path.basename(workdir))
    print(f"next, export it: python -m launch.export --workdir={_WORKDIR.value} --out={artifact}")


if __name__ == "__main__":
    app.run(main, flags_parser=runs.config_flags_parser("launch.train"))
