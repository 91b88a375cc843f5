"""Shared pytest fixtures, and the XLA flags every test process compiles with."""

import ctypes
import gc
import os
import sys
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


# Every compiled program stays in JAX's caches for the whole session, so the pytest process grew
# past 2 GB by mid-suite. After a test module, if the process holds more than this (MB), those
# caches are dropped and the freed heap handed back to the system; a later module that needs a
# program compiles it again. PROTEUS_TEST_CACHE_LIMIT_MB overrides it (0: after every module).
CACHE_LIMIT_MB = int(os.environ.get("PROTEUS_TEST_CACHE_LIMIT_MB", "1400"))


def _rss_mb() -> float:
    """This process's resident memory in MB (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


@pytest.fixture(scope="module", autouse=True)
def _bounded_compile_caches():
    """After each test module: drop JAX's compile caches if the process is over CACHE_LIMIT_MB."""
    yield
    if "jax" not in sys.modules or _rss_mb() <= CACHE_LIMIT_MB:
        return
    sys.modules["jax"].clear_caches()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start tests/test_launch_train.py's launcher runs now, in the background, if selected."""
    if any(item.module.__name__.endswith("test_launch_train") for item in session.items
           if isinstance(item, pytest.Function)):
        from tests import core_helpers  # jax and the pipeline: only when the launcher runs

        core_helpers.start_launcher_smoke()
