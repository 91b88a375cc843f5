"""PROTEUS-JAX: SLA-aware routing across many LLMs with a tau-conditioned Lagrangian RL policy."""

__version__ = "0.1.0"
