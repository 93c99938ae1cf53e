"""``sct.settings``: verbosity, threads, progress bars and the training device, in one object.

The settings hold no state of other libraries: verbosity follows ``scanpy.settings.verbosity`` while it
is unset here (and scanpy is loaded), and every verb reads the settings when it runs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SctransferSettings", "settings"]

#: scanpy's verbosity levels: 0 errors, 1 warnings, 2 info, 3 hints, 4 debug
_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.INFO, 4: logging.DEBUG}
_DEVICES = ("auto", "cpu", "gpu", "cuda", "mps")


class SctransferSettings:
    """Settings of sctransfer, read by every verb when it runs (``sct.settings``).

    Attributes
    ----------
    verbosity
        0 errors, 1 warnings (the default), 2 adds the package's progress messages, 3 (hints) also shows
        the training libraries' own messages and warnings, 4 adds debug records. ``None`` follows
        ``scanpy.settings.verbosity`` when scanpy is loaded, else 1.
    n_jobs
        Threads of the kNN search, of MetaNeighbor's matrix products (its BLAS pool) and of CaSTLe's
        XGBoost (unless its ``n_jobs`` is given). ``None`` uses
        numba's thread count (every core unless limited, for example by ``NUMBA_NUM_THREADS``); ``-1``
        means the same.
    progress_bar
        Show sctransfer's progress bars (on stderr) during training. A verb's own
        ``enable_progress_bar`` argument wins over this.
    device
        Where the neural models train when a verb is not told: ``"auto"`` (a GPU when there is one),
        ``"cpu"``, ``"gpu"``, ``"cuda"`` or ``"mps"``.

    Examples
    --------
    >>> import sctransfer as sct
    >>> sct.settings.verbosity = 2  # show progress messages
    >>> sct.settings.verbosity
    2
    >>> with sct.settings.override(progress_bar=False):
    ...     sct.settings.progress_bar
    False
    >>> sct.settings.verbosity = None  # follow scanpy again
    """

    def __init__(self) -> None:
        self._verbosity: int | None = None
        self._n_jobs: int | None = None
        self._progress_bar: bool = True
        self._device: str = "auto"

    # ---- verbosity ----------------------------------------------------------------------------
    @property
    def verbosity(self) -> int:
        """The verbosity in effect (0-4); set ``None`` to follow scanpy's."""
        if self._verbosity is not None:
            return self._verbosity
        scanpy = sys.modules.get("scanpy")
        if scanpy is not None:
            try:
                return int(scanpy.settings.verbosity)
            except (AttributeError, TypeError, ValueError):
                pass
        return 1

    @verbosity.setter
    def verbosity(self, value: int | None) -> None:
        if value is not None:
            value = _check_int(value, "sct.settings.verbosity")
            if not 0 <= value <= 4:
                raise ValueError(f"sct.settings.verbosity must be 0-4 or None, got {value}.")
        self._verbosity = value

    @property
    def log_level(self) -> int:
        """The :mod:`logging` level that the verbosity in effect stands for."""
        return _LEVELS[min(max(self.verbosity, 0), 4)]

    # ---- threads ------------------------------------------------------------------------------
    @property
    def n_jobs(self) -> int | None:
        """Threads of the kNN search, MetaNeighbor's BLAS products and CaSTLe's XGBoost."""
        return self._n_jobs

    @n_jobs.setter
    def n_jobs(self, value: int | None) -> None:
        self._n_jobs = check_n_jobs(value, "sct.settings.n_jobs")

    def threads(self, n_jobs: int | None = None) -> int:
        """The number of threads to use: ``n_jobs``, else the setting, else numba's default."""
        value = n_jobs if n_jobs is not None else self._n_jobs
        if value is None or value == -1:
            try:
                import numba

                return max(1, int(numba.get_num_threads()))
            except ImportError:  # pragma: no cover - numba is a dependency
                return max(1, os.cpu_count() or 1)
        return max(1, int(value))

    # ---- progress bars ------------------------------------------------------------------------
    @property
    def progress_bar(self) -> bool:
        """Whether training shows a progress bar (on stderr)."""
        return self._progress_bar

    @progress_bar.setter
    def progress_bar(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"sct.settings.progress_bar must be True or False, got {value!r}.")
        self._progress_bar = value

    # ---- device -------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        """Lightning accelerator of the neural models when a verb is not told one."""
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        if value not in _DEVICES:
            raise ValueError(f"sct.settings.device must be one of {list(_DEVICES)}, got {value!r}.")
        self._device = value

    # ---- helpers ------------------------------------------------------------------------------
    @contextmanager
    def override(self, **values: Any) -> Iterator[SctransferSettings]:
        """Change settings for the length of a ``with`` block, and restore them after.

        Parameters
        ----------
        **values
            Settings to change, for example ``verbosity=0`` or ``progress_bar=False``.
        """
        unknown = set(values) - {"verbosity", "n_jobs", "progress_bar", "device"}
        if unknown:
            raise KeyError(
                f"unknown setting(s) {sorted(unknown)}; the settings are verbosity, n_jobs, progress_bar and device."
            )
        previous = {"_" + name: getattr(self, "_" + name) for name in values}
        try:
            for name, value in values.items():
                setattr(self, name, value)
            yield self
        finally:
            for name, value in previous.items():
                setattr(self, name, value)

    def __repr__(self) -> str:
        verbosity = f"{self.verbosity}" + (" (following scanpy)" if self._verbosity is None else "")
        return (
            f"sctransfer settings: verbosity={verbosity}, n_jobs={self._n_jobs}, "
            f"progress_bar={self._progress_bar}, device={self._device!r}"
        )


def check_n_jobs(value: Any, name: str = "n_jobs") -> int | None:
    """A thread count: a positive number, or ``None`` (``-1`` means the same) for the default."""
    if value is None:
        return None
    value = _check_int(value, name)
    if value == -1:
        return None
    if value < 1:
        raise ValueError(f"{name} must be a positive number of threads, -1 or None, got {value}.")
    return value


def _check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    return int(value)


#: the package's settings (``sct.settings``)
settings = SctransferSettings()
