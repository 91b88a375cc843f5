"""Type aliases shared across the library (shapes are stated where the aliases are used)."""

from typing import Any

import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays (flax variables dict)
