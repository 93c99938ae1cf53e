"""The package logger.

sctransfer logs progress through ``logging.getLogger("sctransfer")`` and never configures the
root logger. Users opt in with, for example, ``logging.basicConfig(level=logging.INFO)``.
"""

import logging

logger = logging.getLogger("sctransfer")
logger.addHandler(logging.NullHandler())
