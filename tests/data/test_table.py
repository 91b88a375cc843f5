"""Generic long / wide tables from CSV, TSV, JSONL and parquet, and their validation errors."""

import json

import numpy as np
import pandas as pd
import pytest

from proteus.data import DataValidationError, load_table
from proteus.data.table import detect_layout

LONG = pd.DataFrame(
    {
        "query_id": ["q1", "q1", "q2", "q2", "q0", "q0"],
        "prompt": ["one", "one", "two", "two", "zero", "zero"],
        "model": ["big", "small", "small", "big", "big", "small"],
        "score": [1.0, 0.0, 0.5, 1.0, 0.0, 0.0],
        "cost": [0.01, 0.001, 0.002, 0.02, 0.03, 0.003],
        "task": ["a", "a", "b", "b", "a", "a"],
    }
)
WIDE = pd.DataFrame(
    {
        "query_id": ["q1", "q2", "q0"],
        "prompt": ["one", "two", "zero"],
        "task": ["a", "b", "a"],
        "big": [1.0, 1.0, 0.0],
        "big|cost": [0.01, 0.02, 0.03],
        "small": [0.0, 0.5, 0.0],
        "small|cost": [0.001, 0.002, 0.003],
    }
)


def _write(tmp_path, frame, name):
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    elif name.endswith(".tsv"):
        frame.to_csv(path, index=False, sep="\t")
    elif name.endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize(
    "cols, expected",
    [
        (["query_id", "model", "score", "cost"], "long"),
        (["query_id", "a", "a|cost"], "wide"),
        (["query_id", "model", "score", "cost", "a", "a|cost"], "long"),
    ],
)
def test_detect_layout(cols, expected):
    assert detect_layout(cols) == expected


def test_detect_layout_neither():
    with pytest.raises(DataValidationError, match="cannot tell the layout"):
        detect_layout(["query_id", "a", "b|cost"])


def _check_expected(ds):
    # Queries in order of first appearance, models in first-appearance order.
    assert ds.query_ids.tolist() == ["q1", "q2", "q0"]
    assert ds.models == ("big", "small")
    np.testing.assert_array_equal(ds.scores, [[1.0, 0.0], [1.0, 0.5], [0.0, 0.0]])
    np.testing.assert_allclose(ds.costs, [[0.01, 0.001], [0.02, 0.002], [0.03, 0.003]], rtol=1e-6)
    assert ds.texts.tolist() == ["one", "two", "zero"]
    assert ds.tasks.tolist() == ["a", "b", "a"]


@pytest.mark.parametrize("name", ["long.csv", "long.tsv", "long.jsonl", "long.parquet"])
def test_long_formats(tmp_path, name):
    ds = load_table(_write(tmp_path, LONG, name), cache_dir=tmp_path / "hf")
    _check_expected(ds)
    assert ds.name == f"table:{name}"


@pytest.mark.parametrize("name", ["wide.csv", "wide.jsonl", "wide.parquet"])
def test_wide_formats(tmp_path, name):
    _check_expected(load_table(_write(tmp_path, WIDE, name), layout="wide", cache_dir=tmp_path))


def test_wide_custom_suffix_and_no_optional_columns(tmp_path):
    frame = WIDE.drop(columns=["prompt", "task"]).rename(
        columns={"big|cost": "big__usd", "small|cost": "small__usd"}
    )
    path = _write(tmp_path, frame, "w.csv")
    ds = load_table(path, layout="wide", cost_suffix="__usd", cache_dir=tmp_path / "hf")
    assert ds.models == ("big", "small") and ds.texts is None
    assert ds.tasks.tolist() == ["", "", ""]


def test_numeric_ids_become_strings(tmp_path):
    frame = WIDE.assign(query_id=[11, 12, 10])
    ds = load_table(_write(tmp_path, frame, "w.csv"), cache_dir=tmp_path / "hf")
    assert ds.query_ids.tolist() == ["11", "12", "10"]


def test_missing_scores_follow_policy(tmp_path):
    frame = LONG.copy()
    frame.loc[3, "score"] = np.nan
    path = _write(tmp_path, frame, "long.csv")
    ds = load_table(path, cache_dir=tmp_path / "hf")
    assert ds.query_ids.tolist() == ["q1", "q0"]
    assert ds.notes == ("dropped 1 of 3 rows with missing scores (1 cells)",)
    with pytest.raises(DataValidationError, match=r"column 'big' row 1 \(query_id 'q2'\)"):
        load_table(path, missing="error", cache_dir=tmp_path / "hf")


def _edit(frame, **cells):
    out = frame.copy()
    for key, value in cells.items():
        col, row = key.rsplit("__", 1)
        out[col] = out[col].astype(object)
        out.loc[int(row), col] = value
    return out


@pytest.mark.parametrize(
    "frame, layout, pattern",
    [
        (LONG.drop(columns=["cost"]), "long", r"missing column\(s\) \['cost'\]"),
        (WIDE.drop(columns=["query_id"]), "wide", r"missing column\(s\) \['query_id'\]"),
        (_edit(LONG, score__3=1.5), "long", r"column 'score' row 3 \(query_id 'q2'\) is 1\.5"),
        (_edit(WIDE, small__2=-0.1), "wide", r"column 'small' row 2 \(query_id 'q0'\) is -0\.1"),
        (_edit(LONG, cost__4=-1.0), "long", r"column 'cost' row 4 \(query_id 'q0'\) is -1\.0"),
        (_edit(LONG, cost__1=np.nan), "long", r"column 'cost' row 1 \(query_id 'q1'\) is nan"),
        (_edit(WIDE, **{"big|cost__0": np.inf}), "wide", r"column 'big\|cost' row 0 .* inf"),
        (_edit(WIDE, query_id__2="q1"), "wide", r"duplicate value 'q1' at rows 0, 2 "),
        (_edit(LONG, model__1="big"), "long", r"repeat \('q1', 'big'\) at row 1"),
        (LONG.drop(index=[5]), "long", r"query 'q0' .*first at row 4.* no row for model 'small'"),
        (_edit(LONG, score__0="high"), "long", r"column 'score' row 0 .*'high', which is not"),
    ],
)
def test_validation_errors_name_file_column_row(tmp_path, frame, layout, pattern):
    path = _write(tmp_path, frame, "bad.csv")
    with pytest.raises(DataValidationError, match=pattern) as e:
        load_table(path, layout=layout, cache_dir=tmp_path / "hf")
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "content, pattern", [("", "empty file"), ("query_id,model,score,cost\n", "no data rows")]
)
def test_empty_files(tmp_path, content, pattern):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DataValidationError, match=pattern):
        load_table(path, cache_dir=tmp_path / "hf")


def test_malformed_jsonl(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"query_id": "a"}) + "\n{oops\n")
    with pytest.raises(DataValidationError, match="could not be read as json"):
        load_table(path, cache_dir=tmp_path / "hf")


def test_bad_layout_argument(tmp_path):
    with pytest.raises(ValueError, match="layout='tall'"):
        load_table(_write(tmp_path, LONG, "l.csv"), layout="tall")
