"""The candidate operating points and their table (proteus.operating.table): hand-checked
cases and the quality end."""

import numpy as np

from proteus.operating import table


def test_candidates_policy_points_then_every_model():
    tau, model = table.candidates([0.9, 0.7], 3)
    assert np.isnan(tau[2:]).all() and tau[:2].tolist() == [0.9, 0.7]
    assert model.tolist() == [-1, -1, 0, 1, 2]
    tau, model = table.candidates([0.9], 3, fixed_models=False)
    assert model.tolist() == [-1]


def test_smoothed_accuracy_is_isotonic_in_tau_for_policy_points_only():
    tau = np.array([0.5, 0.6, 0.7, np.nan])
    model = np.array([-1, -1, -1, 1])
    acc = np.array([0.60, 0.66, 0.64, 0.30])
    # pool-adjacent-violators: 0.66 and 0.64 become their mean 0.65; the fixed model untouched
    np.testing.assert_allclose(table.smoothed_accuracy(tau, model, acc),
                               [0.60, 0.65, 0.65, 0.30])


def test_credited_accuracy_discounts_challengers_of_the_best_model():
    # candidate 0 (policy) ties the best fixed model (candidate 1) on 4 queries, winning 2 and
    # losing 2 against it: paired differences [1, -1, 1, -1] + zeros; sd = sqrt(4/7), n = 8
    scores = np.array([[1, 0, 1, 0, 1, 1, 1, 1],   # policy: 6/8
                       [0, 1, 0, 1, 1, 1, 1, 1],   # fixed model 0 (the incumbent): 6/8
                       [0, 0, 0, 0, 1, 1, 1, 1]],  # fixed model 1: 4/8
                      float)
    acc = scores.mean(axis=1)
    got = table.credited_accuracy(scores, acc, np.array([-1, 0, 1]), z=1.0)
    se = np.sqrt(4 / 7) / np.sqrt(8)
    np.testing.assert_allclose(got, [0.75 - se, 0.75, 0.5])
    order = table.testing_order(got, np.array([1.0, 5.0, 0.5]), np.array([-1, 0, 1]))
    # the incumbent first although the policy is cheaper; the policy's 0.75 − 0.267 = 0.483
    # even falls below fixed model 1
    assert order.tolist() == [1, 2, 0]
    assert table.credited_accuracy(scores, acc, np.array([-1, -1, -1]), 1.0).tolist() == \
        acc.tolist()  # no fixed model: nothing to credit against


def test_a_challenger_ranks_above_the_incumbent_only_with_a_clear_advantage():
    # the policy wins one query the incumbent loses: differences [1, 0 x 7], mean 1/8,
    # sd = sqrt((7/8)^2 + 7 (1/8)^2) / sqrt(7) = sqrt(0.125), se = sqrt(0.125) / sqrt(8) = 1/8
    scores = np.array([[1, 1, 1, 1, 1, 1, 1, 0],   # policy: 7/8
                       [0, 1, 1, 1, 1, 1, 1, 0]],  # the incumbent: 6/8
                      float)
    acc, model = scores.mean(axis=1), np.array([-1, 0])
    # z = 0.5: 0.875 − 0.0625 = 0.8125; clearing 2 se needs 0.875 − 0.25 = 0.625 > 0.75: no, so
    # the policy is capped at the incumbent's 0.75 (a tie: the fixed model is tested first)
    got = table.credited_accuracy(scores, acc, model, z=0.5, credit_z=2.0)
    np.testing.assert_allclose(got, [0.75, 0.75])
    assert table.testing_order(got, np.array([1.0, 5.0]), model).tolist() == [1, 0]
    # clearing 0.5 se (0.8125 > 0.75): the policy keeps its discounted 0.8125 and goes first
    np.testing.assert_allclose(table.credited_accuracy(scores, acc, model, 0.5, 0.5),
                               [0.8125, 0.75])


def test_testing_order_breaks_ties_by_kind_then_cost():
    acc, cost = np.array([0.8, 0.9, 0.8, 0.8]), np.array([3.0, 9.0, 1.0, 5.0])
    assert table.testing_order(acc, cost, np.array([-1, -1, -1, -1])).tolist() == [1, 2, 0, 3]
    # a fixed model (3) tied with policy points goes first although it is the dearest
    assert table.testing_order(acc, cost, np.array([-1, -1, -1, 2])).tolist() == [1, 3, 2, 0]


