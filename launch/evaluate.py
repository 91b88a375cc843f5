"""Evaluate PROTEUS, its certified version and every baseline; write results, report and plots.

    python -m launch.evaluate --config=experiments/configs/routerbench.py --workdir=runs/rb

Reuses the finished training run in --workdir (training or resuming it when unfinished). Without
--config, the workdir's own config.json is used.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import evaluation, harness, pipeline

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variants].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir; outputs are written there.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar while training.")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    config = _CONFIG.value or pipeline.load_config(_WORKDIR.value)
    res = harness.run_evaluation(config, _WORKDIR.value, progress=_PROGRESS.value)
    for router in ("proteus", "proteus_certified"):
        print(evaluation.compliance_table(res, router), end="\n\n")
    print(f"report: {_WORKDIR.value}/report.md")


if __name__ == "__main__":
    app.run(main)
