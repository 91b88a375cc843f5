"""SPROUT loader: struct columns, cost = tokens x prices, splits, errors."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from proteus.data import CARROT_PRICES, DataValidationError, load_sprout
from proteus.data.sprout import sprout_models
from tests.data.conftest import SPROUT_MODELS


def _write(tmp_path, table, name="test-00000-of-00001.parquet"):
    path = tmp_path / name
    pq.write_table(table, path)
    return path


def test_carrot_prices_per_token():
    assert CARROT_PRICES["openai-gpt-4o"] == pytest.approx((2.5e-6, 1e-5))
    assert CARROT_PRICES["wxai-llama-3-2-1b-instruct"] == pytest.approx((6e-8, 6e-8))
    assert len(CARROT_PRICES) == 14  # 13 SPROUT models + openai-o3-mini


def test_sprout_models_from_schema(sprout_table):
    assert sprout_models(sprout_table().schema) == list(SPROUT_MODELS)


def test_costs_are_tokens_times_prices(tmp_path, sprout_table):
    ds = load_sprout(_write(tmp_path, sprout_table()), cache_dir=tmp_path / "hf")
    assert ds.models == SPROUT_MODELS
    np.testing.assert_allclose(ds.scores[:, 0], [1.0, 0.4, 0.0], rtol=1e-6)
    # gpt-4o row 0: 100 in x 2.5e-6 + 10 out x 1e-5 = 3.5e-4;
    # llama-1b row 1: (200 in + 20 out) x 6e-8 = 1.32e-5.
    assert ds.costs[0, 0] == pytest.approx(3.5e-4, rel=1e-6)
    assert ds.costs[1, 1] == pytest.approx(1.32e-5, rel=1e-6)
    assert ds.tasks.tolist() == ["math", "gpqa", "math"]
    assert ds.texts.tolist() == ["prompt 0", "prompt 1", "prompt 2"]
    assert ds.query_ids.tolist() == ["k0", "k1", "k2"]
    assert set(ds.prices) == set(SPROUT_MODELS)
    assert ds.notes == ()


def test_directory_and_split(sprout_dir, tmp_path):
    test = load_sprout(sprout_dir, split="test", cache_dir=tmp_path / "hf")
    assert test.query_ids.tolist() == ["t0", "t1"]
    assert test.name == "sprout:SPROUT[test]"
    both = load_sprout(sprout_dir, cache_dir=tmp_path / "hf")
    assert both.n_queries == 5


def test_unknown_model_names_it(tmp_path, sprout_table):
    path = _write(tmp_path, sprout_table(models=("openai-gpt-4o", "my-new-model")))
    with pytest.raises(DataValidationError, match="'my-new-model' has no price"):
        load_sprout(path, cache_dir=tmp_path / "hf")
    prices = {"openai-gpt-4o": (1.0, 1.0), "my-new-model": (0.0, 1.0)}
    ds = load_sprout(path, prices=prices, cache_dir=tmp_path / "hf")
    assert ds.costs[0, 1] == pytest.approx(20.0)  # 20 output tokens x $1


def _with_cell(table, model, row, value):
    cells = table.column(model).to_pylist()
    cells[row] = value
    col = pa.array(cells, type=table.schema.field(model).type)
    return table.set_column(table.schema.get_field_index(model), model, col)


def test_missing_score_policy(tmp_path, sprout_table):
    table = _with_cell(sprout_table(), "openai-gpt-4o", 1, None)  # a null struct
    path = _write(tmp_path, table)
    ds = load_sprout(path, cache_dir=tmp_path / "hf")
    assert ds.query_ids.tolist() == ["k0", "k2"]
    assert ds.notes == ("dropped 1 of 3 rows with missing scores (1 cells)",)
    zero = load_sprout(path, missing="zero", cache_dir=tmp_path / "hf")
    assert (zero.scores[1, 0], zero.costs[1, 0]) == (0.0, 0.0)
    with pytest.raises(DataValidationError, match=r"'openai-gpt-4o' row 1 \(query_id 'k1'\)"):
        load_sprout(path, missing="error", cache_dir=tmp_path / "hf")


@pytest.mark.parametrize(
    "cell, pattern",
    [
        ({"score": 1.2, "num_input_tokens": 1, "num_output_tokens": 1},
         r"'openai-gpt-4o.score' row 2 .*1\.2"),
        ({"score": 1.0, "num_input_tokens": None, "num_output_tokens": 1},
         r"'openai-gpt-4o.num_input_tokens' row 2 \(query_id 'k2'\) is nan"),
        ({"score": 1.0, "num_input_tokens": -5, "num_output_tokens": 1},
         r"'openai-gpt-4o.num_input_tokens' row 2 .*-5"),
    ],
)
def test_bad_cells_name_column_and_row(tmp_path, sprout_table, cell, pattern):
    table = _with_cell(sprout_table(), "openai-gpt-4o", 2, dict(cell, response="", rationale=""))
    path = _write(tmp_path, table)
    with pytest.raises(DataValidationError, match=pattern) as e:
        load_sprout(path, cache_dir=tmp_path / "hf")
    assert str(path) in str(e.value)


def test_missing_columns_and_duplicate_keys(tmp_path, sprout_table):
    path = _write(tmp_path, sprout_table().drop_columns(["dataset"]), "a.parquet")
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['dataset'\]"):
        load_sprout(path, cache_dir=tmp_path / "hf")
    path = _write(tmp_path, sprout_table(keys=("k0", "k1", "k0")), "b.parquet")
    with pytest.raises(DataValidationError, match="'key' has duplicate value 'k0' at rows 0, 2"):
        load_sprout(path, cache_dir=tmp_path / "hf")
