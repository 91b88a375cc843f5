"""Types shared across the library (shapes are stated where they are used).

Names of λ, the dual of the accuracy floor: `lam` is λ per query (or a dual's current iterate),
`lane_lams` [K] the lanes' table that λ(τ) interpolates, `lam_avg` a dual state's averaged
iterate (a lane's λ at inference), `lam_grid` a baseline's swept values; JSON spells it
"lambda" (an artifact's table: `lambda.taus`, `lambda.lams`).
"""

from typing import Any, NamedTuple

import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays (flax variables dict)


class Decisions(NamedTuple):
    """Routing decisions for B queries: the one decision type, from the network to every API.

    `proteus.training.networks.route` fills the first five fields (jax arrays); serving
    (`proteus.serving.Router`) returns numpy arrays and adds where each query's requested τ
    landed in the artifact's operating table. Its JSON form, one dict per query, is
    `Router.records` (the Python API, the command line and HTTP all return it).
    """

    model: Any  # [B] int32 model index
    mu: Any  # [B] float32 quality preference (Beta mean)
    p_hat: Any  # [B, M] float32 predicted correctness
    c_hat: Any  # [B, M] float32 predicted cost (USD)
    lam: Any  # [B] float32 λ at the (operating) τ
    tau: Any = None  # [B] float64 requested τ
    operating_tau: Any = None  # [B] float64 τ' of a policy point (NaN at a fixed-model point)
    point: Any = None  # [B] int32 operating point (index in the operating table)
    feasible: Any = None  # [B] bool
    reason: tuple[str, ...] | None = None  # [B]
