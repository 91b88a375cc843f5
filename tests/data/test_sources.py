"""`load_source` spec strings for every kind."""

import pandas as pd
import pytest

from proteus.data import load_source, parse_spec


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("synthetic:sprout", ("synthetic", "sprout", {})),
        ("synthetic:sprout?n=10&seed=2", ("synthetic", "sprout", {"n": "10", "seed": "2"})),
        ("routerbench:/a/b.pkl?missing=zero", ("routerbench", "/a/b.pkl", {"missing": "zero"})),
        ("table:C:/x.csv?layout=long&", ("table", "C:/x.csv", {"layout": "long"})),
        ("table:s.csv?cost_suffix=|usd", ("table", "s.csv", {"cost_suffix": "|usd"})),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ("scores.csv", "bad data source"),
        ("excel:x.xlsx", "bad data source"),
        ("table:", "empty target"),
        ("synthetic:sprout?n", "not key=value"),
    ],
)
def test_parse_spec_errors(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_spec(spec)


def test_synthetic_params_and_overrides():
    ds = load_source("synthetic:sprout?n=40&seed=3&signal=0.5&feature_dim=8")
    assert (ds.n_queries, ds.n_models, ds.features.shape[1]) == (40, 13, 8)
    assert ds.source == "synthetic:sprout?n=40&seed=3&signal=0.5&feature_dim=8"
    assert load_source("synthetic:routerbench?n=40", n=25).n_queries == 25


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ("synthetic:routerbench?size=3", r"unknown parameter\(s\) \['size'\]"),
        ("synthetic:nope", "unknown synthetic preset 'nope'"),
        ("synthetic:routerbench?n=many", "parameter n='many'"),
    ],
)
def test_load_source_errors(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_source(spec)


def test_file_kinds(tmp_path, routerbench_pkl, sprout_dir):
    rb = load_source(f"routerbench:{routerbench_pkl}?missing=zero&allow_pickle=1")
    assert rb.n_queries == 4 and rb.notes[0].startswith("filled 1 missing")
    sp = load_source(f"sprout:{sprout_dir}?split=test", cache_dir=tmp_path / "hf")
    assert sp.query_ids.tolist() == ["t0", "t1"]
    path = tmp_path / "long.csv"
    pd.DataFrame(
        {"query_id": ["a", "a"], "model": ["x", "y"], "score": [1, 0], "cost": [0.1, 0.2]}
    ).to_csv(path, index=False)
    tb = load_source(f"table:{path}?layout=long", cache_dir=tmp_path / "hf")
    assert tb.models == ("x", "y") and tb.scores.tolist() == [[1.0, 0.0]]
