"""Route queries with an exported router from the command line; one line per decision.

    python -m launch.route --artifact=A --tau=0.9 "What is 2 + 2?" "Prove Fermat's last theorem"
    python -m launch.route --artifact=A --tau=0.9 --json "What is 2 + 2?"  # the full records
    python -m launch.route --artifact=A --tau=0.9 --features=0.1,-0.3,...   # precomputed features
    python -m launch.route --artifact=A --tau=0.9 --input=queries.jsonl --output=decisions.jsonl

Batch mode (JSON records) and the output formats: see `proteus.serving.route_cli`.
"""

import sys

from absl import app, flags

from experiments import logs, outputs
from proteus import operating
from proteus.serving import route_cli

_ARTIFACT = flags.DEFINE_string("artifact", None, "Artifact directory (from launch.export).")
_TAU = flags.DEFINE_float("tau", None, "Accuracy target τ in [0, 1] (JSONL lines may override).")
_TASK = flags.DEFINE_string("task", None, "The queries' task, for an artifact with a task prior "
                            "(one of its manifest's tasks; JSONL lines may override).")
_FEATURES = flags.DEFINE_list("features", None, "One query's features, comma-separated.")
_INPUT = flags.DEFINE_string("input", None, "JSONL file of queries (batch mode).")
_OUTPUT = flags.DEFINE_string("output", None, "Where batch decisions go (default stdout).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --output file.")
_FALLBACK = flags.DEFINE_enum("fallback", None, list(operating.FALLBACKS),
                              "Infeasible τ policy (default: the artifact's).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 1024, "Lines routed per call in batch mode.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Progress bar in batch mode (large files).")
_JSON = flags.DEFINE_bool("json", False, "Print each decision's full JSON record (p̂, ĉ, μ, λ, "
                          "operating point, reason) instead of one short line.")


def main(argv):
    logs.job_logging()  # warnings only: no library noise around the decisions
    try:
        outputs.check_new_file(_OUTPUT.value, "output", _OVERWRITE.value)
        return route_cli.run(_ARTIFACT.value, _TAU.value, argv[1:], _FEATURES.value,
                             _INPUT.value, _OUTPUT.value, _FALLBACK.value, _BATCH_SIZE.value,
                             _PROGRESS.value, _TASK.value, _JSON.value)
    except route_cli.UsageError as err:
        raise app.UsageError(str(err)) from err
    except (ValueError, OSError) as err:  # the artifact, --input or --output: one line naming it
        sys.exit(f"launch.route: {err}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["artifact"])
    app.run(main)
