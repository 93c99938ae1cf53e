"""sctransfer: transfer learning across single-cell datasets and modalities.

Import as ``import sctransfer as sct``; the verbs live in :mod:`sctransfer.pp`,
:mod:`sctransfer.tl` and :mod:`sctransfer.pl`, the model classes in :mod:`sctransfer.models` and the
settings in :data:`sctransfer.settings`.

The subpackages load on first access (``sct.tl`` imports the tools, ``sct.models`` imports no torch
until a neural model is used), so that ``import sctransfer`` and the command line start fast.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from ._utils._lazy import lazy_attributes
from ._utils._logging import logger
from ._utils._settings import settings

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from . import datasets, kernels, metrics, models, pl, pp, tl

try:
    __version__ = version("sctransfer-learn")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "datasets",
    "kernels",
    "logger",
    "metrics",
    "models",
    "pl",
    "pp",
    "settings",
    "tl",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {name: f".{name}" for name in ("datasets", "kernels", "metrics", "models", "pl", "pp", "tl")},
    globals(),
)
