"""Shared pytest fixtures, and the XLA flags every test process compiles with."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Compiling dominates the suite's CPU time (the training chunks: Beta sampling, digamma
# gradients, Adam under lax.scan), and the tests' programs are tiny, so they are compiled without
# LLVM's optimisations: about half the CPU seconds of a compile, and the same numbers to float
# rounding. Set here, before any test initialises a JAX backend, so the pytest process and every
# subprocess it starts (launchers, workers: they inherit os.environ) compile the same way.
# `xla_flags(...)` adds flags for one subprocess (e.g. forced host devices) and keeps these.
XLA_TEST_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def xla_flags(*extra: str) -> str:
    """XLA_FLAGS for a test subprocess: the suite's flags (`XLA_TEST_FLAGS`) plus `extra`."""
    return " ".join((XLA_TEST_FLAGS, *extra))


if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(filter(None, (os.environ.get("XLA_FLAGS", ""),
                                                     XLA_TEST_FLAGS)))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """`<repo root>/../shared/data`; skips the test (with the reason) where it is absent."""
    path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data directory {path} is absent (only on the project's machines)")
    return path


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start tests/test_launch_train.py's launcher runs now, in the background, if selected."""
    if any(item.module.__name__.endswith("test_launch_train") for item in session.items
           if isinstance(item, pytest.Function)):
        from tests import core_helpers  # jax and the pipeline: only when the launcher runs

        core_helpers.start_launcher_smoke()
