"""experiments.logs: the launchers' INFO logging leaves out Orbax's lines."""

import logging as std_logging
import os

from absl import logging

from experiments import logs


def _record(path: str, level: int) -> std_logging.LogRecord:
    return std_logging.LogRecord("absl", level, path, 1, "message", (), None)


def test_job_logging_drops_quiet_packages_info_only():
    names = ("orbax", *logs.QUIET_LOGGERS)
    verbosity = logging.get_verbosity()
    levels = {name: std_logging.getLogger(name).level for name in names}
    try:
        _check_job_logging()
    finally:  # the session's logging as it was
        logging.set_verbosity(verbosity)
        for name, level in levels.items():
            std_logging.getLogger(name).setLevel(level)
        for f in list(logging.get_absl_logger().filters):
            if isinstance(f, logs._QuietBelowWarning):
                logging.get_absl_logger().removeFilter(f)


def _check_job_logging():
    logs.job_logging()
    logs.job_logging()  # idempotent: one filter
    absl_logger = logging.get_absl_logger()
    quiet = [f for f in absl_logger.filters if isinstance(f, logs._QuietBelowWarning)]
    assert len(quiet) == 1 and logging.get_verbosity() == logging.INFO
    orbax_file = os.path.join("site-packages", "orbax", "checkpoint", "manager.py")
    assert not quiet[0].filter(_record(orbax_file, std_logging.INFO))
    assert quiet[0].filter(_record(orbax_file, std_logging.WARNING))
    assert quiet[0].filter(_record(os.path.join("experiments", "runs.py"), std_logging.INFO))
    assert std_logging.getLogger("orbax").level == std_logging.WARNING
    # a library's own logger: its INFO is dropped, a warning still shows
    assert not std_logging.getLogger("jax._src.xla_bridge").isEnabledFor(std_logging.INFO)
    assert std_logging.getLogger("sentence_transformers.x").isEnabledFor(std_logging.WARNING)
    assert std_logging.getLogger("datasets").getEffectiveLevel() == std_logging.WARNING
