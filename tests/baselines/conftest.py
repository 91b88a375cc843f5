"""Hand-built routing cases shared by the baseline tests."""

import numpy as np
import pytest

from proteus.evaluation.baselines import RouterInputs


@pytest.fixture
def toy() -> RouterInputs:
    """4 queries x 2 models: model 0 costs 1, model 1 costs 10 (c_ref = 10).

    Model 1 is always right; model 0 is right on q0 and q3 only (accuracy 0.5). The predictor
    is informative: the predicted gain of model 1 is 0 on q0/q3, 0.8 on q1 and 0.7 on q2, so the
    plug-in rule argmax λ p̂ − ĉ/10 upgrades q1 for λ > 0.9/0.8 = 1.125 and q2 for
    λ > 0.9/0.7 ≈ 1.286.
      all cheap:      accuracy 0.50, cost 1.00
      q1 upgraded:    accuracy 0.75, cost 3.25
      q1, q2 upgraded: accuracy 1.00, cost 5.50
    Tasks: q0/q3 are task "easy", q1/q2 task "hard" (the same split as the features).
    """
    scores = np.array([[1, 1], [0, 1], [0, 1], [1, 1]], np.float32)
    costs = np.tile(np.array([[1.0, 10.0]], np.float32), (4, 1))
    p_hat = np.array([[0.9, 0.9], [0.1, 0.9], [0.2, 0.9], [0.9, 0.9]])
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0], [1.0, 0.1]], np.float32)
    tasks = np.array(["easy", "hard", "hard", "easy"])
    return RouterInputs(scores, costs, p_hat, costs.astype(np.float64), features, tasks)
