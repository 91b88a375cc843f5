"""Data edges of issue 11 item 9: each fails early, before training, naming file or setting.

* "n/a" (and other marker words) in a score column is an error naming the cell, as
  `proteus.data.checks` documents; only empty cells, nulls and NaN are missing.
* Data with nothing to route (one model, constant scores, equal or all-zero costs) is rejected
  by `check_routable` with a hint, instead of failing at "lane range is empty" or after a full
  training run at "cost_range must have hi > lo".
"""

import numpy as np
import pandas as pd
import pytest

from proteus.data import DataValidationError, RoutingDataset, load_table
from proteus.data.checks import check_routable


def _csv(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("marker", ["n/a", "NA", "N/A", "null", "-"])
def test_marker_word_in_csv_score_is_an_error_naming_the_cell(tmp_path, marker):
    path = _csv(tmp_path, f"query_id,a,a|cost,b,b|cost\nq1,1,0.1,{marker},0.2\nq2,0,0.1,1,0.2\n")
    with pytest.raises(DataValidationError) as e:
        load_table(path, cache_dir=tmp_path / "hf")
    msg = str(e.value)
    assert str(path) in msg and "column 'b' row 0 (query_id 'q1')" in msg
    assert repr(marker) in msg and "not a number" in msg


@pytest.mark.parametrize("cell", ["", "nan", "NaN"])
def test_empty_and_nan_cells_are_missing(tmp_path, cell):
    path = _csv(tmp_path, f"query_id,a,a|cost,b,b|cost\nq1,1,0.1,{cell},0.2\nq2,0,0.1,1,0.2\n")
    ds = load_table(path, cache_dir=tmp_path / "hf")
    assert ds.query_ids.tolist() == ["q2"]
    assert ds.notes == ("dropped 1 of 2 rows with missing scores (1 cells)",)


def test_text_that_pandas_would_call_na_is_kept(tmp_path):
    path = _csv(tmp_path, "query_id,prompt,a,a|cost,b,b|cost\nNA,NA,1,0.1,0,0.2\n")
    ds = load_table(path, cache_dir=tmp_path / "hf")
    assert ds.query_ids.tolist() == ["NA"] and ds.texts.tolist() == ["NA"]


def _ds(scores, costs, models=None):
    scores, costs = np.asarray(scores, np.float32), np.asarray(costs, np.float32)
    n, m = scores.shape
    ids = np.array([f"q{i}" for i in range(n)])
    return RoutingDataset(name="t", models=tuple(models or [f"m{j}" for j in range(m)]),
                          scores=scores, costs=costs, query_ids=ids, tasks=np.full(n, ""),
                          source="/data/t.csv")


@pytest.mark.parametrize("scores, costs, pattern", [
    ([[1.0], [0.0]], [[0.1], [0.1]], r"/data/t.csv: 1 model\(s\) \['m0'\]; routing needs at least"),
    ([[1.0, 1.0], [1.0, 1.0]], [[0.1, 0.2], [0.1, 0.2]], r"every score of every model is 1\.0"),
    ([[0.0, 0.0], [0.0, 0.0]], [[0.1, 0.2], [0.1, 0.2]], r"every score of every model is 0\.0"),
    ([[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], r"same mean cost \(0\.0 .*all zero"),
    ([[1.0, 0.0], [0.0, 1.0]], [[0.1, 0.1], [0.1, 0.1]], r"same mean cost"),
    ([[1.0, 1.0], [0.0, 0.0]], [[0.2, 0.1], [0.2, 0.1]], r"cheapest model 'm1' is already as"),
])
def test_unroutable_data_fails_with_a_hint(scores, costs, pattern):
    with pytest.raises(DataValidationError, match=pattern):
        check_routable(_ds(scores, costs))


def test_routable_data_passes():
    check_routable(_ds([[1.0, 0.0], [1.0, 1.0]], [[0.2, 0.01], [0.2, 0.01]]))


def test_one_model_table_fails_before_training(tmp_path):
    path = tmp_path / "one.csv"
    frame = pd.DataFrame({"query_id": ["a", "b"], "x": [1, 0], "x|cost": [0.1, 0.1]})
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"one.csv: 1 model"):
        check_routable(load_table(path, cache_dir=tmp_path / "hf"))


def test_without_models_drops_columns_and_prices_and_names_unknown_models():
    ds = RoutingDataset(name="t", models=("a", "b", "c"),
                        scores=np.array([[1, 0, 1], [0, 1, 1]], np.float32),
                        costs=np.array([[1, 2, 3], [4, 5, 6]], np.float32),
                        query_ids=np.array(["q1", "q2"]), tasks=np.array(["", ""]),
                        prices={"a": (1.0, 2.0), "b": (3.0, 4.0)})
    out = ds.without_models(["b"])
    assert out.models == ("a", "c") and out.prices == {"a": (1.0, 2.0)}
    np.testing.assert_array_equal(out.scores, [[1, 1], [0, 1]])
    np.testing.assert_array_equal(out.costs, [[1, 3], [4, 6]])
    with pytest.raises(DataValidationError, match=r"no model\(s\) \['z'\] to exclude"):
        ds.without_models(["z"])
