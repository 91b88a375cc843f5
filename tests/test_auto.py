"""The automatic settings: rules by hand, plug-in evidence on tiny inputs, "auto" in a config
(proteus/pipeline/auto_rules.py, evidence.py, config.py; experiments/configs/table.py)."""

import logging
import math

import ml_collections
import numpy as np
import pytest

from experiments import validate
from experiments.configs import common, table
from proteus.pipeline import auto, auto_rules, evidence
from proteus.pipeline import config as config_lib


@pytest.mark.parametrize("values, expected", [
    ((0.850, 0.8505, 0.853), 2),  # the dearest beats the best cheaper one by 0.0025
    ((0.850, 0.8505, 0.8509), 0),  # nobody beats the cheapest by more than 0.001
    ((0.850, 0.8515, 0.8520), 1),  # the middle one is within 0.001 of the best
    ((0.7, 0.7), 0),  # a tie goes to the cheaper
    ((0.80, 0.7), 0),
    ((math.nan, 0.7), 1),  # a candidate without evidence is never chosen
    ((math.nan, math.nan), 0),
])
def test_cheapest_within_prefers_the_cheaper_unless_clearly_beaten(values, expected):
    assert auto_rules.cheapest_within(values, min_gain=0.001) == expected


def test_size_rule_switches_at_the_threshold_and_never_moves_the_test_cut():
    small, small_batch = auto_rules.size_rule(auto_rules.SMALL_SET - 1)
    large, large_batch = auto_rules.size_rule(auto_rules.SMALL_SET)
    assert small == {"pred": 0.3, "policy": 0.2, "val": 0.1, "calib": 0.2, "test": 0.2}
    assert (small_batch, large_batch) == (128, 256)
    assert large == {"pred": 0.35, "policy": 0.25, "val": 0.1, "calib": 0.1, "test": 0.2}
    for splits in (small, large):  # test is the last cut, at 0.8 in both
        assert list(splits) == list(config_lib.SPLIT_NAMES)
        assert sum(splits.values()) == pytest.approx(1.0)
        assert sum(list(splits.values())[:-1]) == pytest.approx(0.8)


@pytest.mark.parametrize("lo, hi, step, expected", [
    (0.5934, 0.8791, 0.01, (0.6, 0.87)),
    (0.6, 0.87, 0.01, (0.6, 0.87)),  # ends on the grid stay there (0.6 / 0.01 = 59.99...)
    (0.603, 0.605, 0.01, (0.61, 0.61)),  # narrower than a step: one τ
    (0.0, 1.0, 0.05, (0.0, 1.0)),
    (0.4525, 0.7432, 0.02, (0.46, 0.74)),
])
def test_tau_range_rounds_inward_to_the_step(lo, hi, step, expected):
    assert auto_rules.tau_range(lo, hi, step) == pytest.approx(expected)


def _two_query_table():
    """q0: both models right; q1: only the dear one. Model 0 costs 0, model 1 costs 1."""
    scores = np.array([[1.0, 1.0], [0.0, 1.0]])
    costs = np.array([[0.0, 1.0], [0.0, 1.0]])
    return scores, costs


def test_plugin_aiq_by_hand():
    scores, costs = _two_query_table()
    # Perfect p̂: at large λ the rule sends q0 to model 0 and q1 to model 1: accuracy 1 at cost
    # 0.5, with the single models (0, 0.5) and (1, 1): the hull's area is 0.375 + 0.5.
    assert evidence.plugin_aiq(scores, costs, scores, costs, 1.0) == pytest.approx(0.875)
    # An uninformative p̂ ranks only by cost: the plug-in adds nothing to the single models,
    # whose hull (0, 0.5) -> (1, 1) has area 0.75.
    flat = np.full_like(scores, 0.5)
    assert evidence.plugin_aiq(flat, costs, scores, costs, 1.0) == pytest.approx(0.75)
    acc, _ = evidence.plugin_points(scores, costs, scores, costs, 1.0)
    assert acc.max() == 1.0 and acc[-2:].tolist() == [0.5, 1.0]  # then the single models


