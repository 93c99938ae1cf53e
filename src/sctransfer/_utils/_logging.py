"""The package logger.

sctransfer logs through ``logging.getLogger("sctransfer")`` and never configures the root logger. Its
level follows :attr:`sctransfer.settings.verbosity` (which follows scanpy's while unset), unless a level
is set on the logger itself. While the application has configured no logging of its own (the root
logger has no handler), the records are printed to stderr as ``sctransfer: message``, as scanpy does;
once it has, they reach its handlers only.
"""

from __future__ import annotations

import logging
import sys

from ._settings import settings


class _SettingsLogger(logging.Logger):
    """A logger whose level, when not set on it, is the one of ``sct.settings.verbosity``."""

    def getEffectiveLevel(self) -> int:
        if self.level != logging.NOTSET:
            return self.level
        return settings.log_level

    def isEnabledFor(self, level: int) -> bool:
        # no cache: the verbosity can change at any time (logging caches per level)
        if self.disabled or self.manager.disable >= level:
            return False
        return level >= self.getEffectiveLevel()


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (so that notebooks and test captures see it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("sctransfer: %(message)s"))
        self.addFilter(lambda record: not logging.getLogger().handlers)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the stream is always the current stderr
        pass


def _package_logger() -> logging.Logger:
    existing = logging.Logger.manager.loggerDict.get("sctransfer")
    if isinstance(existing, logging.Logger):  # created before this module (for example on reload)
        return existing
    previous = logging.getLoggerClass()
    logging.setLoggerClass(_SettingsLogger)
    try:
        return logging.getLogger("sctransfer")
    finally:
        logging.setLoggerClass(previous)


logger = _package_logger()
if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
    logger.addHandler(_StderrHandler())
