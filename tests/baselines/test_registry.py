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
        acc, cost = metrics.realised(toy.scores, toy.costs, d.choices)
        # Tuned and routed on the same rows, every τ declared feasible is met (the toy's routes
        # reach 0.5, 0.75 or 1.0, so a router that ignored τ would fail at 0.75 or 1.0) ...
        assert np.all(acc[d.feasible] >= np.asarray(taus)[d.feasible] - 1e-9), (name, acc)
        # ... and τ = 0.5 costs no more than the best fixed model, which every router but the
        # two references (oracle, best fixed) beats by routing all to the cheap model.
        if name not in ("oracle", "best_fixed"):
            assert d.feasible[0] and (acc[0], cost[0]) == (0.5, 1.0), (name, acc, cost)
    with pytest.raises(ValueError, match="unknown baseline"):
        make_router("gpt_router")
