"""Train a grid of seeds x hyperparameters as vmapped runs and write one results table.

    python -m launch.sweep --config=experiments/configs/quickstart.py --workdir=runs/sweep
    python -m launch.sweep --config=experiments/configs/quickstart.py:smoke --workdir=/tmp/sw \
        --sweep.seeds=2 --sweep.policy_lr="(3e-4, 1e-3)" --sweep.lanes="(4, 8)"
    srun python -m launch.sweep ...          # multi-host: see launch/slurm/, launch/tpu_vm.sh

Writes WORKDIR/sweep_results.{csv,md,json} (a row per run, the best run by `sweep.BEST_RULE`)
and WORKDIR/group_XXX/ (checkpoints and metrics of each compiled program). Kept short on purpose:
everything lives in `experiments/sweep.py`.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import distributed, logs, sweep, validate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variants].")
_SWEEP = config_flags.DEFINE_config_dict("sweep", sweep.default_grid(),
                                         "The grid and its placement (sweep.default_grid).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where groups, tables and the plan go.")
_PROGRESS = flags.DEFINE_bool("progress", False, "Show a progress bar per training phase.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logs.job_logging()  # INFO, without Orbax's lines between the progress bars
    try:
        validate.validate(_CONFIG.value)  # before any process writes a plan or a checkpoint
        validate.validate_grid(_SWEEP.value, sweep.SWEPT)
    except validate.ConfigError as e:
        sys.exit(f"error: {e}")
    info = distributed.join_from_env()  # before anything touches a device
    result = sweep.run_sweep(_CONFIG.value, _WORKDIR.value, _SWEEP.value, progress=_PROGRESS.value)
    if info.process_index == 0:
        print(sweep.markdown_table(result.rows, result.best))
        print(f"best run {result.best['run']} by: {sweep.BEST_RULE}")
        print(f"{len(result.rows)} runs in {len(result.groups)} program(s) on mesh "
              f"{result.mesh_shape} over {info.process_count} process(es); "
              f"seconds {({k: round(v, 1) for k, v in result.seconds.items()})}")


if __name__ == "__main__":
    app.run(main)
