"""Serving: load an exported artifact and route queries (Python API, CLI, HTTP).

`from proteus.serving import Router` is the public entry point. Importing this package loads
neither the training side (optax, Orbax) nor the data layer (pandas, pyarrow, datasets); Orbax is
imported when an artifact's parameters are read.
"""

from proteus.serving.inputs import check_features, check_task_name, check_text
from proteus.serving.router import Router, RoutingError, finite_rows
from proteus.types import Decisions

__all__ = ["Decisions", "Router", "RoutingError",
           "check_features", "check_task_name", "check_text", "finite_rows"]
