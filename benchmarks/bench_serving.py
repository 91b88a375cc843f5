"""Serving speed: one decision from features, batched decisions/s, HTTP end to end.

    python benchmarks/bench_serving.py                       # a fresh quickstart-sized artifact
    python benchmarks/bench_serving.py --artifact=artifacts/quickstart --clients=50

Without --artifact it exports randomly initialised parameters of the quickstart shapes (11 models,
64 features, trunk 256, policy 128, 16 lanes): speed does not depend on the weights. The HTTP
part starts `python -m launch.serve` in a subprocess on a loopback port and drives it with
--clients concurrent keep-alive connections (a minimal asyncio HTTP/1.1 client, so the client's
own cost stays small), --requests each; it reports client-side latency and any non-200 answer,
then does the same against a bare ASGI app on the same uvicorn stack that answers a constant: the
floor that HTTP parsing, the event loop and the client set on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import uvicorn

from experiments.configs import common
from proteus import serving
from proteus.pipeline import config as config_lib
from proteus.training import export, networks


def quickstart_artifact(out: str, encoder: dict | None = None) -> str:
    """Export random parameters of the quickstart shapes to `out` (precomputed 64-d features
    unless another `Encoder.to_config()` is given); one policy operating point per lane."""
    spec = config_lib.router_spec(common.base_config(), 11, 64, 0)._replace(folds=1, groups=0)
    rng = np.random.default_rng(0)
    stats = networks.data_stats(rng.normal(size=(512, 64)), rng.uniform(1e-5, 1e-3, (512, 11)))
    params = jax.jit(networks.init_params, static_argnums=0)(spec, jax.random.key(0), stats)
    taus = np.linspace(0.6, 0.95, 16)
    operating = {"tau": taus[::-1].tolist(), "model": [-1] * 16,
                 "accuracy": (taus[::-1] + 0.01).tolist(),
                 "cost": np.geomspace(1e-3, 1e-5, 16).tolist(),
                 "n_heldout": 1000, "margin_z": 1.0}
    bundle = export.RouterBundle(
        spec=spec, params=params, lane_taus=taus.astype(np.float32),
        lane_lams=np.linspace(0.5, 20.0, 16, dtype=np.float32),
        lane_accuracy=np.linspace(0.61, 0.96, 16, dtype=np.float32),
        models=[f"model-{i}" for i in range(11)],
        encoder=encoder or {"id": "precomputed:dim=64", "kind": "precomputed", "dim": 64},
        operating=operating,
        prices={f"model-{i}": (1e-7 * (i + 1), 2e-7 * (i + 1)) for i in range(11)})
    export.write_artifact(bundle, out)
    return out


def percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1e3
    return f"p50 {np.median(ms):.3f} ms  p90 {np.percentile(ms, 90):.3f} ms  " \
           f"p99 {np.percentile(ms, 99):.3f} ms"


def bench_single(router: serving.Router, n: int) -> None:
    x = np.random.default_rng(1).normal(size=(1, router.feature_dim)).astype(np.float32)
    router.decide(x, 0.8)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        router.decide(x, 0.8)
        times.append(time.perf_counter() - start)
    print(f"one query from features (Router.decide, batch 1, {n} calls): {percentiles(times)}")


def bench_batched(router: serving.Router, sizes: list[int], seconds: float = 2.0) -> None:
    for size in sizes:
        x = np.random.default_rng(2).normal(size=(size, router.feature_dim)).astype(np.float32)
        router.decide(x, 0.8)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            router.decide(x, 0.8)
            count += size
        rate = count / (time.perf_counter() - start)
        print(f"batched Router.decide, batch {size}: {rate:,.0f} decisions/s")


async def _client(port: int, body: bytes, n: int, latencies: list[float], errors: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (f"POST /v1/route HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    for _ in range(n):
        start = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n")
                      if h.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - start)
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append(head.split(b"\r\n")[0])
    writer.close()
    await writer.wait_closed()


async def _load(port: int, body: bytes, clients: int, requests: int):
    latencies: list[float] = []
    errors: list = []
    start = time.perf_counter()
    await asyncio.gather(*[_client(port, body, requests, latencies, errors)
                           for _ in range(clients)])
    return latencies, errors, time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _constant_app(scope, receive, send) -> None:
    """The HTTP floor: a bare ASGI app that reads the body and answers a constant decision."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = json.dumps({"model": "m", "mu": 0.5, "p_hat": {}, "c_hat": {}}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def bench_http(cmd: list[str], port: int, dim: int, clients: int, requests: int,
               label: str) -> None:
    """Start `cmd` (a server on `port`), load it with `clients` connections, report."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        body = json.dumps({"features": [0.1] * dim, "tau": 0.8}).encode()
        for _ in range(600):  # wait for the server (JAX import and warm-up)
            try:
                asyncio.run(_load(port, body, 1, 1))
                break
            except OSError:
                time.sleep(0.1)
        asyncio.run(_load(port, body, clients, 20))  # warm the connections and buckets
        latencies, errors, wall = asyncio.run(_load(port, body, clients, requests))
        print(f"{label}, {clients} concurrent clients x {requests} requests: "
              f"{percentiles(latencies)}  {len(latencies) / wall:,.0f} req/s  "
              f"errors {len(errors)}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bench_servers(artifact: str, dim: int, clients: int, requests: int) -> None:
    """PROTEUS's server, then the same uvicorn stack answering a constant (the floor)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "launch.serve", f"--artifact={artifact}", f"--port={port}",
           "--log_level=warning"]
    bench_http(cmd, port, dim, clients, requests, "HTTP POST /v1/route (launch.serve)")
    port = _free_port()
    cmd = [sys.executable, __file__, f"--serve_floor={port}"]
    bench_http(cmd, port, dim, clients, requests, "HTTP floor (same uvicorn, constant answer)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", default=None)
    parser.add_argument("--single_calls", type=int, default=5000)
    parser.add_argument("--batch_sizes", default="1024,4096,16384")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200, help="per client")
    parser.add_argument("--no_http", action="store_true")
    parser.add_argument("--serve_floor", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:  # the subprocess of the HTTP floor measurement
        uvicorn.Server(uvicorn.Config(_constant_app, port=args.serve_floor, log_level="warning",
                                      access_log=False, ws="none", lifespan="off")).run()
        return
    with tempfile.TemporaryDirectory() as tmp:
        artifact = args.artifact or quickstart_artifact(os.path.join(tmp, "artifact"))
        router = serving.Router.load(artifact)
        print(f"artifact {artifact}: {len(router.models)} models, D={router.feature_dim}, "
              f"backend {jax.default_backend()}, {os.cpu_count()} CPUs")
        bench_single(router, args.single_calls)
        bench_batched(router, [int(s) for s in args.batch_sizes.split(",")])
        if not args.no_http:
            bench_servers(artifact, router.feature_dim, args.clients, args.requests)


if __name__ == "__main__":
    main()
