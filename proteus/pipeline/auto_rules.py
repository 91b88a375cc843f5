"""The decision rules of the automatic settings: pure functions of evidence numbers.

Each rule reads numbers that `proteus.pipeline.auto` measured on the training pool out of fold
(`proteus.pipeline.evidence`) or on no labels at all (the table's size); none reads `val`,
`calib` or `test`. `RULES` states each one in words; the record of every choice carries it.

The thresholds, and what they were set from:

- `MIN_GAIN` = 0.001 AIQ: a setting that costs something (a task every served query must state;
  a sentence encoder's torch install and encoding time) is taken only when it gains more than
  this out of fold. Set after reading the task prior probe's published numbers (README "Task-
  conditioned routing": out of fold and `val`, never test), before any encoder evidence was
  computed; it is half the 0.002 the project counts as "within" in AIQ.
- `SMALL_SET` = 5,000 queries: below it, the small-set split and batch of the RouterBench
  slice's hand config (a larger `calib` share keeps certified bounds useful on few queries);
  from it, MMLU-Pro's. Set between the two real sets' sizes (3,150 and 10,326 usable queries),
  which reads no label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MIN_GAIN = 0.001
SMALL_SET = 5000
# (split fractions, batch size) of a small and a large table; the test share is the last cut
# and the same (0.2) in both, so the size rule never moves a query in or out of `test`
SMALL = ({"pred": 0.3, "policy": 0.2, "val": 0.1, "calib": 0.2, "test": 0.2}, 128)
LARGE = ({"pred": 0.35, "policy": 0.25, "val": 0.1, "calib": 0.1, "test": 0.2}, 256)

RULES = {
    "size": f"fewer than {SMALL_SET} usable queries: splits {SMALL[0]}, batch {SMALL[1]}; "
            f"else splits {LARGE[0]}, batch {LARGE[1]} (reads the query count, no label)",
    "encoder": "the cheapest installed encoder (precomputed < hashing < sentence encoder) whose "
               "out-of-fold plug-in AIQ on the training pool, with its own task prior choice, "
               f"is within {MIN_GAIN} of the best candidate's",
    "task_prior": "on only if the out-of-fold plug-in AIQ on the training pool of the "
                  f"calibration with the task term exceeds the one without it by more than "
                  f"{MIN_GAIN} (needs >= 2 tasks in the pool; off costs the caller nothing)",
    "tau_range": "from the cheapest single model's accuracy (rounded up to eval.tau_step) to the "
                 "highest accuracy a plug-in point or a single model reaches (rounded down), "
                 "both out of fold on the training pool",
}


def cheapest_within(values: Sequence[float], min_gain: float = MIN_GAIN) -> int:
    """Index of the first candidate whose value is within `min_gain` of the best.

    Candidates are ordered cheapest first, so a costlier one is chosen only when it beats every
    cheaper one by more than `min_gain`; equal values go to the cheaper. NaN values (a candidate
    whose evidence could not be measured) are never chosen unless all are NaN.

    Example: values (0.850, 0.8505, 0.853) -> 2; (0.850, 0.8505, 0.8509) -> 0.
    """
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return 0
    best = max(finite)
    return next(i for i, v in enumerate(values) if not math.isnan(v) and v >= best - min_gain)


def size_rule(n_queries: int) -> tuple[dict[str, float], int]:
    """(split fractions, batch size) for a table of `n_queries` usable queries."""
    splits, batch = SMALL if n_queries < SMALL_SET else LARGE
    return dict(splits), batch


def tau_range(reach_lo: float, reach_hi: float, step: float) -> tuple[float, float]:
    """The report grid's ends: reach_lo rounded up and reach_hi rounded down to multiples of
    `step`, within [0, 1]; hi = lo when the reach is narrower than one step.

    Example: (0.5934, 0.8791, 0.01) -> (0.6, 0.87).
    """
    eps = 1e-9  # 0.6 / 0.01 is 59.999...: an accuracy on the grid stays on it
    lo = min(max(math.ceil(reach_lo / step - eps) * step, 0.0), 1.0)
    hi = min(max(math.floor(reach_hi / step + eps) * step, 0.0), 1.0)
    return round(lo, 6), round(max(hi, lo), 6)
