"""experiments/validate.py: every field has a rule; nonsense settings fail up front, by name.

Issue 11 item 4: `train.batch_size=0` ran to a NaN results.json, `train.algo=dqn` silently ran
REINFORCE, `chunk_size=0` / `num_seeds=0` / `batch_size=-5` died in errors that named nothing.
"""

import math

import pytest

from experiments import validate
from experiments.configs import common, quickstart, routerbench, synthetic_routerbench


def _with(**dotted):
    """base_config() as a plain dict (as a hand-edited config.json reads) with settings changed."""
    config = common.base_config().to_dict()
    for name, value in dotted.items():
        *path, leaf = name.split("__")
        node = config
        for part in path:
            node = node[part]
        node[leaf] = value
    return config


def test_schema_covers_exactly_the_base_config():
    fields = set(validate.flatten(common.base_config()))
    assert fields - set(validate.SCHEMA) == set(), "fields without a rule"
    assert set(validate.SCHEMA) - fields == set(), "rules for fields that do not exist"


@pytest.mark.parametrize("get_config", [quickstart.get_config, routerbench.get_config,
                                        synthetic_routerbench.get_config])
@pytest.mark.parametrize("variant", [None, "smoke", "ppo,pid", "no_tau", "static_cost",
                                     "precomputed"])
def test_shipped_configs_are_valid(get_config, variant):
    validate.validate(get_config(variant))


@pytest.mark.parametrize("dotted, setting", [
    (dict(train__batch_size=0), "train.batch_size=0"),
    (dict(train__batch_size=-5), "train.batch_size=-5"),
    (dict(train__algo="dqn"), "train.algo='dqn'"),
    (dict(train__pred_lr=-1e-3), "train.pred_lr=-0.001"),
    (dict(train__policy_lr=math.nan), "train.policy_lr=nan"),
    (dict(train__dual_lr=math.inf), "train.dual_lr=inf"),
    (dict(certify__delta=2.0), "certify.delta=2.0"),
    (dict(train__chunk_size=0), "train.chunk_size=0"),
    (dict(train__run_batch=-1), "train.run_batch=-1"),
    (dict(num_seeds=0), "num_seeds=0"),
    (dict(lanes__n=0), "lanes.n=0"),
    (dict(train__policy_steps=45), "train.policy_steps=45: must be a multiple of "
                                   "train.chunk_size=100"),
    (dict(train__dual="pd"), "train.dual='pd'"),
    (dict(lanes__spacing="log"), "lanes.spacing='log'"),
    (dict(certify__method="bonferroni"), "certify.method='bonferroni'"),
    (dict(certify__fallback="guess"), "certify.fallback='guess'"),
    (dict(data__splits__test=0.0), "data.splits.test=0.0"),
    (dict(data__exclude_models="a,,b"), "data.exclude_models='a,,b'"),
    (dict(data__exclude_models="a, a"), "data.exclude_models='a, a'"),
    (dict(data__splits__test=0.3), "data.splits: fractions must sum to 1"),
    (dict(lanes__lo=0.9, lanes__hi=0.8), "lanes.lo=0.9, lanes.hi=0.8"),
    (dict(train__pid_gains=(1.0, 2.0)), "train.pid_gains=(1.0, 2.0)"),
    (dict(model__use_tau_input=1), "model.use_tau_input=1"),
    (dict(data__source="excel:x.xlsx"), "data.source='excel:x.xlsx'"),
    (dict(data__source="synthetic:nope"), "unknown synthetic preset"),
    (dict(data__encoder="word2vec"), "data.encoder='word2vec'"),
    (dict(data__source="routerbench:/x/rb.pkl"), "data.source='routerbench:/x/rb.pkl': /x/rb.pkl: "
                                                 "no such file"),
    (dict(eval__tau_lo=0.97), "eval.tau_lo=0.97 > eval.tau_hi=0.95"),
])
def test_nonsense_fails_naming_the_setting(dotted, setting):
    with pytest.raises(validate.ConfigError) as e:
        validate.validate(_with(**dotted))
    assert setting in str(e.value)


def test_a_pickle_source_needs_the_opt_in(tmp_path):
    pkl = tmp_path / "rb.pkl"
    pkl.write_bytes(b"")  # never read: refused before
    with pytest.raises(validate.ConfigError, match="arbitrary code"):
        validate.validate(_with(data__source=f"routerbench:{pkl}"))


def test_all_problems_reported_at_once():
    found = validate.problems(_with(train__batch_size=0, train__algo="dqn", num_seeds=0))
    assert [p.split("=")[0] for p in found] == ["num_seeds", "train.batch_size", "train.algo"]


def test_bad_chunk_size_is_not_also_a_multiple_error():
    found = validate.problems(_with(train__chunk_size=0))
    assert found == ["train.chunk_size=0: expected an integer in [1, inf]"]


def test_json_round_trip_of_a_config_is_valid():
    import json

    raw = json.loads(quickstart.get_config("smoke").to_json_best_effort())
    validate.validate(raw)  # tuples become lists (pid_gains), still valid


def test_unknown_field_warns(caplog):
    raw = {**common.base_config().to_dict(), "extra": 1}
    validate.validate(raw)
    assert "extra" in caplog.text


def test_sweep_grid_values_use_the_same_rules():
    from experiments import sweep

    validate.validate_grid(sweep.default_grid(), sweep.SWEPT)
    grid = sweep.default_grid()
    grid.policy_lr = (3e-4, -1.0)
    grid.lanes = (4, 0)
    grid.seeds = 0
    with pytest.raises(validate.ConfigError) as e:
        validate.validate_grid(grid, sweep.SWEPT)
    msg = str(e.value)
    assert "sweep.seeds=0" in msg
    assert "sweep.policy_lr value -1.0 (for train.policy_lr)" in msg
    assert "sweep.lanes value 0 (for lanes.n)" in msg