def test_quality_end_is_never_below_the_best_fixed_model_when_argmax_p_hat_is_worse():
    """10 models, model 0 the best (0.80); p̂ carries no signal, so the policy's top point (argmax
    p̂) routes each query to a random model: ~0.67 in truth, but a val draw may flatter it (the
    winner's curse). Over 50 data sets the quality end on test is the best fixed model's test
    accuracy, never the worse argmax route."""
    rng = np.random.default_rng(0)
    truth = np.array([0.80] + list(np.linspace(0.60, 0.70, 9)))
    fixed_model = np.arange(10)
    for _ in range(50):
        val, test = (rng.uniform(size=(n, 10)) < truth for n in (300, 600))
        argmax_val, argmax_test = (rng.integers(0, 10, len(s)) for s in (val, test))
        scores = np.vstack([val[np.arange(300), argmax_val][None], val.T]).astype(float)
        model = np.concatenate([[-1], fixed_model])
        acc = scores.mean(axis=1)
        acc[0] = max(acc[0], acc[1:].max() + 0.005)  # the lucky draw: top on val by half a point
        credit = table.credited_accuracy(scores, acc, model, z=1.0)
        order = table.testing_order(credit, np.r_[1.0, np.full(10, 2.0)], model)
        top = order[0]
        best_val_model = int(np.argmax(val.mean(axis=0)))
        assert model[top] == best_val_model  # the incumbent, not the lucky argmax route
        test_top = test[:, model[top]].mean()
        assert test_top >= test.mean(axis=0).max() - 0.05  # the best single model up to noise
        assert test_top > test[np.arange(600), argmax_test].mean()  # and above argmax p̂


def test_operating_taus_are_uniform_in_log_one_minus_tau():
    got = table.operating_taus([0.5, 0.7, 0.9], 3)  # log(1 − τ') from log 0.1 to log 0.5
    np.testing.assert_allclose(got, [0.9, 1 - np.sqrt(0.05), 0.5])


def test_build_table_by_hand():
    """Two policy points (τ' 0.6, 0.8) and two models on 4 held-out queries: the isotonic fix
    lifts τ'=0.8 to the pooled 0.625, nothing beats model 0 (0.75) so nothing is credited, and
    the order is by accuracy, fixed models first on ties, then cost."""
    scores = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 1, 0], [0, 0, 0, 1]], float)
    costs = np.array([[2, 2, 2, 2], [3, 3, 3, 3], [5, 5, 5, 5], [1, 1, 1, 1]], float)
    tau, model = np.array([0.6, 0.8, np.nan, np.nan]), np.array([-1, -1, 0, 1])
    got = table.build_table(tau, model, scores, costs, margin_z=1.0, credit_z=2.0)
    assert got["model"] == [0, -1, -1, 1]  # 0.75 (model 0), 0.625 (cost 2, τ' 0.6), 0.625, 0.25
    assert got["tau"] == [None, 0.6, 0.8, None]
    np.testing.assert_allclose(got["accuracy"], [0.75, 0.625, 0.625, 0.25])
    np.testing.assert_allclose(got["raw_accuracy"], [0.75, 0.75, 0.5, 0.25])
    np.testing.assert_allclose(got["cost"], [5.0, 2.0, 3.0, 1.0])
    assert (got["n_heldout"], got["margin_z"]) == (4, 1.0)
    np.testing.assert_array_equal(table.table_taus(got), [np.nan, 0.6, 0.8, np.nan])


def test_point_outcomes_gather_each_points_model_per_query():
    scores, costs = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 2.0], [3.0, 4.0]])
    s, c = table.point_outcomes(scores, costs, np.array([[0, 1], [1, 1]]))
    np.testing.assert_array_equal(s, [[1.0, 1.0], [0.0, 1.0]])
    np.testing.assert_array_equal(c, [[1.0, 4.0], [2.0, 4.0]])


