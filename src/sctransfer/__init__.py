"""sctransfer: transfer learning across single-cell datasets and modalities.

Import as ``import sctransfer as sct``; the verbs live in :mod:`sctransfer.pp`,
:mod:`sctransfer.tl` and :mod:`sctransfer.pl`, the model classes in :mod:`sctransfer.models`.
"""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, kernels, metrics, models, pl, pp, tl
from ._utils._logging import logger

try:
    __version__ = version("sctransfer-learn")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__", "datasets", "kernels", "logger", "metrics", "models", "pl", "pp", "tl"]
