"""Shared pytest fixtures, and the XLA flags every test process compiles with."""

import atexit
import ctypes
import gc
import importlib.util
import mmap
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Compiling dominates the suite's CPU time (the training chunks: Beta sampling, digamma
# gradients, Adam under lax.scan), and the tests' programs are tiny, so they are compiled without
# LLVM's optimisations and with XLA's older loop emitters instead of its fusion emitters: the
# same numbers to float rounding, and half the CPU seconds (tests/test_train.py and
# tests/test_loop.py in one process from an empty compile cache: compiling 46 -> 15 s, the two
# files 52 -> 26 s). Set here, before any test initialises a JAX backend, so the pytest process
# and every subprocess it starts (launchers, workers: they inherit os.environ) compile the same
# way. `xla_flags(...)` adds flags for one subprocess (e.g. forced host devices), keeping these.
# XLA aborts a process whose XLA_FLAGS names a flag it does not define, and its flags come and go
# between releases (setup.cfg does not cap jax), so a flag this jaxlib lacks is left out.
_SPEED_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true",
                "--xla_cpu_use_fusion_emitters=false")


def xla_defines(flag: str) -> bool:
    """Whether the installed jaxlib's XLA defines `flag` ("--name=value"): its name is in one of
    jaxlib's native libraries, where XLA registers its flags."""
    name = flag.lstrip("-").split("=")[0].encode()
    lib_dir = Path(importlib.util.find_spec("jaxlib").origin).parent
    for lib in lib_dir.iterdir():
        if lib.suffix in (".so", ".dylib", ".pyd", ".dll") and lib.stat().st_size:  # mmap: > 0
            with open(lib, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                if data.find(name) >= 0:
                    return True
    return False


XLA_TEST_FLAGS = " ".join(flag for flag in _SPEED_FLAGS if xla_defines(flag))


def xla_flags(*extra: str) -> str:
    """XLA_FLAGS for a test subprocess: the suite's flags (`XLA_TEST_FLAGS`) plus `extra`."""
    return " ".join((XLA_TEST_FLAGS, *extra))


if XLA_TEST_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(filter(None, (os.environ.get("XLA_FLAGS", ""),
                                                     XLA_TEST_FLAGS)))


# JAX's persistent compilation cache, in a directory made empty for this run of the suite and
# shared by every process of it: the pytest-xdist workers (they inherit os.environ from the process
# that loads this file first) and the launchers and workers the tests start: a program one
# process compiled can be read back by the others, and by itself after its caches are dropped.
# The process that made the directory removes it at exit.
if "PROTEUS_TEST_JAX_CACHE" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="proteus_test_jax_cache_")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
    os.environ.update(PROTEUS_TEST_JAX_CACHE=_cache_dir, JAX_COMPILATION_CACHE_DIR=_cache_dir,
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    if "jax" in sys.modules:  # imported before this file: its config read the environment then
        sys.modules["jax"].config.update("jax_compilation_cache_dir", _cache_dir)
        sys.modules["jax"].config.update("jax_persistent_cache_min_compile_time_secs", 0)

# pytest-xdist's worker name (gw0, gw1...) in its workers; None in a plain run.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """`<repo root>/../shared/data`; skips the test (with the reason) where it is absent."""
    path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data directory {path} is absent (only on the project's machines)")
    return path


# Every compiled program stays in JAX's caches for the whole session, so the pytest process grew
# past 2 GB by mid-suite. So the caches are dropped (and the freed heap handed back to the system)
# when the process holds more than a limit (MB); a later test that needs a program traces it again
# and reads it back from the persistent cache above. The limit is lower where a test module ends
# than inside one: a module's tests share programs (its fixtures' configs and shapes), so a drop
# inside a module makes its next tests trace, lower and read back each of them again, while the
# next module mostly compiles its own. Under pytest-xdist two such processes run side by side,
# with the launchers some tests start beside them: their limits (800 and 1,050 MB; a worker's
# floor after a drop is 650-750 MB) kept the largest worker at 1,157 MB, not 1,248 as with 900
# and 1,200, in the same 4:36-4:39 (two back-to-back runs). PROTEUS_TEST_CACHE_LIMIT_MB
# overrides both limits (0: drop after every test).
_ONE_LIMIT = os.environ.get("PROTEUS_TEST_CACHE_LIMIT_MB")
MODULE_END_LIMIT_MB = int(_ONE_LIMIT or (1000 if XDIST_WORKER is None else 800))
IN_MODULE_LIMIT_MB = int(_ONE_LIMIT or (1400 if XDIST_WORKER is None else 1050))


def _rss_mb() -> float:
    """This process's resident memory in MB (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def drop_compile_caches(limit_mb: float = 0) -> None:
    """Drop JAX's compile caches if this process holds more than `limit_mb` MB (0: always)."""
    if "jax" not in sys.modules or _rss_mb() <= limit_mb:
        return
    sys.modules["jax"].clear_caches()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """After a test and its fixtures' teardown: drop JAX's compile caches if the process is over
    MODULE_END_LIMIT_MB where its module ends (the module's fixtures are gone by then), or over
    IN_MODULE_LIMIT_MB inside it."""
    result = yield
    module_ends = nextitem is None or nextitem.path != item.path
    drop_compile_caches(MODULE_END_LIMIT_MB if module_ends else IN_MODULE_LIMIT_MB)
    return result


# The files that take longest (seconds of worker time, summed over their tests, in a clean
# clone's suite run at 53e1dd6), heaviest first. pytest-xdist's `--dist loadfile` hands each worker
# one file at a time, in the order of the work queue; its default order (most tests first) left
# heavy files of few tests to the end (the benchmark smoke tests, 9-14 s of one test each), and
# one worker ran 27 s after the other had finished. Queued by their time instead, the light files
# fill in at the end (setup.cfg: --no-loadscope-reorder keeps this order). A file missing here
# is queued after these in collection order; a stale figure costs balance, never coverage.
HEAVY_FILES = {
    "test_sweep.py": 54, "test_quick_tour.py": 46, "test_auto_table.py": 31, "test_onboard.py": 29,
    "test_loop.py": 26, "test_pipeline.py": 24, "test_serving.py": 23, "test_task_serving.py": 20,
    "test_certified_router.py": 18, "test_crossfit.py": 18, "test_api.py": 17,
    "test_online_replay.py": 16, "test_bench_core.py": 14, "test_train.py": 14, "test_beta.py": 14,
    "test_evaluation.py": 13, "test_gateway_demo.py": 13, "test_gateway_reload.py": 12,
    "test_networks.py": 12, "test_server_security.py": 10, "test_gateway.py": 10,
    "test_gateway_online.py": 9, "test_certificate.py": 9, "test_task_prior_probe.py": 9,
    "test_launcher_errors.py": 9, "test_export.py": 8, "test_losses.py": 8,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Queue the test files heaviest first (`HEAVY_FILES`); a file's tests keep their order."""
    items.sort(key=lambda item: -HEAVY_FILES.get(item.path.name, 0))  # a stable sort
