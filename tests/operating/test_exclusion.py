"""Routing around models (proteus.operating.exclusion): the rule re-applied by hand."""

import numpy as np

from proteus.operating import exclusion

# Two queries, three models, c_ref = 1. Query 0 at μ = 0.5: utility 0.5 p̂ − 0.5 ĉ =
# [-1.05, -0.25, -0.65] -> model 1, then 2. Query 1 at μ = 0.9: 0.9 p̂ − 0.1 ĉ =
# [0.51, 0.35, 0.43] -> model 0, then 2.
MU = np.array([0.5, 0.9], np.float32)
P_HAT = np.array([[0.9, 0.5, 0.7], [0.9, 0.5, 0.7]], np.float32)
C_HAT = np.array([[3.0, 1.0, 2.0], [3.0, 1.0, 2.0]], np.float32)


def test_choose_by_hand():
    none = np.zeros((2, 3), bool)
    assert exclusion.choose(MU, P_HAT, C_HAT, 1.0, none).tolist() == [1, 0]
    around = exclusion.rows_mask([(1,), (0,)], 3)
    assert exclusion.choose(MU, P_HAT, C_HAT, 1.0, around).tolist() == [2, 2]
    # c_ref = 10 makes cost count a tenth: query 0's utility [0.3, 0.2, 0.25] -> model 0
    assert exclusion.choose(MU, P_HAT, C_HAT, 10.0, none).tolist() == [0, 0]
    every = np.ones((2, 3), bool)  # a row cannot lose every model: it keeps them all
    assert exclusion.choose(MU, P_HAT, C_HAT, 1.0, every).tolist() == [1, 0]


def test_route_around_changes_only_the_rows_whose_choice_is_excluded():
    given = np.array([2, 0], np.int32)  # row 0's given choice differs from the rule's on purpose
    mask = exclusion.rows_mask([(1,), (0,)], 3)
    # row 0's choice (2) is not excluded: kept as given; row 1's (0) is: the rule's next, 2
    assert exclusion.route_around(given, MU, P_HAT, C_HAT, 1.0, mask).tolist() == [2, 2]
    untouched = exclusion.route_around(given, MU, P_HAT, C_HAT, 1.0, np.zeros((2, 3), bool))
    assert untouched.tolist() == [2, 0] and untouched.dtype == np.int32
    broken = np.array([7, -1], np.int32)  # not model indices: left for serving to refuse
    assert exclusion.route_around(broken, MU, P_HAT, C_HAT, 1.0, mask).tolist() == [7, -1]


def test_rows_mask_and_table_excluded():
    np.testing.assert_array_equal(exclusion.rows_mask([(), (0, 2)], 3),
                                  [[False, False, False], [True, False, True]])
    assert exclusion.table_excluded({"model": [-1, 0]}) == [(), ()]
    assert exclusion.table_excluded({"model": [-1, 0], "excluded": [[2], []]}) == [(2,), ()]
