"""Where a POST /v1/route request's Python time goes, without HTTP: the service in-process.

    python benchmarks/profile_route.py                  # 20,000 requests, 50 concurrent
    python benchmarks/profile_route.py --requests 5000 --top 25

`proteus.serving.server.RouteService.handle` (parse, micro-batch, encode, route, records, JSON
answer) is driven by --concurrency coroutines on one event loop, with the quickstart-sized hashing
artifact of `bench_gateway.py` (11 models, random weights). Printed: the fixed costs of one
request routed alone (median microseconds of each stage: parse, encode, the routing call, records,
JSON answer), microseconds per request under --concurrency (one timed run), then cProfile's --top
functions by own time over a second run (cProfile slows every call, so compare the functions with
each other, not with the other figures). HTTP handling (uvicorn, httptools) is not included:
`bench_gateway.py` measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import tempfile
import time
import timeit

import numpy as np
from bench_gateway import QUERY, text_artifact  # benchmarks/ is on sys.path when run as a script

from proteus.serving import Router, dispatch, protocol, server


def stage_costs(router: Router, service: server.RouteService, body: bytes,
                number: int = 500) -> dict[str, float]:
    """Median µs of each stage of one request routed alone (a batch of one)."""
    items, _ = protocol.parse_body(body, router, service.settings)
    x = router.encode([items[0].text])
    tau = np.full(1, items[0].point.operating_tau, np.float32)
    decisions = router.run(x, tau)
    record = dispatch.route_items(router, items)[0]
    stages = {"parse": lambda: protocol.parse_body(body, router, service.settings),
              "encode": lambda: router.encode([items[0].text]),
              "routing call": lambda: router.run(x, tau),
              "records": lambda: router.records(router.assemble(decisions, [items[0].point],
                                                                np.zeros(1, np.int64))),
              "JSON answer": lambda: server.json_bytes(record),
              "all (route_items + JSON)": lambda: server.json_bytes(
                  dispatch.route_items(router, items)[0])}
    return {name: float(np.median(timeit.repeat(fn, number=number // 10, repeat=10)))
            / (number // 10) * 1e6 for name, fn in stages.items()}


async def drive(service: server.RouteService, body: bytes, requests: int,
                concurrency: int) -> float:
    """Seconds for `requests` calls of `service.handle(body)` from `concurrency` coroutines."""
    service.batcher.start()

    async def client():
        for _ in range(requests // concurrency):
            status, _ = await service.handle(body)
            assert status == 200, status

    start = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(concurrency)])
    seconds = time.perf_counter() - start
    await service.batcher.stop()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--top", type=int, default=15, help="functions listed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        router = Router.load(text_artifact(os.path.join(tmp, "artifact")), warmup=256)
        service = server.RouteService(router, server.ServerSettings())
        body = json.dumps({"query": QUERY, "tau": 0.8}).encode()
        asyncio.run(drive(service, body, 2_000, args.concurrency))  # warm-up
        for name, micros in stage_costs(router, service, body).items():
            print(f"one request alone, {name}: {micros:.1f} µs")
        seconds = asyncio.run(drive(service, body, args.requests, args.concurrency))
        print(f"{seconds / args.requests * 1e6:.1f} µs per request ({args.requests} requests, "
              f"{args.concurrency} concurrent, inline routing: {service.batcher.inline})")
        profile = cProfile.Profile()
        profile.runcall(asyncio.run, drive(service, body, args.requests, args.concurrency))
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
