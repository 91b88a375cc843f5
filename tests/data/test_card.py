"""The dataset card: hand-checked numbers on a tiny dataset and the real slice."""

import re

import numpy as np
import pandas as pd
import pytest

from proteus.data import RoutingDataset, card_stats, dataset_card, load_routerbench


@pytest.fixture
def tiny():
    # q0: only m0 right (cost 1); q1: only m1 right (cost 1); q2: none right, m1 cheaper (4).
    return RoutingDataset(
        name="tiny",
        models=("m0", "m1"),
        scores=np.array([[1, 0], [0, 1], [0, 0]], np.float32),
        costs=np.array([[1, 2], [3, 1], [5, 4]], np.float32),
        query_ids=np.array(["q0", "q1", "q2"]),
        tasks=np.array(["a", "b", "b"]),
        notes=("a note",),
    )


def test_card_stats_hand_checked(tiny):
    s = card_stats(tiny)
    assert s["oracle"]["accuracy"] == pytest.approx(2 / 3)
    assert s["oracle"]["cost"] == pytest.approx(2.0)  # (1 + 1 + 4) / 3
    assert s["best_fixed"] == {"model": "m0", "accuracy": pytest.approx(1 / 3), "cost": 3.0}
    assert [m["oracle_share"] for m in s["models"]] == pytest.approx([1 / 3, 2 / 3])
    assert [m["mean_cost"] for m in s["models"]] == pytest.approx([3.0, 7 / 3])
    assert s["tasks"] == {"b": 2, "a": 1}
    assert (s["n_queries"], s["n_models"], s["binary"], s["feature_dim"]) == (3, 2, True, None)


def test_dataset_card_text(tiny):
    card = dataset_card(tiny)
    assert "N=3 queries x M=2 models (binary scores; texts: no; features: none)" in card
    assert "oracle       accuracy 0.6667  cost 2.000e+00 USD/query" in card
    assert "best fixed   m0  accuracy 0.3333  cost 3.000e+00 USD/query" in card
    assert "task mix     b 2 (66.7%), a 1 (33.3%)" in card
    assert "notes        a note" in card


def test_real_slice_oracle_matches_pandas(rb_slice):
    frame = pd.read_pickle(rb_slice)
    models = [c for c in frame.columns if f"{c}|total_cost" in frame.columns]
    scores = frame[models].apply(pd.to_numeric).dropna()
    expected = scores.max(axis=1).mean()
    card = dataset_card(load_routerbench(rb_slice, allow_pickle=True))
    printed = float(re.search(r"oracle\s+accuracy ([0-9.]+)", card).group(1))
    assert printed == pytest.approx(expected, abs=5e-5)
