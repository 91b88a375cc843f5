"""Raw-column checks and the shared missing-score policy."""

import numpy as np
import pytest

from proteus.data import DataValidationError
from proteus.data.checks import (
    check_range,
    check_unique,
    numeric_column,
    require_columns,
    resolve_missing_scores,
)

IDS = np.array(["a", "b", "c"])


def test_require_columns():
    require_columns("f.csv", ["x", "y"], ["x"])
    with pytest.raises(DataValidationError, match=r"f.csv: missing column\(s\) \['z', 'w'\]"):
        require_columns("f.csv", ["x", "y"], ["z", "x", "w"])


def test_numeric_column():
    got = numeric_column("f", "c", np.array([1.0, None, "0.5"], dtype=object), IDS)
    np.testing.assert_array_equal(got, [1.0, np.nan, 0.5])
    with pytest.raises(DataValidationError, match=r"f: column 'c' row 2 \(query_id 'c'\) holds"):
        numeric_column("f", "c", np.array([1.0, 2.0, "x"], dtype=object), IDS)


def test_check_range():
    check_range("f", "s", np.array([0.0, 1.0, np.nan]), IDS, 0.0, 1.0, allow_nan=True)
    with pytest.raises(DataValidationError, match=r"column 's' row 2 \(query_id 'c'\) is nan"):
        check_range("f", "s", np.array([0.0, 1.0, np.nan]), IDS, 0.0, 1.0)
    with pytest.raises(DataValidationError, match=r"row 1 .* is -inf.*\(2 bad rows"):
        check_range("f", "s", np.array([0.0, -np.inf, 2.0]), IDS, 0.0, 1.0)


def test_check_unique():
    check_unique("f", "id", IDS)
    with pytest.raises(DataValidationError, match=r"duplicate value 'b' at rows 1, 3 \(2 repeated"):
        check_unique("f", "id", np.array(["a", "b", "c", "b", "a"]))


SCORES = np.array([[1.0, np.nan], [0.0, 1.0], [np.nan, np.nan]])


def test_missing_drop():
    keep, scores, notes = resolve_missing_scores("f", SCORES, ["m0", "m1"], IDS, "drop")
    assert keep.tolist() == [1]
    np.testing.assert_array_equal(scores, [[0.0, 1.0]])
    assert notes == ("dropped 2 of 3 rows with missing scores (3 cells)",)


def test_missing_zero():
    keep, scores, notes = resolve_missing_scores("f", SCORES, ["m0", "m1"], IDS, "zero")
    assert keep.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(scores, [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert notes == ("filled 3 missing scores with 0 in 2 of 3 rows",)


def test_missing_error_and_no_missing():
    with pytest.raises(DataValidationError, match=r"f: column 'm1' row 0 \(query_id 'a'\)"):
        resolve_missing_scores("f", SCORES, ["m0", "m1"], IDS, "error")
    keep, scores, notes = resolve_missing_scores("f", SCORES[1:2], ["m0", "m1"], IDS, "error")
    assert (keep.tolist(), notes) == ([0], ())


def test_missing_drop_everything_is_an_error():
    with pytest.raises(DataValidationError, match="every row has a missing score"):
        resolve_missing_scores("f", SCORES[2:], ["m0", "m1"], IDS, "drop")
