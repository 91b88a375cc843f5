"""The /v1/route profile script runs end to end on a shrunk load (a smoke test, not a timing)."""

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_profile_route_smoke():
    out = subprocess.run([sys.executable, "benchmarks/profile_route.py", "--requests", "200",
                          "--concurrency", "10", "--top", "3"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    assert "µs per request (200 requests, 10 concurrent, inline routing: True)" in out
    assert "Ordered by: internal time" in out
    for stage in ("parse", "encode", "routing call", "records", "JSON answer"):
        assert f"one request alone, {stage}: " in out
