"""The software a result or an artifact was produced with.

Training and evaluation are deterministic for one set of library versions, but XLA's kernels and
numpy's/scipy's routines change between releases, so the same command can give slightly different
numbers under another install. Every `results.json` and exported manifest records these versions,
so that a difference can be traced to the install rather than to the code.
"""

from __future__ import annotations

import importlib.metadata
import platform

import proteus

# The packages whose numerics reach a trained router or its evaluation.
NUMERIC_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy")


def library_versions() -> dict[str, str]:
    """{"proteus", "python", and each of NUMERIC_PACKAGES: version string ("unknown" if absent)}."""
    out = {"proteus": proteus.__version__, "python": platform.python_version()}
    for package in NUMERIC_PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out
