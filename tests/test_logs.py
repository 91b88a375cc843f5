"""experiments.logs: launchers show warnings and errors only, whoever logs them; --verbosity
brings the INFO lines back. (tests/test_quiet_launchers.py runs real launchers.)"""

import logging as std_logging

import pytest
from absl import logging

from experiments import logs

# The loggers behind the noise a user used to see: jax's TPU probe, Orbax (through absl),
# datasets, sentence-transformers.
NOISY = ("jax._src.xla_bridge", "absl", "datasets", "sentence_transformers.SentenceTransformer")


@pytest.fixture
def restore_logging():
    """The session's logging as it was: root level, absl verbosity, named levels, formatter."""
    verbosity = logging.get_verbosity()
    root = std_logging.root.level
    levels = {name: std_logging.getLogger(name).level for name in (*NOISY, "noisy.lib")}
    formatter = logging.get_absl_handler().formatter
    yield
    logging.set_verbosity(verbosity)
    std_logging.root.setLevel(root)
    for name, level in levels.items():
        std_logging.getLogger(name).setLevel(level)
    logging.get_absl_handler().setFormatter(formatter)


def test_job_logging_keeps_warnings_only(restore_logging):
    logging.set_verbosity(logging.INFO)  # what absl's app.run leaves
    logs.job_logging()
    logs.job_logging()  # idempotent
    assert logging.get_verbosity() == logging.WARNING
    for name in NOISY:
        logger = std_logging.getLogger(name)
        assert not logger.isEnabledFor(std_logging.INFO), name
        assert logger.isEnabledFor(std_logging.WARNING), name  # warnings that matter still show


def test_noisy_loggers_are_raised_by_name(restore_logging):
    logs.job_logging(noisy={"noisy.lib": std_logging.ERROR})
    assert not std_logging.getLogger("noisy.lib.sub").isEnabledFor(std_logging.WARNING)
    assert std_logging.getLogger("other.lib").isEnabledFor(std_logging.WARNING)


def test_verbosity_on_the_command_line_wins(restore_logging, monkeypatch):
    monkeypatch.setattr(logs, "verbosity_requested", lambda: True)
    logging.set_verbosity(logging.INFO)
    logs.job_logging()
    assert logging.get_verbosity() == logging.INFO
