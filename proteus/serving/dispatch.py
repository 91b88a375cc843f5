"""Routing parsed request items in one call (the HTTP server's micro-batches, the CLI's JSONL).

`protocol` turns requests into `Item`s (features or text, the operating point of their τ, the
task id); `route_items` encodes the texts, makes one routing call for every item and returns a
decision record or an error per item, so that one item that fails (an encoder error, a
non-finite decision) fails alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from proteus.serving import Router, RoutingError, finite_rows
from proteus.serving.protocol import Item, RequestError
from proteus.serving.router import take_rows


def route_items(router: Router, items: Sequence[Item]) -> list[dict[str, Any] | Exception]:
    """Route parsed items in one call: [B] items -> [B] decision dicts, or per-item exceptions.

    One bad item fails alone: a text the encoder cannot encode gets a `RequestError` (422) and a
    decision with non-finite values a `RoutingError`, in its own slot; the others are routed. An
    error of the routing call itself still raises (it concerns every item).
    """
    results: list[Any] = [None] * len(items)
    x = np.zeros((len(items), router.feature_dim), np.float32)
    text_rows = [i for i, item in enumerate(items) if item.text is not None]
    if text_rows:
        encode_rows(router, items, text_rows, x, results)
    for i, item in enumerate(items):
        if item.features is not None:
            x[i] = item.features
    ok = [i for i, r in enumerate(results) if r is None]
    if not ok:
        return results
    points = [items[i].point for i in ok]
    task_ids = np.asarray([items[i].task_id for i in ok], np.int32)
    decisions = router.run_points(x[ok], points, np.arange(len(ok)), task_ids)
    finite = finite_rows(decisions)
    records = iter(router.records(take_rows(decisions, np.flatnonzero(finite))))
    for j, i in enumerate(ok):  # a broken row is never turned into a record
        results[i] = next(records) if finite[j] else RoutingError(
            f"{items[i].where}the router returned non-finite values for this query: the artifact "
            "is broken (re-export it)")
    return results


def encode_rows(router: Router, items: Sequence[Item], rows: list[int], x: np.ndarray,
                results: list[Any]) -> None:
    """Encode the text items `rows` into x [B, D]; on failure retry one by one, failing only the
    bad (its slot of `results` gets a `RequestError`, 422). Shared with the online service."""
    try:
        x[rows] = router.encode([items[i].text for i in rows])
        return
    except Exception:  # noqa: BLE001, S110 (found out below, item by item)
        pass
    for i in rows:
        try:
            x[i] = router.encode([items[i].text])[0]
        except Exception as err:  # noqa: BLE001 (this item's error, reported to its request)
            results[i] = RequestError(422, f"{items[i].where}the query could not be encoded: "
                                           f"{type(err).__name__}: {err}")
