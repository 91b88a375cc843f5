"""benchmarks/bench_core.py part (b) runs end to end on its --quick sizes (a smoke test, not a
timing): both ways of packing runs into one program are compiled, run and reported."""

import sys

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_core  # noqa: E402


def test_runs_part_reports_vmapped_and_in_sequence(capsys):
    bench_core.main(["--quick", "--only", "runs", "--run-batch", "1"])
    out = capsys.readouterr().out
    for phase in ("predictor", "policy"):
        line = next(x for x in out.splitlines() if x.strip().startswith(phase))
        assert "one program, all vmapped" in line and "--run-batch 1 (groups of 1 in sequence)" \
            in line, line
