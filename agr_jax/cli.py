"""Shared set-up for the `python -m agr_jax.*` entry points."""

from __future__ import annotations

import logging as std_logging

from absl import logging

QUIET_LIBRARIES = ("orbax", "tensorflow_datasets", "etils", "grain")
# `agr_jax.inference.release.RELEASES`' names, here so that the entry points' parsers need
# no JAX (tests check they agree).
RELEASE_NAMES = ("default", "fast")


class _QuietLibraries(std_logging.Filter):
    """Keep our INFO lines, drop library INFO chatter (warnings and errors still pass)."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        if record.levelno >= std_logging.WARNING:
            return True
        return not any(f"/{lib}/" in record.pathname for lib in QUIET_LIBRARIES)


def setup_logging(verbosity: int = logging.INFO) -> None:
    logging.set_verbosity(verbosity)
    logging.get_absl_handler().addFilter(_QuietLibraries())
