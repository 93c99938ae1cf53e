"""Exit codes and errors, the environment a batch system (Galaxy) needs, and the console of one run."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

logger = logging.getLogger("sctransfer")

PROG = "sctransfer"
#: exit status of a successful run
EXIT_OK = 0
#: exit status of a data error: missing or unreadable input, missing key, invalid values
EXIT_DATA_ERROR = 1
#: exit status of a usage error: unknown option, missing or conflicting options
EXIT_USAGE_ERROR = 2

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ errors
class CLIError(Exception):
    """An error the command line reports as one line, with its exit status."""

    exit_code = EXIT_DATA_ERROR


class UsageError(CLIError):
    """The command line itself is wrong (exit status 2)."""

    exit_code = EXIT_USAGE_ERROR


class DataError(CLIError):
    """The inputs cannot be used (exit status 1)."""

    exit_code = EXIT_DATA_ERROR


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def exception_message(err: BaseException) -> str:
    if isinstance(err, KeyError) and len(err.args) == 1:
        return one_line(str(err.args[0]))
    return one_line(str(err)) or type(err).__name__


class Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def package_version() -> str:
    try:
        return version("sctransfer-learn")
    except PackageNotFoundError:  # pragma: no cover - source tree without install
        return "0+unknown"


# ------------------------------------------------------------------------------------------ environment
def _writable_dir(path: Path) -> bool:
    """Whether ``path`` is (or can be created as) a writable directory."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _cache_root() -> Path:
    """The first writable of ``$XDG_CACHE_HOME/sctransfer``, ``~/.cache/sctransfer`` and the temp dir."""
    candidates = []
    if os.environ.get("XDG_CACHE_HOME"):
        candidates.append(Path(os.environ["XDG_CACHE_HOME"]) / "sctransfer")
    with contextlib.suppress(RuntimeError, KeyError):
        candidates.append(Path.home() / ".cache" / "sctransfer")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(Path(tempfile.gettempdir()) / f"sctransfer-{uid}")
    for path in candidates:
        if _writable_dir(path):
            return path
    return Path(tempfile.mkdtemp(prefix="sctransfer-"))


def galaxy_slots() -> int | None:
    """``GALAXY_SLOTS`` as a positive integer; ``None`` (with a warning when set to anything else)."""
    value = os.environ.get("GALAXY_SLOTS", "").strip()
    if not value:
        return None
    try:
        slots = int(value)
    except ValueError:
        slots = 0
    if slots < 1:
        print(f"{PROG}: warning: GALAXY_SLOTS={value!r} is not a positive integer; ignored", file=sys.stderr)
        return None
    return slots


def configure_environment() -> dict[str, Any]:
    """Set the environment knobs a batch system (Galaxy) needs, before numba, torch or matplotlib load.

    - ``GALAXY_SLOTS`` sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and
      ``VECLIB_MAXIMUM_THREADS`` where they are unset; the torch, numba and BLAS thread pools are limited
      again once loaded (:func:`apply_threads`). numba's pool is limited with ``numba.set_num_threads``
      rather than ``NUMBA_NUM_THREADS``: numba is already imported here, and changing that variable after
      its threads have started makes later parallel calls fail.
    - ``NUMBA_CACHE_DIR`` goes to ``<cache>/numba`` when unset and the package directory (numba's default
      cache location) is not writable.
    - ``MPLCONFIGDIR`` goes to ``<cache>/matplotlib`` when unset and matplotlib's default config directory
      is not writable; ``MPLBACKEND`` defaults to ``Agg``.

    ``<cache>`` is the first writable of ``$XDG_CACHE_HOME/sctransfer``, ``~/.cache/sctransfer`` and
    ``<tempdir>/sctransfer-<uid>``.

    Returns
    -------
    What was used: ``threads`` (``None`` without ``GALAXY_SLOTS``), ``numba_cache_dir`` and
    ``mplconfigdir`` (``None`` where the library default applies).
    """
    slots = galaxy_slots()
    if slots is not None:
        for name in THREAD_ENV:
            os.environ.setdefault(name, str(slots))
    os.environ.setdefault("MPLBACKEND", "Agg")
    if not os.environ.get("NUMBA_CACHE_DIR") and not os.access(_PACKAGE_DIR, os.W_OK):
        os.environ["NUMBA_CACHE_DIR"] = str(_cache_root() / "numba")
    if not os.environ.get("MPLCONFIGDIR"):
        config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path("~/.config").expanduser())
        if not _writable_dir(config_home / "matplotlib"):
            target = _cache_root() / "matplotlib"
            target.mkdir(parents=True, exist_ok=True)
            os.environ["MPLCONFIGDIR"] = str(target)
    return {
        "threads": slots,
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
        "mplconfigdir": os.environ.get("MPLCONFIGDIR"),
    }


@contextlib.contextmanager
def apply_threads(threads: int | None) -> Iterator[None]:
    """Limit the torch, numba and BLAS thread pools to ``threads`` for the run (no-op for ``None``).

    torch is limited here only when something has imported it already; otherwise it reads the
    ``OMP_NUM_THREADS`` that :func:`configure_environment` set when it loads.
    """
    if threads is None:
        yield
        return
    import numba
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    previous_torch = torch.get_num_threads() if torch is not None else None
    previous_numba = numba.get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        if torch is not None and previous_torch is not None:
            torch.set_num_threads(previous_torch)
        numba.set_num_threads(previous_numba)


# ------------------------------------------------------------------------------------------------ console
class Progress:
    """Step messages on stderr, shown only when stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        logger.info("%s", text)
        start = time.perf_counter()
        if self.enabled:
            print(f"{PROG}: {text} ...", file=sys.stderr, flush=True)
        yield
        if self.enabled:
            print(f"{PROG}: {text}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def console(verbosity: int, *, progress_bar: bool) -> Iterator[None]:
    """Set ``sct.settings`` for the length of one run and route warnings to stderr.

    Verbosity 0 shows warnings; 1 (``-v``) adds the package's progress log; 2 (``-vv``) adds debug records,
    the training libraries' messages and the warnings of other libraries (hidden below 2). The package
    logger prints its records to stderr itself (as ``sctransfer: message``).
    """
    from .._utils._settings import settings

    def show(message, category, filename, lineno, file=None, line=None):
        own = category is UserWarning and str(Path(filename).resolve()).startswith(str(_PACKAGE_DIR))
        if own or verbosity >= 2:
            print(f"{PROG}: warning: {one_line(str(message))}", file=sys.stderr)

    level = 1 if verbosity <= 0 else 2 if verbosity == 1 else 4
    with settings.override(verbosity=level, progress_bar=progress_bar), warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield
