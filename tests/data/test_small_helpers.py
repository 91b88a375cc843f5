"""Direct, hand-checked tests of the small data helpers: the oracle's per-query choice, the pickle
guard (`is_pickle`, `refuse_pickle`) and the query-string boolean of source specs."""

import numpy as np
import pytest

from proteus.data.dataset import DataValidationError, oracle_choice
from proteus.data.routerbench import PickleRefusedError, is_pickle, refuse_pickle
from proteus.data.sources import parse_flag


def test_oracle_choice_takes_the_best_score_and_the_cheapest_among_ties():
    scores = np.array([[0.5, 0.9, 0.9],   # models 1 and 2 tie at 0.9: model 2 costs 2 < 3
                       [1.0, 1.0, 0.0],   # models 0 and 1 tie at 1: model 1 costs 4 < 5
                       [0.0, 0.0, 0.0],   # all tie: model 1 is the cheapest (1)
                       [0.2, 0.7, 0.1]])  # a unique best (model 1) even though it is dearest
    costs = np.array([[1.0, 3.0, 2.0],
                      [5.0, 4.0, 1.0],
                      [3.0, 1.0, 2.0],
                      [1.0, 9.0, 1.0]])
    np.testing.assert_array_equal(oracle_choice(scores, costs), [2, 1, 1, 1])


def test_oracle_choice_equal_score_and_cost_takes_the_first_model():
    np.testing.assert_array_equal(oracle_choice(np.array([[0.5, 0.5]]), np.ones((1, 2))), [0])


@pytest.mark.parametrize("target", ["rb.pkl", "data/RB.PKL", "x.pickle", "owner/name/file.pkl"])
def test_is_pickle_by_suffix_whether_or_not_the_file_exists(target):
    assert is_pickle(target)


@pytest.mark.parametrize("target", ["rb.parquet", "scores.csv", "owner/file.parquet", "rb"])
def test_is_pickle_false_for_tables_and_plain_names(target):
    # "owner/file.parquet" looks like a hub id but has a table suffix; "rb" has no "/".
    assert not is_pickle(target)


def test_is_pickle_for_a_hub_id_only_when_no_such_local_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the hub's default file (HUB_FILE, routerbench_0shot.pkl) is a pickle
    assert is_pickle("withmartian/routerbench")
    (tmp_path / "withmartian" / "routerbench").mkdir(parents=True)
    assert not is_pickle("withmartian/routerbench")  # now a local directory, not a hub id


def test_refuse_pickle_names_the_file_the_risk_and_both_ways_on():
    err = refuse_pickle("data/rb.pkl")
    assert isinstance(err, PickleRefusedError) and isinstance(err, DataValidationError)
    msg = str(err)
    assert msg.startswith("data/rb.pkl: refusing to unpickle this file: reading a pickle runs "
                          "arbitrary code")
    # the parquet copy is named after the stem ("rb"), next to the working directory
    assert ("python -m launch.data_summary --source='routerbench:data/rb.pkl?allow_pickle=1' "
            "--to_parquet=rb.parquet, then use routerbench:rb.parquet.") in msg
    assert "opt in: 'routerbench:data/rb.pkl?allow_pickle=1'" in msg
    assert msg.endswith("(allow_pickle=True in Python, --allow_pickle on launch.data_summary)")


def test_refuse_pickle_of_a_hub_id_uses_its_last_part_as_stem():
    msg = str(refuse_pickle("withmartian/routerbench"))
    assert "--to_parquet=routerbench.parquet" in msg
    assert msg.startswith("withmartian/routerbench: refusing")


@pytest.mark.parametrize("value", ["1", "true", "TRUE", " yes ", "On"])
def test_parse_flag_true_words(value):
    assert parse_flag(value) is True


@pytest.mark.parametrize("value", ["0", "false", "No", "OFF", "", "  "])
def test_parse_flag_false_words_and_empty(value):
    assert parse_flag(value) is False


@pytest.mark.parametrize("value", ["2", "maybe", "y"])
def test_parse_flag_rejects_other_words_quoting_them(value):
    expected = f"expected 1/true/yes/on or 0/false/no/off, got '{value}'"
    with pytest.raises(ValueError, match=expected):
        parse_flag(value)