def test_log_loss_by_hand():
    assert evidence.log_loss(np.full((3, 2), 0.5), np.ones((3, 2))) == pytest.approx(math.log(2))
    assert evidence.log_loss(np.array([[0.8]]), np.array([[0.5]])) == pytest.approx(
        -0.5 * math.log(0.8) - 0.5 * math.log(0.2))


def test_table_config_leaves_the_data_dependent_settings_auto():
    c = table.get_config("scores.csv")
    assert c.data.source == "table:scores.csv"
    assert config_lib.auto_settings(c) == tuple(config_lib.AUTO_SETTINGS)
    validate.validate(c)  # "auto" passes the schema
    spec = "routerbench:rb.pkl?allow_pickle=1"
    assert table.get_config(spec).data.source == spec  # a source spec is taken as is
    with pytest.raises(ValueError, match="needs the table"):
        table.get_config("")


def test_a_variant_replaces_an_auto_setting():
    c = table.get_config("scores.csv,hashing,smoke")
    assert (c.data.encoder, c.train.batch_size) == ("hashing", 64)
    assert "data.encoder" not in config_lib.auto_settings(c)
    assert "model.task_prior" in config_lib.auto_settings(c)


def test_the_library_refuses_an_unresolved_config():
    with pytest.raises(config_lib.ConfigError, match="resolve them first"):
        config_lib.require_concrete(table.get_config("scores.csv"))


def test_command_line_strings_become_concrete_values():
    assert config_lib.concrete_value("model.task_prior", "False") is False
    assert config_lib.concrete_value("eval.tau_lo", "0.8") == 0.8
    assert config_lib.concrete_value("train.batch_size", "128") == 128
    assert config_lib.concrete_value("data.splits", "0.3,0.2,0.1,0.2,0.2")["calib"] == 0.2
    assert config_lib.concrete_value("data.encoder", "hashing") == "hashing"
    assert config_lib.concrete_value("model.task_prior", "auto") == "auto"
    with pytest.raises(config_lib.ConfigError, match="model.task_prior='maybe'"):
        config_lib.concrete_value("model.task_prior", "maybe")


def test_resolving_a_config_without_auto_only_parses_strings():
    c = common.set_auto(common.base_config(), "model.task_prior")
    c.model.task_prior = "true"
    out = auto.resolve(c)
    assert out.model.task_prior is True and "auto" not in out
    assert auto.request_of(out) == auto.request_of(c)  # no record: its own request
    assert auto.request_of(c)["model"]["task_prior"] is True


def test_a_record_gives_back_its_request():
    c = table.get_config("scores.csv")
    values = {"data.splits": dict(auto_rules.SMALL[0]), "train.batch_size": 128,
              "data.encoder": "hashing", "model.task_prior": False, "eval.tau_lo": 0.5,
              "eval.tau_hi": 0.8}
    record = {"size": {"settings": ["data.splits", "train.batch_size"], "choice": {}},
              "rest": {"settings": ["data.encoder", "model.task_prior", "eval.tau_lo",
                                    "eval.tau_hi"], "choice": {}}}
    resolved = auto.with_values(c, values, record)
    assert config_lib.auto_settings(resolved) == ()
    assert resolved.data.splits.calib == 0.2 and resolved.model.task_prior is False
    assert auto.request_of(resolved) == auto.request_of(c)
    assert auto.request_of(c)["data"]["splits"] == "auto"
    validate.validate(resolved)  # the record is not a setting: no warning, no error


def test_describe_prints_one_line_per_choice():
    entry = {"settings": ["model.task_prior"], "candidates": [False, True], "choice": True,
             "evidence": {"split": "training pool", "plugin_aiq": [0.71244, 0.71881]}}
    text = auto.describe({"task_prior": entry})
    assert text == ("auto task_prior: model.task_prior = True among [False, True]; evidence "
                    "{'plugin_aiq': [0.7124, 0.7188]}")
    assert auto.describe(None) == "auto: no automatic settings"


