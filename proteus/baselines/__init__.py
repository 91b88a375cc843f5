"""Baseline routers of DESIGN.md section 5, all behind one interface (see `base`).

    router = make_router("carrot").fit(val)           # val: RouterInputs with labels + p_hat/c_hat
    decisions = router.route(test.without_labels(), taus)
    accuracy, cost = metrics.realised(test.scores, test.costs, decisions.choices)

`make_router` builds every baseline by its results.json name; "knn", "cluster" and "task_table"
need `reference=`: the training split's RouterInputs with scores and costs, plus features ("knn",
"cluster") or tasks ("task_table"; routed queries need tasks too).
"""

from proteus.baselines.base import Decisions, Router, RouterInputs, pick_settings
from proteus.baselines.cluster import ClusterRouter, kmeans
from proteus.baselines.fixed import ZeroRouter, cheapest_mix
from proteus.baselines.knn import KnnRouter, knn_predict
from proteus.baselines.plugin import CarrotRouter, OmniRouter, PluginRouter, plugin_choices
from proteus.baselines.task_table import TaskTableRouter
from proteus.baselines.threshold import ThresholdRouter

BASELINES = {
    "zero_router": ZeroRouter,
    "threshold": ThresholdRouter,
    "carrot": CarrotRouter,
    "omnirouter": OmniRouter,
    "knn": KnnRouter,
    "proteus_plugin": PluginRouter,
    "cluster": ClusterRouter,
    "task_table": TaskTableRouter,
}


def make_router(name: str, **kwargs) -> Router:
    """A baseline by its results.json name; kwargs go to its constructor."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    return BASELINES[name](**kwargs)


__all__ = [
    "BASELINES",
    "CarrotRouter",
    "ClusterRouter",
    "Decisions",
    "KnnRouter",
    "OmniRouter",
    "PluginRouter",
    "Router",
    "RouterInputs",
    "TaskTableRouter",
    "ThresholdRouter",
    "ZeroRouter",
    "cheapest_mix",
    "kmeans",
    "knn_predict",
    "make_router",
    "pick_settings",
    "plugin_choices",
]
