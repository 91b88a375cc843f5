"""Re-render report.md and the plots of an evaluated run from its results.json (no training).

    python -m launch.report --results=runs/mmlu_pro/results.json --out=runs/mmlu_pro
    python -m launch.report --results=runs/rb/results.json --out=docs/img --prefix=rb_ \
        --only=accuracy_vs_tau,cost_accuracy

Writes <out>/<prefix>report.md and <out>/<prefix><plot>.png (see
`proteus.evaluation.report.write_all`).
"""

import sys
from collections.abc import Sequence
from pathlib import Path

from absl import app, flags

from experiments import logs
from proteus.evaluation import report, results

_RESULTS = flags.DEFINE_string("results", None, "A results.json written by launch.evaluate.")
_OUT = flags.DEFINE_string("out", None, "Output directory (default: the results file's).")
_PREFIX = flags.DEFINE_string("prefix", "", "Prefix of every output file name, e.g. 'rb_'.")
_ONLY = flags.DEFINE_list("only", list(report.OUTPUTS), f"Outputs to write, of {report.OUTPUTS}.")
flags.mark_flag_as_required("results")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logs.job_logging()  # warnings only: no library noise around the output
    try:
        res = results.read_results(_RESULTS.value)
        out = _OUT.value or str(Path(_RESULTS.value).parent)
        paths = report.write_all(res, out, _PREFIX.value, _ONLY.value)
    except (results.ResultsValidationError, ValueError, FileNotFoundError) as e:
        sys.exit(f"launch.report: {e}")  # one line naming the cause, exit code 1
    for p in paths:
        print(f"wrote {p}")


if __name__ == "__main__":
    app.run(main)
