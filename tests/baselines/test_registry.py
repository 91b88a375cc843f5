"""Tests for the baseline registry."""

import numpy as np
import pytest

from proteus import metrics
from proteus.baselines import BASELINES, make_router


def test_every_baseline_fits_and_routes(toy):
    taus = [0.5, 0.75, 1.0]
    for name in BASELINES:
        kwargs = {"reference": toy} if name in ("knn", "cluster", "task_table") else {}
        router = make_router(name, **kwargs).fit(toy)
        d = router.route(toy.without_labels(), taus)
        assert router.name == name
        assert d.choices.shape == (3, 4) and d.feasible.shape == (3,)
        acc, _ = metrics.realised(toy.scores, toy.costs, d.choices)
        assert np.all(acc[d.feasible] >= 0.5)
    with pytest.raises(ValueError, match="unknown baseline"):
        make_router("gpt_router")
