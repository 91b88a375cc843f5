"""RouterBench loader: schema, prompt parsing, missing-score policy, errors, cache, real slice."""

import numpy as np
import pandas as pd
import pytest

from proteus.data import DataValidationError, load_routerbench, parse_prompt
from proteus.data.routerbench import ROUTERBENCH_PRICES, routerbench_models
from tests.data.conftest import RB_MODELS


def _load(path, **kwargs):
    """The loader with the pickle opt-in these tests' own files need (they are trusted)."""
    return load_routerbench(path, allow_pickle=True, **kwargs)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("['What is 2+2?']", "What is 2+2?"),
        ("['turn one', 'turn two']", "turn one\n\nturn two"),
        (["a", "b"], "a\n\nb"),
        ("not a list", "not a list"),
        ("['x'", "['x'"),  # unterminated: raw string, no crash
        ("[1, 2]", "[1, 2]"),  # not a list of strings
        ("[__import__('os')]", "[__import__('os')]"),  # literal_eval refuses calls
        (None, ""),
    ],
)
def test_parse_prompt(raw, expected):
    assert parse_prompt(raw) == expected


def test_routerbench_models_needs_cost_partner():
    cols = ["sample_id", "a", "b", "a|total_cost", "a|model_response", "b|model_response"]
    assert routerbench_models(cols) == ["a"]


def test_prices_are_per_token():
    assert ROUTERBENCH_PRICES["gpt-4-1106-preview"] == pytest.approx((1e-5, 3e-5))
    assert ROUTERBENCH_PRICES["mistralai/mistral-7b-chat"] == pytest.approx((2e-7, 2e-7))
    assert len(ROUTERBENCH_PRICES) == 11


def test_load_drops_missing_rows_with_note(routerbench_pkl, caplog):
    ds = _load(routerbench_pkl)
    assert "dropped 1 of 4 rows with missing scores (1 cells)" in caplog.text  # absl warning
    assert ds.models == RB_MODELS
    assert ds.query_ids.tolist() == ["arc.0", "arc.1", "mbpp.1"]
    assert ds.notes == ("dropped 1 of 4 rows with missing scores (1 cells)",)
    np.testing.assert_array_equal(ds.scores[:, 2], [1.0, 0.0, 0.5])
    np.testing.assert_allclose(ds.costs[:, 0], [1e-3, 2e-3, 4e-3], rtol=1e-6)
    assert ds.tasks.tolist() == ["arc-challenge", "arc-challenge", "mbpp"]
    assert ds.texts.tolist() == ["What is 2+2?", "turn one\n\nturn two", "['x'"]
    assert ds.prices["claude-v2"] == pytest.approx((8e-6, 24e-6))
    assert ds.name == "routerbench:routerbench_tiny.pkl"


def test_missing_zero_keeps_rows(routerbench_pkl):
    ds = _load(routerbench_pkl, missing="zero")
    assert ds.n_queries == 4
    assert ds.scores[2, 1] == 0.0
    assert ds.notes == ("filled 1 missing scores with 0 in 1 of 4 rows",)


def test_missing_error_names_file_column_row(routerbench_pkl):
    with pytest.raises(DataValidationError) as e:
        _load(routerbench_pkl, missing="error")
    msg = str(e.value)
    assert str(routerbench_pkl) in msg
    assert "'mistralai/mistral-7b-chat' row 2" in msg and "mbpp.0" in msg


