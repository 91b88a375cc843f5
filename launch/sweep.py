"""Train a grid of seeds x hyperparameters as vmapped runs and write one results table.

    python -m launch.sweep --config=experiments/configs/quickstart.py --workdir=runs/sweep
    python -m launch.sweep --config=experiments/configs/quickstart.py:smoke --workdir=/tmp/sw \
        --sweep.seeds=2 --sweep.policy_lr="(3e-4, 1e-3)" --sweep.lanes="(4, 8)"
    srun python -m launch.sweep ...          # multi-host: see launch/slurm/, launch/tpu_vm.sh

Writes WORKDIR/sweep_results.{csv,md,json} (a row per run, the best run by `sweep.BEST_RULE`)
and WORKDIR/group_XXX/ (checkpoints and metrics of each compiled program). Kept short on purpose:
flags and one call, `experiments.sweep.launch`.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import logs, runs, sweep

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variants].")
with runs.unknown_fields_exit("launch.sweep", sys.argv):  # --sweep.<field>= is applied here
    _SWEEP = config_flags.DEFINE_config_dict("sweep", sweep.default_grid(),
                                             "The grid and its placement (sweep.default_grid).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where groups, tables and the plan go.")
_PROGRESS = flags.DEFINE_bool("progress", False, "Show a progress bar per training phase.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logs.job_logging()  # warnings only: no library noise between the progress bars
    with runs.one_line_errors("launch.sweep"):
        summary = sweep.launch(_CONFIG.value, _WORKDIR.value, _SWEEP.value,
                               progress=_PROGRESS.value)
    if summary is not None:  # the primary process
        print(summary)


if __name__ == "__main__":
    app.run(main, flags_parser=runs.config_flags_parser("launch.sweep"))
