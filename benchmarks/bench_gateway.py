"""Gateway load benchmark with wrk: bare app, /v1/route, and the proxy, under the same load.

    python benchmarks/bench_gateway.py                        # 5 s per run, 50 and 500 connections
    python benchmarks/bench_gateway.py --duration=10 --connections=50
    python benchmarks/bench_gateway.py --connections=500 --targets=gateway --timeline

Four servers run on loopback, each in its own process on the same uvicorn stack (httptools and
uvloop when installed): a bare ASGI app answering a constant (the floor), `launch.serve` (POST
/v1/route with a text query), a fake zero-latency OpenAI upstream (`proteus.gateway.fake`, also
loaded directly: the gateway's added latency is its latency minus this one's), and
`launch.gateway` in front of it (POST /v1/chat/completions with an API key; keys, rate limit and
usage accounting all on). The router is a quickstart-sized artifact (11 models, 64-d hashing
encoder) with random weights: speed does not depend on them. wrk (found on PATH, else installed
with apt-get when run as root; the script says which) drives each for --duration seconds after a
1 s warm-up; a Lua hook counts non-200 answers and collects every x-proteus-overhead-ms. Each
target runs closed-loop (every connection sends again as soon as it is answered: saturation) and,
with --paced_rps, at 50 connections paced to a fixed request rate (wrk's `delay` hook), after
--pause_s seconds; --timeline paces with an in-process client instead and prints its latencies
second by second (what a closed-loop run leaves behind).
Everything, wrk included, shares this machine's cores, so the client's own cost is in the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import uvicorn
from bench_serving import quickstart_artifact  # benchmarks/ is on sys.path when run as a script

from proteus.encoders.registry import get_encoder
from proteus.gateway import fake, keys

KEY = "sk-bench"
QUERY = "What is the capital of France, and why did it become the capital?"
LUA = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
%(delay)s
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) overhead = {}; bad = 0 end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
  local o = headers["x-proteus-overhead-ms"]
  if o then overhead[#overhead + 1] = tonumber(o) end
end
function done(summary, latency, requests)
  local all, nbad = {}, 0
  for _, t in ipairs(threads) do
    nbad = nbad + t:get("bad")
    for _, v in ipairs(t:get("overhead")) do all[#all + 1] = v end
  end
  table.sort(all)
  local q = function(p) return #all > 0 and all[math.max(1, math.ceil(#all * p))] or -1 end
  io.write(string.format("RESULT %%d %%d %%d %%f %%f %%d %%d %%d\\n", summary.requests,
    summary.duration, nbad + summary.errors.status, latency:percentile(50),
    latency:percentile(99), summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, #all, 0))
  io.write(string.format("OVERHEAD %%f %%f\\n", q(0.5), q(0.99)))
end
"""


def find_wrk() -> str:
    """wrk's path; installs the Debian package when it is missing and we are root."""
    path = shutil.which("wrk")
    if path:
        print(f"wrk: found {path}")
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk: not found; installing the Debian package with apt-get")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False,
                       stdout=subprocess.DEVNULL)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True,
                           stdout=subprocess.DEVNULL)
        return shutil.which("wrk")
    sys.exit("wrk is not installed: `apt-get install wrk` (or brew install wrk), then rerun")


def text_artifact(out: str) -> str:
    """`bench_serving`'s random quickstart-shaped artifact with a 64-d hashing text encoder."""
    return quickstart_artifact(out, get_encoder("hashing:dim=64").to_config())


