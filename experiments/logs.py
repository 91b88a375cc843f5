"""Launcher logging: what a user sees is the launcher's own output and the warnings that matter.

absl's `app.run` turns INFO on for every logger (it sets the root logger's level), so each
command used to print a dozen lines of library internals: jax's "Unable to initialize backend
'tpu'", Orbax's checkpoint handlers and read speeds (Orbax logs through absl), datasets' and
sentence-transformers' notes. A launcher's results are its printed output (progress bars, tables,
the paths it wrote), so launchers call `job_logging()`: every logger at WARNING, in a short
"WARNING: message" form, and the loggers in NOISY_LOGGERS one level higher still. The choice is by
logger name and level only. `--verbosity=0` (or `-v 0`; 1 for DEBUG) on the command line brings
back absl's INFO lines in absl's own format, for debugging. The library configures no logging.
"""

from __future__ import annotations

import logging as std_logging

from absl import flags, logging
from absl.logging import converter

QUIET_LEVEL = std_logging.WARNING
# Loggers whose warnings say nothing a launcher's user can act on -> the level they keep. (None
# today: jax, Orbax, datasets and sentence-transformers are quiet at WARNING.)
NOISY_LOGGERS: dict[str, int] = {}
SHORT_FORMAT = "%(levelname)s: %(message)s"


def verbosity_requested() -> bool:
    """Whether the command line set absl's --verbosity (-v): then absl's logging stands."""
    return flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present > 0


def job_logging(level: int = QUIET_LEVEL,
                noisy: dict[str, int] | None = None) -> None:
    """Warnings and errors only (`level`), as "LEVEL: message"; `noisy` (default NOISY_LOGGERS)
    loggers at their own, higher level. Idempotent; a no-op when --verbosity was given."""
    if verbosity_requested():
        return
    # absl counts verbosity its own way (WARNING is -1): the root logger's level, inherited
    logging.set_verbosity(converter.standard_to_absl(level))
    if logging.get_absl_handler() in std_logging.root.handlers:  # app.run installed it
        logging.get_absl_handler().setFormatter(std_logging.Formatter(SHORT_FORMAT))
    for name, noisy_level in (NOISY_LOGGERS if noisy is None else noisy).items():
        std_logging.getLogger(name).setLevel(noisy_level)
