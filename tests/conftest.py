"""Shared pytest fixtures."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
