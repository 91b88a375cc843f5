"""Checks on raw loaded columns, with errors that name the file, the column and the row.

`RoutingDataset.validate` guards the in-memory contract; these run earlier, on the file's own
columns and rows, so that a bad cell is reported where the user can find it ("row" is the 0-based
data row in the file, header excluded). They also implement the one missing-score policy that all
loaders share (`resolve_missing_scores`).

What counts as missing (one policy for every format): an empty CSV cell, a null (JSON, parquet,
Python None) or a NaN (a float, or text that parses as one, e.g. "nan"). Any other text, such as
"n/a", "NA" or "-", is an error naming file, column and row: a marker word may hide a typo, and
silently dropping the row would change the data set (`io.CSV_NA` keeps CSV readers from turning
such words into nulls first).

`check_routable` runs on a loaded dataset before any training: it rejects data that has nothing
to route between (one model, constant scores, costs that do not differ) with a hint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from absl import logging

from proteus.data.dataset import DataValidationError, RoutingDataset

MISSING_POLICIES = ("drop", "error", "zero")


def require_columns(where: str, columns: Sequence[str], required: Sequence[str]) -> None:
    """Raise `DataValidationError` naming every column of `required` absent from `columns`."""
    absent = [c for c in required if c not in set(columns)]
    if absent:
        shown = list(columns)[:20]
        raise DataValidationError(f"{where}: missing column(s) {absent}; the file has {shown}")


def numeric_column(where: str, column: str, values, query_ids: np.ndarray) -> np.ndarray:
    """[N] values (object dtype allowed) -> [N] float64; None and NaN become NaN.

    Raises:
      DataValidationError: a value that is not a number (e.g. the string "n/a"), naming its row.
    """
    import pandas as pd

    series = pd.Series(np.asarray(values, dtype=object))
    coerced = pd.to_numeric(series, errors="coerce")
    bad = coerced.isna() & series.notna() & ~series.map(_is_nan_like)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataValidationError(
            f"{where}: column {column!r} row {row} (query_id {str(query_ids[row])!r}) holds "
            f"{series.iloc[row]!r}, which is not a number"
        )
    return coerced.to_numpy(dtype=np.float64)


def _is_nan_like(v) -> bool:
    """A float NaN, or text spelling one ("nan", "NaN"): missing, not malformed."""
    if isinstance(v, float):
        return bool(np.isnan(v))
    if isinstance(v, str):
        try:
            return bool(np.isnan(float(v)))
        except ValueError:
            return False
    return False


def check_range(
    where: str,
    column: str,
    values: np.ndarray,
    query_ids: np.ndarray,
    lo: float,
    hi: float,
    allow_nan: bool = False,
) -> None:
    """Raise naming the first row of `values` [N] outside [lo, hi] or not finite.

    NaN passes when `allow_nan` (missing scores are the missing-score policy's business).
    """
    values = np.asarray(values, dtype=np.float64)
    nan = np.isnan(values)
    bad = (~np.isfinite(values) & ~nan) | (values < lo) | (values > hi)
    if not allow_nan:
        bad |= nan
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"{where}: column {column!r} row {row} (query_id {str(query_ids[row])!r}) is "
            f"{float(values[row])!r}; expected a finite value in [{lo}, {hi}] "
            f"({int(bad.sum())} bad rows in this column)"
        )


def check_unique(where: str, column: str, values: np.ndarray) -> None:
    """Raise naming the first repeated value of `values` [N] and the two rows holding it."""
    import pandas as pd

    series = pd.Series(np.asarray(values).astype(str))
    repeats = series.duplicated(keep="first").to_numpy()
    if np.any(repeats):
        row = int(np.flatnonzero(repeats)[0])
        value = series.iloc[row]
        first = int(np.flatnonzero(series.to_numpy() == value)[0])
        raise DataValidationError(
            f"{where}: column {column!r} has duplicate value {value!r} at rows {first}, {row}"
            f" ({int(repeats.sum())} repeated rows in all)"
        )


def resolve_missing_scores(
    where: str,
    scores: np.ndarray,
    models: Sequence[str],
    query_ids: np.ndarray,
    policy: str,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Apply the missing-score policy to [N, M] float scores with NaN for missing cells.

    Policies (never silent: every change is a note in the dataset and an absl warning):
      "drop": remove each row with any missing score; note "dropped R of N rows with missing
        scores (C cells)".
      "error": raise `DataValidationError` naming file, model column and row of the first one.
      "zero": score each missing cell 0 (counted as a wrong answer); note "filled C missing
        scores with 0 in R of N rows".

    Args:
      where: the file, for messages.
      scores: [N, M] float, NaN where missing.
      models: [M] column names.
      query_ids: [N] ids, for messages.
      policy: one of `MISSING_POLICIES`.

    Returns:
      (keep [K] int64 rows kept, scores [K, M] without NaN, notes).
    """
    if policy not in MISSING_POLICIES:
        raise ValueError(f"missing={policy!r}; expected one of {MISSING_POLICIES}")
    nan = np.isnan(scores)
    n = scores.shape[0]
    n_cells, bad_rows = int(nan.sum()), nan.any(axis=1)
    n_rows = int(bad_rows.sum())
    if n_cells == 0:
        return np.arange(n, dtype=np.int64), scores, ()
    if policy == "error":
        row, col = map(int, np.argwhere(nan)[0])
        raise DataValidationError(
            f"{where}: column {models[col]!r} row {row} (query_id {str(query_ids[row])!r}) has a "
            f"missing score ({n_cells} missing cells in {n_rows} rows); pass missing='drop' "
            "or missing='zero'"
        )
    if policy == "zero":
        note = f"filled {n_cells} missing scores with 0 in {n_rows} of {n} rows"
        keep, out = np.arange(n, dtype=np.int64), np.where(nan, 0.0, scores)
    else:
        if n_rows == n:
            raise DataValidationError(f"{where}: every row has a missing score; nothing left")
        note = f"dropped {n_rows} of {n} rows with missing scores ({n_cells} cells)"
        keep = np.flatnonzero(~bad_rows).astype(np.int64)
        out = scores[keep]
    logging.warning("%s: %s", where, note)
    return keep, out, (note,)


def check_routable(ds: RoutingDataset) -> None:
    """Raise `DataValidationError` (naming the data set, with a hint) when routing is moot.

    Run before training: each condition below used to surface only late, as an empty τ-lane
    range or a zero cost range after a full training run.

      * fewer than two models: there is nothing to choose between;
      * every score identical: no model is ever better than another, every τ is trivially met
        or never met;
      * every model's mean cost the same (e.g. all-zero costs): there is no trade-off to learn
        and cost-normalised metrics (AIQ) are undefined;
      * the cheapest model already as accurate as the per-query oracle: it is right whenever any
        model is, so there is nothing to buy (the τ lanes' range would be empty).
    """
    where = ds.source or ds.name
    if ds.n_models < 2:
        raise DataValidationError(
            f"{where}: {ds.n_models} model(s) {list(ds.models)}; routing needs at least two "
            "(check the file's score / cost column pairs, e.g. <model> and <model>|cost)")
    scores = np.asarray(ds.scores, np.float64)
    if scores.size and np.all(scores == scores.flat[0]):
        raise DataValidationError(
            f"{where}: every score of every model is {float(scores.flat[0])!r}; nothing "
            "separates the models (check the score columns: wrong column, or a constant fill)")
    means = np.asarray(ds.costs, np.float64).mean(axis=0)
    if np.ptp(means) <= 0:
        raise DataValidationError(
            f"{where}: every model has the same mean cost ({float(means[0])!r} USD per query"
            f"{', all zero' if not means.any() else ''}); routing trades accuracy against cost, "
            "so costs must differ between models (check the cost columns or the price table)")
    cheapest = int(np.argmin(means))
    cheap_acc, oracle_acc = float(scores[:, cheapest].mean()), float(scores.max(axis=1).mean())
    if cheap_acc >= oracle_acc:
        raise DataValidationError(
            f"{where}: the cheapest model {ds.models[cheapest]!r} is already as accurate as the "
            f"per-query oracle ({cheap_acc:.4f}); no other model ever scores higher, so there is "
            "nothing to route (check the score columns)")