def test_rank_candidates_returns_order_credit_raw_accuracy_and_cost():
    """A policy point (7/8) against the incumbent model (6/8): paired differences [1, 0 x 7],
    se = 1/8 (as above). margin_z 0.5 discounts it to 0.8125; credit_z 0.5 lets it lead, 2 caps
    it at 0.75 (a tie, the fixed model first)."""
    scores = np.array([[1, 1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1, 0]], float)
    costs = np.array([[1.0, 3.0] * 4, [5.0] * 8])  # means 2 and 5
    tau, model = np.array([0.9, np.nan]), np.array([-1, 0])
    order, credit, acc, cost = table.rank_candidates(tau, model, scores, costs, 0.5, 0.5)
    assert order.tolist() == [0, 1]
    np.testing.assert_allclose(credit, [0.8125, 0.75])
    np.testing.assert_allclose(acc, [0.875, 0.75])
    np.testing.assert_allclose(cost, [2.0, 5.0])
    order, credit, _, _ = table.rank_candidates(tau, model, scores, costs, 0.5, 2.0)
    assert order.tolist() == [1, 0]
    np.testing.assert_allclose(credit, [0.75, 0.75])


def test_ranked_table_lists_each_field_in_testing_order():
    got = table.ranked_table(np.array([0.6, np.nan]), np.array([-1, 0]), np.array([1, 0]),
                             np.array([0.7, 0.8]), np.array([0.75, 0.8]), np.array([1.0, 3.0]),
                             np.int64(10), 1)
    assert got == {"tau": [None, 0.6], "model": [0, -1], "accuracy": [0.8, 0.7],
                   "raw_accuracy": [0.8, 0.75], "cost": [3.0, 1.0], "n_heldout": 10,
                   "margin_z": 1.0}
    assert type(got["n_heldout"]) is int and type(got["margin_z"]) is float  # JSON-ready


def test_masked_candidates_repeat_the_policy_points_around_the_masked_models():
    tau, model = table.candidates([0.9, 0.7], 2)
    same = table.masked_candidates(tau, model, ())
    assert same[1].tolist() == [-1, -1, 0, 1] and same[2] == [()] * 4
    tau2, model2, excluded = table.masked_candidates(tau, model, [1, 1])
    np.testing.assert_array_equal(tau2, [0.9, 0.7, 0.9, 0.7, np.nan, np.nan])
    assert model2.tolist() == [-1, -1, -1, -1, 0, 1]
    assert excluded == [(), (), (1,), (1,), (), ()]


def test_each_family_of_policy_points_is_isotonic_on_its_own():
    """Pooled together, τ' 0.6 around model 1 (0.50) would drag the plain τ' 0.7 (0.64) down;
    each family is smoothed alone: plain [0.66, 0.64] -> 0.65 both; around [0.70, 0.50] ->
    0.60 both."""
    tau = np.array([0.6, 0.7, 0.6, 0.7, np.nan])
    model = np.array([-1, -1, -1, -1, 0])
    acc = np.array([0.66, 0.64, 0.70, 0.50, 0.30])
    excluded = [(), (), (1,), (1,), ()]
    np.testing.assert_allclose(table.smoothed_accuracy(tau, model, acc, excluded),
                               [0.65, 0.65, 0.60, 0.60, 0.30])


def test_build_table_records_what_each_point_routes_around():
    """The hand-checked table above with τ' 0.6 measured again around model 1 (scores 1, 1, 1, 1
    at cost 4). Against the incumbent model 0 (0.75): around model 1 the point leads at 1.0
    (paired differences [0, 0, 0, 1], se 0.25), not by the 2 se credit_z asks, so it is capped
    at a tie (0.75) and goes after the fixed model; the plain point ties at 0.75 (differences
    [0, 0, −1, 1], se sqrt(2/3)/2) and is discounted by one se (margin_z)."""
    scores = np.array([[1, 1, 0, 1], [1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 1]], float)
    costs = np.array([[2] * 4, [4] * 4, [5] * 4, [1] * 4], float)
    tau, model = np.array([0.6, 0.6, np.nan, np.nan]), np.array([-1, -1, 0, 1])
    got = table.build_table(tau, model, scores, costs, margin_z=1.0, credit_z=2.0,
                            excluded=[(), (1,), (), ()])
    assert got["model"] == [0, -1, -1, 1] and got["tau"] == [None, 0.6, 0.6, None]
    assert got["excluded"] == [[], [1], [], []]
    np.testing.assert_allclose(got["raw_accuracy"], [0.75, 1.0, 0.75, 0.25])
    np.testing.assert_allclose(got["accuracy"], [0.75, 0.75, 0.75 - np.sqrt(2 / 3) / 2, 0.25])
    np.testing.assert_allclose(got["cost"], [5.0, 4.0, 2.0, 1.0])
    plain = table.build_table(tau, model, scores, costs, 1.0, 2.0, excluded=[()] * 4)
    assert "excluded" not in plain  # a table where no point routes around anything: as before
