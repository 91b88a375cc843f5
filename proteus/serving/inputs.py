"""Validation of what a caller sends a router: features, text and a request's task.

The one set of checks shared by the Python API (`proteus.serving.Router`), the command line and
HTTP; each raises ValueError naming what is wrong. τ is checked by
`proteus.operating.check_taus`, and a task name against an artifact's tasks by
`Router.check_tasks`.
"""

from __future__ import annotations

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
    Python API also takes [B] names; `Router.check_tasks` checks the names themselves)."""
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