def test_unknown_missing_policy(routerbench_pkl):
    with pytest.raises(ValueError, match="missing='skip'"):
        _load(routerbench_pkl, missing="skip")


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda f: f.drop(columns=["eval_name"]), r"missing column\(s\) \['eval_name'\]"),
        (lambda f: f.assign(**{"claude-v2": [1.0, 1.5, 0.0, 0.0]}), r"'claude-v2' row 1 .*1\.5"),
        (lambda f: f.assign(**{"claude-v2": [1.0, "n/a", 0.0, 0.0]}), r"'claude-v2' row 1.*'n/a'"),
        (
            lambda f: f.assign(**{"claude-v2|total_cost": [1e-3, 1e-3, -1e-3, 1e-3]}),
            r"'claude-v2\|total_cost' row 2 .*-0\.001",
        ),
        (
            lambda f: f.assign(**{"claude-v2|total_cost": [1e-3, np.inf, 1e-3, 1e-3]}),
            r"'claude-v2\|total_cost' row 1 .*inf",
        ),
        (
            lambda f: f.assign(sample_id=["a", "b", "a", "c"]),
            r"'sample_id' has duplicate value 'a' at rows 0, 2",
        ),
        (lambda f: f.iloc[:0], "no data rows"),
        (lambda f: f.drop(columns=[f"{m}|total_cost" for m in RB_MODELS]), "no model columns"),
    ],
)
def test_errors_name_file_column_row(tmp_path, rb_frame, edit, pattern):
    path = tmp_path / "bad.pkl"
    edit(rb_frame).to_pickle(path)
    with pytest.raises(DataValidationError, match=pattern) as e:
        _load(path)
    assert str(path) in str(e.value)


def test_arrow_cache_reused_and_refreshed(tmp_path, rb_frame, routerbench_pkl):
    cache = tmp_path / "cache"
    first = _load(routerbench_pkl, cache_dir=cache)
    entries = list((cache / "proteus_arrow").iterdir())
    assert len(entries) == 1
    second = _load(routerbench_pkl, cache_dir=cache)
    assert second.fingerprint() == first.fingerprint()
    assert second.notes == first.notes
    rb_frame.assign(sample_id=["w", "x", "y", "z"]).to_pickle(routerbench_pkl)
    third = _load(routerbench_pkl, cache_dir=cache)
    assert third.query_ids.tolist() == ["w", "x", "z"]


def test_same_schema_as_parquet(tmp_path, rb_frame, routerbench_pkl):
    path = tmp_path / "rb.parquet"
    frame = rb_frame.copy()
    for m in RB_MODELS:
        frame[m] = frame[m].astype(float)
    frame.to_parquet(path)
    got = _load(path, cache_dir=tmp_path / "hf")
    assert got.fingerprint() == _load(routerbench_pkl).fingerprint()


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        _load("/nonexistent/dir/routerbench.pkl")


# ------------------------------------------------------------------ the real slice
def _slice_frame(path):
    frame = pd.read_pickle(path)
    models = [c for c in frame.columns if f"{c}|total_cost" in frame.columns]
    return frame, models, frame[models].apply(pd.to_numeric)


def test_real_slice_keep_all_rows_with_file_costs(rb_slice):
    frame, models, _ = _slice_frame(rb_slice)
    ds = _load(rb_slice, missing="zero")
    assert (ds.n_queries, ds.n_models) == (3164, 11)
    assert list(ds.models) == models
    file_costs = frame[[f"{m}|total_cost" for m in models]].to_numpy(np.float32)
    np.testing.assert_array_equal(ds.costs, file_costs)
    assert ds.notes == ("filled 104 missing scores with 0 in 14 of 3164 rows",)
    assert sorted(set(ds.tasks)) == ["arc-challenge", "mbpp", "winogrande"]


def test_real_slice_default_drops_with_note(rb_slice):
    _, _, scores = _slice_frame(rb_slice)
    bad_rows = scores.isna().any(axis=1)
    assert (int(scores.isna().sum().sum()), int(bad_rows.sum())) == (104, 14)
    ds = _load(rb_slice)
    assert (ds.n_queries, ds.n_models) == (3150, 11)
    assert ds.notes == ("dropped 14 of 3164 rows with missing scores (104 cells)",)
    np.testing.assert_array_equal(ds.scores, scores[~bad_rows].to_numpy(np.float32))
    assert ds.best_fixed()[0] == "gpt-4-1106-preview"


def test_real_slice_missing_error(rb_slice):
    with pytest.raises(DataValidationError, match=r"'gpt-3.5-turbo-1106' row 354 .*104 missing"):
        _load(rb_slice, missing="error")
