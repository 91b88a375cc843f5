"""Route queries with an exported router from the command line: one line per decision.

The logic behind `launch/route.py` (which only parses flags and calls `run`):

    python -m launch.route --artifact=A --tau=0.9 "What is 2 + 2?" "Prove Fermat's last theorem"
    python -m launch.route --artifact=A --tau=0.9 --features=0.1,-0.3,...   # precomputed features
    python -m launch.route --artifact=A --tau=0.9 --input=queries.jsonl --output=decisions.jsonl

    python -m launch.route --artifact=A --tau=0.9 --task=physics "A ball is dropped from ..."

Queries given as arguments print one short line each (`short_line`: model, τ, feasible and
certified, the predicted cost of the chosen model, the query); `--json` prints the full decision
records instead, as the Python API and HTTP return them.
`--task` is the queries' task, for an artifact trained with a task prior (its manifest's `tasks`).
Batch mode reads JSONL lines {"query": str} or {"features": [D floats]}, each optionally with its
own "tau" and "task" (defaults: `--tau`, `--task`) and an "id" that is echoed back; a line that
cannot be routed gives {"line": N, "error": message} and the exit status is 1. A progress bar
shows on large files.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import numpy as np
import tqdm

from proteus import serving
from proteus.serving import dispatch, protocol

QUERY_CHARS = 60  # a query longer than this is shortened in the short form


def _parse_line(router: serving.Router, n: int, line: str, tau: float | None,
                limits: protocol.Limits,
                task: str | None = None) -> tuple[protocol.Item | None, dict[str, Any]]:
    """(item, extra) of JSONL line n, or (None, error record)."""
    try:
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise protocol.RequestError(422, "expected a JSON object")
        extra = {"id": obj.pop("id")} if "id" in obj else {}
        if "tau" not in obj and tau is not None:
            obj["tau"] = tau
        if "task" not in obj and task is not None:
            obj["task"] = task
        return protocol.parse_item(obj, router, limits, ""), extra
    except RecursionError:
        return None, {"line": n, "error": "malformed JSON: nested too deeply"}
    except ValueError as err:
        return None, {"line": n, "error": f"malformed JSON: {err}"}
    except protocol.RequestError as err:
        return None, {"line": n, "error": err.detail}


def route_jsonl(router: serving.Router, lines: Iterable[str], out: TextIO, tau: float | None,
                batch_size: int = 1024, progress: bool = False,
                total: int | None = None, task: str | None = None) -> tuple[int, int]:
    """Route JSONL query lines, writing one JSON decision (or error record) per line to `out`
    (`tau`, `task`: for lines without their own).

    Returns:
      (decisions written, error records written).
    """
    limits = protocol.Limits(max_query_chars=1 << 30)
    chunk: list[tuple[int, Any, Any]] = []  # (line number, item | None, extra | error record)
    counts = [0, 0]

    def flush() -> None:
        items = [item for _, item, _ in chunk if item is not None]
        decisions = iter(dispatch.route_items(router, items) if items else [])
        for n, item, extra in chunk:
            d = next(decisions) if item is not None else None
            if isinstance(d, Exception):  # this line alone failed while routing
                extra = {"line": n, "error": getattr(d, "detail", str(d))}
            ok = item is not None and not isinstance(d, Exception)
            counts[not ok] += 1
            out.write(json.dumps({**extra, **d} if ok else extra, allow_nan=False) + "\n")
        chunk.clear()

    bar = tqdm.tqdm(lines, total=total, unit="query", file=sys.stderr,
                    disable=not progress or (total or 0) <= batch_size)
    for n, line in enumerate(bar, start=1):
        if line.strip():
            chunk.append((n, *_parse_line(router, n, line, tau, limits, task)))
        if len(chunk) >= batch_size:
            flush()
    flush()
    return counts[0], counts[1]


class UsageError(ValueError):
    """The arguments name no queries, or no τ for them."""


def route_file(router: serving.Router, input_path: str, output_path: str | None,
               tau: float | None, batch_size: int = 1024, progress: bool = True,
               task: str | None = None) -> int:
    """Batch mode: route the JSONL file `input_path` to `output_path` (None: stdout).

    Returns:
      the exit status: 1 if any line could not be routed, else 0.

    Raises:
      ValueError: `output_path` is `input_path` (opening it for writing would empty the input).
    """
    if output_path and os.path.exists(output_path) and os.path.samefile(input_path, output_path):
        raise ValueError(f"--output={output_path} is the --input file: writing would empty it")
    with open(input_path) as f:
        total = sum(1 for _ in f)
    out = open(output_path, "w") if output_path else sys.stdout  # noqa: SIM115
    try:
        with open(input_path) as f:
            n_ok, n_err = route_jsonl(router, f, out, tau, batch_size, progress, total, task)
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"{n_ok} decisions, {n_err} errors", file=sys.stderr)
    return 1 if n_err else 0


def usd(value: float) -> str:
    """A cost in USD to two significant digits, never in exponent form: 0.00024716 -> '$0.00025'."""
    return "$" + np.format_float_positional(value, precision=2, unique=False, fractional=False,
                                            trim="-")


def short_line(decision: dict[str, Any], query: str, width: int = 0) -> str:
    """One decision for a person to read: the chosen model (padded to `width`), τ, whether τ is
    feasible and the router certified, the predicted cost of that model for this query, the query
    (shortened to QUERY_CHARS)."""
    if decision["feasible"]:
        status = "feasible, " + ("certified" if decision["certified"] else "uncertified")
    else:  # served by the fallback at the most accurate point; --json gives the reason
        status = "INFEASIBLE, best effort"
    cost = usd(decision["c_hat"][decision["model"]])
    text = query if len(query) <= QUERY_CHARS else query[:QUERY_CHARS - 1] + "…"
    return (f"{decision['model']:<{width}}  τ={decision['tau']:.2f}  {status:<23}  "
            f"est. {cost + '/query':<15}  {text}")


def route_args(router: serving.Router, queries: list[str], tau: float | None,
               features: list[str] | None = None, task: str | None = None,
               as_json: bool = False) -> int:
    """Route query texts (or one query's `features`, as strings) at τ, of task `task`; one
    `short_line` each, or with `as_json` one JSON record each.

    Returns:
      the exit status: 2 if the router refused the input (message on stderr), else 0.

    Raises:
      UsageError: no τ or nothing to route.
    """
    queries = queries if features is None else features
    if tau is None or not queries:
        raise UsageError("give --tau and query texts, --features or --input")
    try:
        if features is not None:
            queries = [float(v) for v in queries]
        decisions = router.route(queries, tau, task)
    except (ValueError, serving.RoutingError) as err:  # the Python API's own checks
        print(f"launch.route: {err}", file=sys.stderr)  # as the launcher's other error lines
        return 2
    if as_json:  # τ and model names as they are, not \u escapes
        print("\n".join(json.dumps(d, ensure_ascii=False) for d in decisions))
        return 0
    labels = [f"({len(queries)} features)"] if features is not None else queries
    width = max(len(d["model"]) for d in decisions)
    for d, label in zip(decisions, labels, strict=True):
        print(short_line(d, label, width))
    return 0


def run(artifact: str, tau: float | None, queries: list[str], features: list[str] | None = None,
        input_path: str | None = None, output_path: str | None = None,
        fallback: str | None = None, batch_size: int = 1024, progress: bool = True,
        task: str | None = None, as_json: bool = False) -> int:
    """Load the artifact and route: the JSONL file `input_path` if given (JSON records out),
    else the arguments (`short_line`s, or JSON records with `as_json`).

    Returns:
      the process exit status (see `route_file`, `route_args`).
    """
    router = serving.Router.load(artifact, fallback=fallback)
    if input_path:
        return route_file(router, input_path, output_path, tau, batch_size, progress, task)
    return route_args(router, queries, tau, features, task, as_json)
