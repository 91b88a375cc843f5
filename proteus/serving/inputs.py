"""Validation of what a caller sends a router: features, text, τ per query and a request's task.

The checks every front door shares: the Python API (`proteus.serving.Router`, vectorised) and
the request model of the command line, HTTP, the gateway and the online service
(`proteus.serving.protocol.make_item`); each raises ValueError naming what is wrong. A τ is
checked once, where it is resolved to its operating point (`Router.resolve`, which applies
`proteus.operating.check_tau`); a task name by the router's `proteus.tasks.TaskVocabulary`
(`Router.task_ids`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def check_features(features: Any, dim: int, one_row: bool = False) -> np.ndarray:
    """Validate query features: [D] or [B, D] real numbers, all finite -> [B, D] float32.

    The one check for features (Python API, CLI and HTTP). Booleans, strings, complex numbers and
    ragged lists are refused rather than coerced.

    Args:
      features: [D] or [B, D] numbers (a list, nested lists or an array).
      dim: D, the artifact's feature_dim.
      one_row: require exactly one [D] row (an HTTP request item) and return it as [D].

    Raises:
      ValueError: naming what is wrong.
    """
    want = f"features must be a list of {dim} numbers per query"
    try:
        x = np.asarray(features)
    except (TypeError, ValueError) as err:  # ragged lists
        raise ValueError(f"{want}: {err}") from None
    if x.shape == (0,) and not one_row:  # `route([])`: no texts and no features
        raise ValueError("nothing to route: the list of queries is empty")
    if x.dtype.kind not in "iuf" or (x.size and _holds_bool(features)):
        raise ValueError(f"{want}, got {_kind(x)}")
    x = x[None] if x.ndim == 1 and not one_row else x
    if (x.ndim != 1 if one_row else x.ndim != 2) or x.shape[-1] != dim:
        raise ValueError(f"features must have {dim} values per query (the artifact's "
                         f"feature_dim), got shape {np.shape(features)}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):  # NaN, inf, or beyond float32's range
        raise ValueError("features must be finite (no NaN or inf, |x| < 3.4e38)")
    return x


def _holds_bool(features: Any) -> bool:
    """True if a (nested) list holds a bool (numpy would silently read it as 0/1)."""
    if not isinstance(features, list | tuple):
        return False
    rows = features if features and isinstance(features[0], list | tuple) else [features]
    return any(type(v) is bool for row in rows for v in row)


def _kind(x: np.ndarray) -> str:
    names = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes"}
    return names.get(x.dtype.kind, "booleans" if x.dtype.kind in "iuf" else f"{x.dtype} values")


def check_task_name(task: Any, where: str = "'task'") -> str | None:
    """One request's task: a name (str) or None. The per-request check of HTTP and JSONL (the
    Python API also takes [B] names; `Router.task_ids` checks the names themselves)."""
    if task is not None and not isinstance(task, str):
        raise ValueError(f"{where} must be a task name (a string) or null, got "
                         f"{type(task).__name__}")
    return task


def check_text(text: Any, where: str = "query") -> str:
    """Validate one text query: a non-empty str that is valid Unicode (encodable as UTF-8).

    The one check for text (Python API, CLI and HTTP). A lone surrogate such as "\\ud800" (legal
    in a JSON string) cannot be encoded and would fail the encoder later, so it is refused here.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where} must be a non-empty string, got {text!r:.80}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{where} is not valid Unicode: {err.reason} at character {err.start} "
                         f"({text[err.start]!r})") from None
    return text


def resolve_taus(resolve: Callable[[Any], Any], tau: Any, n: int) -> tuple[list[Any], np.ndarray]:
    """One τ for all n queries, or one per query -> (points [U], inverse [n]): query i is served
    at points[inverse[i]].

    `resolve` (`Router.resolve`) checks each distinct τ once as it maps it to its operating
    point: strings, booleans, None, NaN and values outside [0, 1] are refused, never coerced.

    Raises:
      ValueError: a bad τ (from `resolve`), or per-query τ not of length n.
    """
    try:
        shape = np.shape(tau)
    except ValueError:  # ragged nesting: numpy cannot give it a shape
        shape = None
    if shape == () and not isinstance(tau, list | tuple):
        return [resolve(tau)], np.zeros(n, np.int64)
    if shape != (n,):
        raise ValueError(f"tau must be a number in [0, 1] or one number per query ({n}), got "
                         + ("ragged nesting" if shape is None else f"shape {shape}"))
    if isinstance(tau, np.ndarray) and tau.dtype.kind in "iuf":  # each distinct value once
        unique, inverse = np.unique(tau, return_inverse=True)
        return [resolve(u.item()) for u in unique], inverse.reshape(n)
    return [resolve(t) for t in tau], np.arange(n)  # a list: each value checked once
