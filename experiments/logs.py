"""Launcher logging: the job's own INFO lines on stderr, Orbax's and sentence-transformers' not.

Orbax logs every save and restore step at INFO through absl, which interleaves with the main job's
progress bars. Launchers call `job_logging()` instead of `absl.logging.set_verbosity`; the library
itself configures no logging.
"""

from __future__ import annotations

import logging as std_logging
import os

from absl import logging

QUIET_PACKAGES = ("orbax",)  # they log through absl: records below WARNING dropped by source path
# Standard loggers set to WARNING: when the optional text encoder loads, sentence-transformers'
# "Loading SentenceTransformer model from ...", datasets' "JAX version ... available" and jax's
# "Unable to initialize backend 'tpu'" on a machine without one.
QUIET_LOGGERS = ("sentence_transformers", "datasets", "jax")


class _QuietBelowWarning(std_logging.Filter):
    """Drops records below WARNING written from the source tree of a quiet package."""

    def __init__(self, packages: tuple[str, ...]):
        super().__init__()
        self.parts = tuple(f"{os.sep}{p}{os.sep}" for p in packages)

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or not any(
            part in record.pathname for part in self.parts)


def job_logging(level: int = logging.INFO, quiet: tuple[str, ...] = QUIET_PACKAGES,
                quiet_loggers: tuple[str, ...] = QUIET_LOGGERS) -> None:
    """absl logging at `level` for the job's own lines, the `quiet` packages' and the
    `quiet_loggers`' INFO lines dropped.

    Idempotent. The `quiet` packages log through absl (one logger for every caller, hence the
    filter by source path) or through their own standard loggers; those and `quiet_loggers` (only
    ever their own, so no path filter that a checkout under a folder of that name would trip) are
    set to WARNING.
    """
    logging.set_verbosity(level)
    absl_logger = logging.get_absl_logger()
    if not any(isinstance(f, _QuietBelowWarning) for f in absl_logger.filters):
        absl_logger.addFilter(_QuietBelowWarning(quiet))
    for name in quiet + quiet_loggers:
        std_logging.getLogger(name).setLevel(std_logging.WARNING)