def test_candidate_encoders_follow_the_data_and_the_install(monkeypatch):
    from proteus.data import synthetic

    ds = synthetic("routerbench", n=50, seed=0)  # features and texts
    monkeypatch.setattr(auto, "TEXT_ENCODERS", (("hashing", ()), ("hashing:dim=64",
                                                                  ("no_such_module_here",))))
    assert auto.candidate_encoders(ds) == (("precomputed", "hashing"), ("hashing:dim=64",))
    import dataclasses

    with pytest.raises(config_lib.ConfigError, match="no encoder applies"):
        auto.candidate_encoders(dataclasses.replace(ds, texts=None, features=None))


def test_with_values_builds_a_new_locked_config():
    c = ml_collections.ConfigDict({"model": {"task_prior": "auto"}, "num_seeds": 3})
    out = auto.with_values(c, {"model.task_prior": True}, {}, num_seeds=1)
    assert out.model.task_prior is True and out.num_seeds == 1 and c.model.task_prior == "auto"
    with pytest.raises(AttributeError):
        out.new_field = 1


def test_the_evidence_load_leaves_the_loader_notes_to_load_splits(tmp_path, caplog):
    """A dropped row is reported once per job: by `load_splits`, not again by `resolve`."""
    path = tmp_path / "t.csv"
    path.write_text("query_id,prompt,a,b,a|cost,b|cost\nq0,x,1,0,1,2\nq1,y,,1,1,2\nq2,z,0,1,1,2\n")
    with caplog.at_level(logging.WARNING):
        ds = auto.load_quietly(f"table:{path}")
        assert ds.n_queries == 2 and "dropped 1 of 3 rows" in ds.notes[0]
        assert "dropped" not in caplog.text
        auto.load_source(f"table:{path}")
        assert "dropped 1 of 3 rows" in caplog.text  # the loader's level is back


def test_parsed_values_parses_strings_keeps_auto_and_skips_missing_settings():
    c = ml_collections.ConfigDict({
        "data": {"encoder": "auto", "splits": "0.35,0.25,0.1,0.1,0.2"},
        "model": {"task_prior": "true"},
        "eval": {"tau_lo": "0.8"},  # no tau_hi: left out, not None
        "train": {"batch_size": 64}})
    assert auto.parsed_values(c) == {
        "data.encoder": "auto", "model.task_prior": True, "eval.tau_lo": 0.8,
        "data.splits": {"pred": 0.35, "policy": 0.25, "val": 0.1, "calib": 0.1, "test": 0.2},
        "train.batch_size": 64}
    c.model.task_prior = "maybe"
    with pytest.raises(config_lib.ConfigError, match="model.task_prior='maybe': expected true"):
        auto.parsed_values(c)
    c.model.task_prior = "false"
    c.data.splits = "0.5,0.5"
    with pytest.raises(config_lib.ConfigError, match=r"data.splits='0.5,0.5': expected 5"):
        auto.parsed_values(c)


def test_describe_entry_rounds_floats_drops_the_split_and_omits_absent_candidates():
    entry = {"settings": ["eval.tau_lo", "eval.tau_hi"], "choice": [0.5, 0.9],
             "evidence": {"split": "training pool", "reach": [0.123456, 0.98765],
                          "n": 7, "aiq": 0.712449, "names": ["a"]}}
    # floats to 4 places (a list only when its first item is a float); ints and strings as is
    assert auto.describe_entry(entry) == (
        "eval.tau_lo, eval.tau_hi = [0.5, 0.9]; evidence "
        "{'reach': [0.1235, 0.9877], 'n': 7, 'aiq': 0.7124, 'names': ['a']}")
    entry = {"settings": ["data.encoder"], "choice": "hashing",
             "candidates": ["precomputed", "hashing"]}  # no evidence at all
    assert auto.describe_entry(entry) == (
        "data.encoder = 'hashing' among ['precomputed', 'hashing']; evidence {}")