async def constant_app(scope, receive, send) -> None:
    """The floor: reads the body, answers a constant JSON object."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"model":"m","tau":0.8}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, log: str, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            with open(log) as f:
                tail = f.read()[-3000:]
            sys.exit(f"server {proc.args} exited with {proc.returncode}:\n{tail}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    sys.exit(f"server {proc.args} did not listen on {port} within {timeout:.0f} s")


def run_wrk(wrk: str, url: str, body: str, connections: int, seconds: float, tmp: str,
            rate: float = 0.0) -> dict:
    """One wrk run -> {rps, p50_ms, p99_ms, errors, overhead_p50_ms, overhead_p99_ms}.

    rate > 0 paces the load: each connection waits connections / rate seconds between requests
    (wrk's `delay` hook), so the server sees about `rate` req/s instead of all it can take.
    """
    script = os.path.join(tmp, "bench.lua")
    delay = f"function delay() return {connections / rate * 1e3:.3f} end" if rate else ""
    with open(script, "w") as f:
        f.write(LUA % {"body": body, "key": KEY, "delay": delay})
    threads = min(2, connections)
    out = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
                          "--timeout=10s", "-s", script, url], capture_output=True, text=True,
                         check=True).stdout
    res = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+)", out)
    ovh = re.search(r"OVERHEAD (-?[\d.]+) (-?[\d.]+)", out)
    n, dur, bad, p50, p99, sock = res.groups()
    return {"rps": int(n) / (int(dur) / 1e6), "p50_ms": float(p50) / 1e3,
            "p99_ms": float(p99) / 1e3, "errors": int(bad) + int(sock),
            "overhead_p50_ms": float(ovh.group(1)), "overhead_p99_ms": float(ovh.group(2))}


async def timeline(url: str, body: str, seconds: float, rps: float,
                   connections: int = 20) -> list[tuple[float, float, float]]:
    """(start s, latency ms, x-proteus-overhead-ms or −1) of each request of a paced client."""
    out: list[tuple[float, float, float]] = []
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    t0 = time.perf_counter()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=connections)) as client:
        async def worker(i: int) -> None:
            for k in itertools.count():
                due = (i + k * connections) / rps
                if due >= seconds:
                    return
                await asyncio.sleep(max(0.0, t0 + due - time.perf_counter()))
                start = time.perf_counter()
                answer = await client.post(url, content=body, headers=headers)
                out.append((start - t0, (time.perf_counter() - start) * 1e3,
                            float(answer.headers.get("x-proteus-overhead-ms", -1))))

        await asyncio.gather(*(worker(i) for i in range(connections)))
    return sorted(out)


def print_timeline(rows: list[tuple[float, float, float]]) -> None:
    print("| second | requests | p50 ms | max ms | overhead max ms |\n|---|---|---|---|---|")
    for second in range(int(math.ceil(rows[-1][0])) if rows else 0):
        part = sorted(r[1:] for r in rows if second <= r[0] < second + 1)
        if part:
            print(f"| {second}-{second + 1} | {len(part)} | {part[len(part) // 2][0]:.2f} | "
                  f"{part[-1][0]:.1f} | {max(p[1] for p in part):.1f} |")


def start_servers(tmp: str) -> tuple[dict[str, tuple[str, str]], list[subprocess.Popen]]:
    """Start the four servers; returns {label: (url, body)} and the processes."""
    artifact = text_artifact(os.path.join(tmp, "artifact"))
    ports = {name: free_port() for name in ("bare", "route", "fake", "gateway")}
    with open(os.path.join(tmp, "models.json"), "w") as f:
        json.dump({"defaults": {"base_url": f"http://127.0.0.1:{ports['fake']}/v1"},
                   "models": {f"model-{i}": {} for i in range(11)}}, f)
    with open(os.path.join(tmp, "keys.json"), "w") as f:
        json.dump({"tenants": {"bench": {"key_sha256": keys.hash_key(KEY), "default_tau": 0.8,
                                         "requests_per_minute": 1e9}}}, f)
    py, quiet = sys.executable, "--log_level=warning"
    cmds = {"bare": [py, __file__, f"--serve=bare:{ports['bare']}"],
            "fake": [py, __file__, f"--serve=fake:{ports['fake']}"],
            "route": [py, "-m", "launch.serve", f"--artifact={artifact}",
                      f"--port={ports['route']}", quiet],
            "gateway": [py, "-m", "launch.gateway", f"--artifact={artifact}",
                        f"--models_file={tmp}/models.json", f"--keys_file={tmp}/keys.json",
                        f"--usage_db={tmp}/usage.sqlite3", f"--port={ports['gateway']}", quiet]}
    logs = {k: os.path.join(tmp, f"{k}.log") for k in cmds}
    procs = {k: subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=open(logs[k], "w"))
             for k, c in cmds.items()}
    for name, proc in procs.items():
        wait_port(ports[name], proc, logs[name])
    chat = json.dumps({"model": "proteus-0.8", "messages": [{"role": "user", "content": QUERY}]})
    route = json.dumps({"query": QUERY, "tau": 0.8})
    targets = {"bare app (constant)": (f"http://127.0.0.1:{ports['bare']}/", route),
               "POST /v1/route": (f"http://127.0.0.1:{ports['route']}/v1/route", route),
               "fake upstream direct": (
                   f"http://127.0.0.1:{ports['fake']}/v1/chat/completions", chat),
               "gateway -> fake upstream": (
                   f"http://127.0.0.1:{ports['gateway']}/v1/chat/completions", chat)}
    return targets, list(procs.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", default="50,500")
    parser.add_argument("--paced_rps", type=float, default=200.0,
                        help="also run 50 connections paced to this many req/s (0: skip)")
    parser.add_argument("--pause_s", type=float, default=0.0,
                        help="seconds to wait before each paced run (lets a server finish the "
                             "requests the closed-loop run left in flight)")
    parser.add_argument("--timeline", action="store_true",
                        help="pace with an in-process client that times every request instead "
                             "of wrk, and print its latencies second by second")
    parser.add_argument("--targets", default="bare,route,upstream,gateway",
                        help="which of bare, route, upstream (the fake, directly), gateway to "
                             "load (the bare app always runs)")
    parser.add_argument("--serve", default="", help=argparse.SUPPRESS)  # kind:port subprocess
    args = parser.parse_args()
    if args.serve:
        kind, port = args.serve.split(":")
        if kind == "fake":
            return fake.serve(int(port))
        return uvicorn.run(constant_app, host="127.0.0.1", port=int(port), log_level="warning",
                           access_log=False, ws="none", lifespan="off")
    wrk = find_wrk()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the runs; "
          f"uvicorn http={'httptools' if _has('httptools') else 'h11'}, "
          f"loop={'uvloop' if _has('uvloop') else 'asyncio'}")
    with tempfile.TemporaryDirectory() as tmp:
        targets, procs = start_servers(tmp)
        try:
            results = {}
            chosen = {"bare"} | set(args.targets.split(","))
            shorts = ("bare", "route", "upstream", "gateway")
            for (label, (url, body)), short in zip(targets.items(), shorts, strict=True):
                if short not in chosen:
                    continue
                for conns in [int(c) for c in args.connections.split(",")]:
                    run_wrk(wrk, url, body, conns, 1, tmp)  # warm-up (connections, buckets)
                    results[label, conns] = run_wrk(wrk, url, body, conns, args.duration, tmp)
                if args.paced_rps:
                    time.sleep(args.pause_s)
                    if args.timeline:
                        print(f"{label}, paced to {args.paced_rps:g} req/s right after:")
                        print_timeline(asyncio.run(timeline(url, body, args.duration,
                                                            args.paced_rps)))
                        continue
                    results[label, f"50 @ {args.paced_rps:g}/s"] = run_wrk(
                        wrk, url, body, 50, args.duration, tmp, args.paced_rps)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
    report(results)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def report(results: dict) -> None:
    print(f"\n| target | conns | req/s | p50 ms | p99 ms | errors | p50 / bare | "
          f"req/s / bare | overhead p50 / p99 ms |\n|{'---|' * 9}")
    for (label, conns), r in results.items():
        bare = results["bare app (constant)", conns]
        overhead = (f"{r['overhead_p50_ms']:.2f} / {r['overhead_p99_ms']:.2f}"
                    if r["overhead_p50_ms"] >= 0 else "-")
        print(f"| {label} | {conns} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['errors']} | {r['p50_ms'] / bare['p50_ms']:.2f}x | "
              f"{r['rps'] / bare['rps']:.2f}x | {overhead} |")


if __name__ == "__main__":
    main()
