"""Evaluate PROTEUS, its certified version and every baseline; write results, report and plots.

    python -m launch.evaluate --config=experiments/configs/routerbench.py --workdir=runs/rb

Reuses the finished training run in --workdir (training or resuming it when unfinished). Without
--config, the workdir's own config.json is used. A config that differs from the one the workdir
was started with is refused unless its fields are listed in --allow_config_change. Flags and one
call: `experiments.runs.evaluate`.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from experiments import logs, redraws, runs
from proteus import pipeline
from proteus.pipeline import auto

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variants].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir; outputs are written there.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars while encoding and training.")
_ALLOW_CHANGE = flags.DEFINE_list(
    "allow_config_change", [], "Config fields that may differ from the workdir's recorded config.")
_REDRAWS = flags.DEFINE_integer(
    "redraws", 0, "Also re-cut the held-out rows this many times (e.g. 200) and report how often "
    "each certified τ misses its promise on test (results.json's \"redraw\"); 0: no redraws.",
    lower_bound=0)
_ALLOW_RETRAIN = flags.DEFINE_bool(
    "allow_retrain", False, "Train from scratch in a workdir whose results.json is there but "
    "whose checkpoints are gone (refused otherwise: it would overwrite those results).")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    logs.job_logging()  # warnings only: no library noise between the progress bars
    with runs.one_line_errors("launch.evaluate"):
        res = runs.evaluate(_CONFIG.value, _WORKDIR.value, allow_change=_ALLOW_CHANGE.value,
                            allow_retrain=_ALLOW_RETRAIN.value, progress=_PROGRESS.value,
                            redraws=_REDRAWS.value)
    if "auto" in res:
        print(auto.describe(res["auto"]), end="\n\n")
    print(pipeline.compliance_table(res), end="\n\n")  # both routers; the rest: report.md
    if "redraw" in res:
        print(redraws.format_block(res["redraw"]), end="\n\n")
    print(f"wrote {os.path.abspath(_WORKDIR.value)}: {', '.join(runs.output_files())}")


if __name__ == "__main__":
    app.run(main, flags_parser=runs.config_flags_parser("launch.evaluate"))
