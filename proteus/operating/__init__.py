"""Operating points and certified floors: the one home of the τ → operating-point rule.

An operating point is one way to route every query (the policy at a target τ', or one fixed
model). The modules, in the order a router is built:

- `table`: the candidate points, fixed before any held-out label is read, measured on `val`
  (isotonic in τ', credited against the best single model) and put in testing order;
- `bounds`: finite-sample p-values and lower confidence bounds of a point's accuracy;
- `certificate`: fixed-sequence (Learn-then-Test) certification of the points on `calib`;
- `policy`: `OperatingPolicy`, the rule that maps a requested τ to a point, certified or not,
  with the infeasible fallback; evaluation, export and every serving front end call it;
- `exclusion`: the routing rule re-applied around some models, for a point that routes around
  them (an onboarded router's points without its new model) and for the online drift test.

Nothing here imports training, data loading or JAX: serving imports it.
"""

from proteus.operating.certificate import CertificationTable, Fallback, certification_taus, certify
from proteus.operating.policy import (
    FALLBACKS,
    InfeasibleTauError,
    OperatingPoint,
    OperatingPolicy,
    check_tau,
    feasible_range,
)
from proteus.operating.table import build_table, candidates, operating_taus, point_outcomes

__all__ = [
    "FALLBACKS", "CertificationTable", "Fallback", "InfeasibleTauError", "OperatingPoint",
    "OperatingPolicy", "build_table", "candidates", "certification_taus", "certify", "check_tau",
    "feasible_range", "operating_taus", "point_outcomes",
]
