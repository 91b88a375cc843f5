"""proteus.environment: the library versions recorded with every result and artifact."""

import importlib.metadata
import platform

import jax
import numpy as np

import proteus
from proteus import environment
from tests.conftest import HEAVY_FILES, REPO_ROOT, xla_defines


def test_library_versions_names_each_numeric_package():
    versions = environment.library_versions()
    assert list(versions) == ["proteus", "python", *environment.NUMERIC_PACKAGES]
    assert versions["proteus"] == proteus.__version__
    assert versions["python"] == platform.python_version()
    assert versions["jax"] == jax.__version__
    assert versions["numpy"] == np.__version__


def test_an_absent_package_is_unknown_not_an_error(monkeypatch):
    real = importlib.metadata.version

    def version(name):
        if name == "scipy":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    versions = environment.library_versions()
    assert versions["scipy"] == "unknown"
    assert versions["jax"] == jax.__version__


def test_xla_defines_tells_a_known_flag_from_an_unknown_one():
    """tests/conftest.py keeps only the speed flags this jaxlib's XLA defines (XLA aborts a
    process whose XLA_FLAGS names one it does not)."""
    assert xla_defines("--xla_backend_optimization_level=0")
    assert xla_defines("--xla_force_host_platform_device_count=8")
    assert not xla_defines("--xla_cpu_no_such_flag_in_any_release=true")


def test_heavy_files_name_test_files_that_exist():
    """conftest.HEAVY_FILES queues files by name: a renamed or removed file would silently fall
    back to collection order, so every name must be a test file of the suite."""
    names = {p.name for p in (REPO_ROOT / "tests").rglob("test_*.py")}
    assert set(HEAVY_FILES) <= names, sorted(set(HEAVY_FILES) - names)
    assert list(HEAVY_FILES.values()) == sorted(HEAVY_FILES.values(), reverse=True)
