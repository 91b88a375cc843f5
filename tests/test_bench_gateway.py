"""benchmarks/bench_gateway.py's paced timeline (the wrk runs themselves need wrk: not tested)."""

import asyncio
import sys

from proteus.gateway import fake, runner
from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the scripts import each other by name
import bench_gateway  # noqa: E402


def test_timeline_paces_and_times_every_request():
    with runner.server_thread(fake.FakeUpstream(record=False)) as running:
        rows = asyncio.run(bench_gateway.timeline(
            running.url + "/v1/chat/completions", '{"model": "m", "messages": []}', 1.0, 20.0,
            connections=4))
    # 20 req/s for 1 s: requests due at 0, 0.05, ..., 0.95 s, each started no earlier than due
    assert len(rows) == 20
    assert all(start >= i / 20 - 1e-3 for i, (start, _, _) in enumerate(rows))
    assert all(latency > 0 and overhead == -1 for _, latency, overhead in rows)  # no gateway


def test_print_timeline_hand_checked(capsys):
    bench_gateway.print_timeline([(0.1, 5.0, 1.0), (0.5, 7.0, 2.0), (0.7, 3.0, 0.5),
                                  (1.2, 4.0, -1.0)])
    out = capsys.readouterr().out.splitlines()
    assert out[2:] == ["| 0-1 | 3 | 5.00 | 7.0 | 2.0 |", "| 1-2 | 1 | 4.00 | 4.0 | -1.0 |"]
