"""The ``sctransfer`` command line: one subcommand per verb, reading and writing h5ad/h5mu files.

Every subcommand reads its inputs, calls the Python verb with the options given (same names as the
keyword arguments, with dashes, and the same defaults) and writes the result atomically: to a temporary
file beside the target, renamed over it only when complete, so a failed run never leaves a partial or
clobbered output. ``--summary-json`` writes the options and a few metrics of the run.

Exit codes: 0 on success, 2 for a usage error (unknown option, missing or conflicting options), 1 for a
data error (missing or unreadable file, missing key, invalid values). Each error is one line on stderr;
``--debug`` shows the traceback instead.

Environment (what Galaxy sets): ``GALAXY_SLOTS`` sets the threads of numba, torch and the BLAS/OpenMP
libraries. When ``NUMBA_CACHE_DIR`` or ``MPLCONFIGDIR`` is unset and the default location is not
writable, a writable cache directory is used instead.

``sctransfer --help`` and ``--version`` import none of the verbs, so they answer at once; each verb
loads what it needs when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["EXIT_DATA_ERROR", "EXIT_OK", "EXIT_USAGE_ERROR", "main"]

logger = logging.getLogger("sctransfer")

PROG = "sctransfer"
#: exit status of a successful run
EXIT_OK = 0
#: exit status of a data error: missing or unreadable input, missing key, invalid values
EXIT_DATA_ERROR = 1
#: exit status of a usage error: unknown option, missing or conflicting options
EXIT_USAGE_ERROR = 2

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


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


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _exception_message(err: BaseException) -> str:
    if isinstance(err, KeyError) and len(err.args) == 1:
        return _one_line(str(err.args[0]))
    return _one_line(str(err)) or type(err).__name__


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------------------------------ environment
def _package_version() -> str:
    try:
        return version("sctransfer-learn")
    except PackageNotFoundError:  # pragma: no cover - source tree without install
        return "0+unknown"


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


def _galaxy_slots() -> int | None:
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
      again once loaded (:func:`_apply_threads`). numba's pool is limited with ``numba.set_num_threads``
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
    slots = _galaxy_slots()
    if slots is not None:
        for name in _THREAD_ENV:
            os.environ.setdefault(name, str(slots))
    os.environ.setdefault("MPLBACKEND", "Agg")
    if not os.environ.get("NUMBA_CACHE_DIR"):
        package_dir = Path(__file__).resolve().parent
        if not os.access(package_dir, os.W_OK):
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
def _apply_threads(threads: int | None) -> Iterator[None]:
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


# ------------------------------------------------------------------------------------ logging, progress
class _Progress:
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


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _console(verbosity: int, *, progress_bar: bool) -> Iterator[None]:
    """Set ``sct.settings`` for the length of one run and route warnings to stderr.

    Verbosity 0 shows warnings; 1 (``-v``) adds the package's progress log; 2 (``-vv``) adds debug records,
    the training libraries' messages and the warnings of other libraries (hidden below 2). The package
    logger prints its records to stderr itself (as ``sctransfer: message``).
    """
    from ._utils._settings import settings

    package_dir = str(Path(__file__).resolve().parent)

    def show(message, category, filename, lineno, file=None, line=None):
        own = category is UserWarning and str(Path(filename).resolve()).startswith(package_dir)
        if own or verbosity >= 2:
            print(f"{PROG}: warning: {_one_line(str(message))}", file=sys.stderr)

    level = 1 if verbosity <= 0 else 2 if verbosity == 1 else 4
    with settings.override(verbosity=level, progress_bar=progress_bar), warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


# -------------------------------------------------------------------------------------------- files
def _input_path(value: str | None, option: str) -> Path:
    if value is None:
        raise UsageError(f"{option} is required")
    path = Path(value)
    if not path.exists():
        raise DataError(f"{option}: input file not found: {value}")
    if path.is_dir():
        raise DataError(f"{option}: {value} is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{option}: cannot read {value} (permission denied)")
    return path


def _describe_non_hdf5(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            head = fh.read(2048)
    except OSError:
        return "unreadable"
    if not head:
        return "an empty file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "a binary file that is not HDF5"
    first = text.splitlines()[0] if text.splitlines() else ""
    if "," in first or "\t" in first:
        return "a text table (CSV/TSV?)"
    return "a text file"


def _hdf5_kind(path: Path, option: str) -> str:
    """``"h5mu"`` or ``"h5ad"`` from the file's content (Galaxy names every dataset ``*.dat``)."""
    import h5py

    if not h5py.is_hdf5(path):
        raise DataError(
            f"{option}: {path} is not an h5ad/h5mu file: it is {_describe_non_hdf5(path)}, not HDF5; convert it "
            "first (for example anndata.read_csv(path).write_h5ad(...))"
        )
    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
    except OSError as err:
        raise DataError(f"{option}: cannot open {path} as HDF5: {_exception_message(err)}") from None
    if "mod" in keys:
        return "h5mu"
    if "X" in keys or "obs" in keys:
        return "h5ad"
    raise DataError(
        f"{option}: {path} is an HDF5 file but neither h5ad nor h5mu (top-level keys: {sorted(keys)})"
    )


def read_anndata(value: str | None, option: str) -> Any:
    """Read an h5ad file given to ``option``; raise :class:`DataError` with one line if it cannot be used."""
    path = _input_path(value, option)
    kind = _hdf5_kind(path, option)
    if kind != "h5ad":
        raise DataError(f"{option}: {path} is an h5mu (MuData) file; this option takes an h5ad file")
    import anndata

    try:
        return anndata.read_h5ad(path)
    except Exception as err:  # anndata raises many types for damaged files
        raise DataError(f"{option}: cannot read {path} as h5ad: {_exception_message(err)}") from None


def read_mudata(value: str | None, option: str) -> Any:
    """Read an h5mu file given to ``option``; raise :class:`DataError` with one line if it cannot be used."""
    path = _input_path(value, option)
    kind = _hdf5_kind(path, option)
    if kind != "h5mu":
        raise DataError(
            f"{option}: {path} is an h5ad (AnnData) file; this option takes an h5mu (MuData) file"
        )
    import mudata

    try:
        return mudata.read_h5mu(path)
    except Exception as err:
        raise DataError(f"{option}: cannot read {path} as h5mu: {_exception_message(err)}") from None


def check_output_path(value: str, option: str = "--output") -> Path:
    """Check before any work that ``value`` can be written: its directory exists and is writable."""
    path = Path(value)
    if path.is_dir():
        raise DataError(f"{option}: {value} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DataError(f"{option}: the directory of {value} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{option}: cannot write to the directory of {value} (permission denied)")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    On any failure the temporary file is removed and ``path`` is left as it was.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or Path("."))
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _json_safe(value: Any) -> Any:
    """Plain JSON types: NaN/inf become ``None``, NumPy scalars and arrays Python ones."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str):
        return _json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(_json_safe(payload), indent=2, sort_keys=False, allow_nan=False) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_h5ad(adata: Any, path: Path) -> None:
    write_atomic(path, lambda tmp: adata.write_h5ad(tmp))


def _write_h5mu(mdata: Any, path: Path) -> None:
    import mudata

    write_atomic(path, lambda tmp: mudata.write_h5mu(tmp, mdata))


# ------------------------------------------------------------------------------------ argument types
def _devices(value: str) -> int | str:
    return int(value) if value.strip().isdigit() else value


def _kwarg(value: str) -> tuple[str, Any]:
    key, sep, raw = value.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a keyword name, got {value!r}")
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        parsed = raw
    return key.strip(), parsed


def _merge_kwargs(explicit: dict[str, Any], extra: Sequence[tuple[str, Any]] | None) -> dict[str, Any]:
    """Options given by name plus ``--kwarg KEY=VALUE`` pairs; a key given both ways is a usage error."""
    merged = {k: v for k, v in explicit.items() if v is not None}
    for key, value in extra or ():
        if key in merged:
            raise UsageError(f"--kwarg {key}=... repeats an option given already ({key})")
        merged[key] = value
    return merged


# ------------------------------------------------------------------------------ options from the verbs
def _verb(dotted: str) -> Callable[..., Any]:
    """The function ``sctransfer.<dotted>`` (imported when a subcommand is built, not for ``--help``)."""
    import importlib

    module, *names = dotted.split(".")
    obj: Any = importlib.import_module(f"sctransfer.{module}")
    for name in names:
        obj = getattr(obj, name)
    return obj


def _parameter_help(func: Callable[..., Any]) -> dict[str, str]:
    """The first sentence of each parameter's description in the numpydoc ``Parameters`` section."""
    lines = (inspect.getdoc(func) or "").splitlines()
    if "Parameters" not in lines:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    text: list[str] = []
    body = lines[lines.index("Parameters") + 2 :]
    for i, line in enumerate([*body, ""]):
        header = bool(line) and not line.startswith(" ")
        if header or i == len(body):
            sentence = " ".join(" ".join(text).split())
            sentence = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).rpartition(".")[2], sentence)
            sentence = re.split(r"(?<!e\.g)(?<!i\.e)\.\s", sentence)[0].rstrip(".").replace("``", "")
            out.update(dict.fromkeys(names, sentence))
            if i + 1 < len(body) and body[i + 1].startswith("---"):
                break  # the next section
            names, text = [n.strip().lstrip("*") for n in line.split(":")[0].split(",")], []
        elif line.strip():
            text.append(line.strip())
    return out


def _option(hint: Any, default: Any) -> dict[str, Any]:
    """argparse keywords (type, choices or action, metavar) for a parameter of type ``hint``."""
    import types
    import typing

    members = (
        list(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
    )
    nullable = type(None) in members
    members = [m for m in members if m is not type(None)]
    if members == [bool]:
        return {"action": argparse.BooleanOptionalAction} if default is True else {"action": "store_true"}
    literals = [v for m in members if typing.get_origin(m) is typing.Literal for v in typing.get_args(m)]
    scalars = [m for m in (int, float, str) if m in members]
    if literals and not scalars and not nullable:
        return {"choices": literals}
    if scalars == [str] and not literals:
        return {}
    if len(scalars) == 1 and not literals and not nullable:
        return {"type": scalars[0], "metavar": scalars[0].__name__.upper()}
    words = [*(["none"] if nullable else []), *map(str, literals), *(s.__name__.upper() for s in scalars)]

    def convert(text: str) -> Any:
        if nullable and text.lower() == "none":
            return None
        for value in literals:
            if text == str(value):
                return value
        for scalar in scalars:
            try:
                return scalar(text)
            except ValueError:
                continue
        raise argparse.ArgumentTypeError(f"expected {' or '.join(w.lower() for w in words)}, got {text!r}")

    convert.__name__ = "/".join(words)
    return {"type": convert, "metavar": "{" + ",".join(words) + "}" if len(words) > 1 else words[0]}


def add_verb_options(
    parser: argparse.ArgumentParser, dotted: str, *, skip: Sequence[str] = ("copy",), title: str | None = None
) -> None:
    """One option per keyword-only argument of ``sctransfer.<dotted>``: name, type, default and help.

    The names the runner passes on are recorded as ``args._verb_options``.
    """
    import typing

    func = _verb(dotted)
    hints = typing.get_type_hints(func)
    docs = _parameter_help(func)
    group = parser.add_argument_group(title or f"options of sct.{dotted}")
    names = []
    for name, param in inspect.signature(func).parameters.items():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY or name in skip:
            continue
        required = param.default is inspect.Parameter.empty
        kwargs = _option(hints.get(name, str), None if required else param.default)
        text = docs.get(name, "").replace("%", "%%")
        if not required and param.default is not None and param.default is not False:
            text += " (default: %(default)s)"
        group.add_argument(
            "--" + name.replace("_", "-"), dest=name, required=required,
            **({} if required else {"default": param.default}), help=text, **kwargs,
        )  # fmt: skip
        names.append(name)
    parser.set_defaults(_verb_options=names)


def verb_params(args: argparse.Namespace) -> dict[str, Any]:
    """The verb's keyword arguments as given on the command line (see :func:`add_verb_options`)."""
    return {name: getattr(args, name) for name in args._verb_options}


def _add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run options")
    group.add_argument(
        "--summary-json",
        metavar="PATH",
        help="also write the run's options, input/output shapes and metrics to this JSON file",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show progress messages (-vv: debug and library warnings)",
    )
    group.add_argument("--debug", action="store_true", help="show the full traceback of an error")


# ----------------------------------------------------------------------------------------------- run
@dataclass
class Run:
    """What a subcommand's runner receives and fills in for the summary."""

    args: argparse.Namespace
    progress: _Progress
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    recorded_params: dict[str, Any] = field(default_factory=dict)

    def read(self, option: str, value: str | None, *, mudata: bool = False) -> Any:
        """Read an input file and record its path and shape."""
        with self.progress.step(f"reading {value}"):
            data = read_mudata(value, option) if mudata else read_anndata(value, option)
        self.inputs[option.lstrip("-")] = {
            "path": str(value),
            "n_obs": int(data.n_obs),
            "n_vars": int(data.n_vars),
        }
        return data

    def write(self, data: Any, path: Path, *, option: str = "--output") -> None:
        """Write ``data`` (AnnData or MuData) atomically and record the output's shape."""
        from mudata import MuData

        with self.progress.step(f"writing {path}"):
            if isinstance(data, MuData):
                _write_h5mu(data, path)
            else:
                _write_h5ad(data, path)
        self.outputs[option.lstrip("-")] = {
            "path": str(path),
            "n_obs": int(data.n_obs),
            "n_vars": int(data.n_vars),
        }


def _label_metrics(
    obs: Any, *, label_key: str, confidence_key: str, truth_key: str | None, reference_labels: Any
) -> dict[str, Any]:
    """Counts of the transferred labels, the mean confidence and, with ``truth_key``, the scores."""
    import numpy as np

    from ._utils._keys import REJECTION_LABELS

    labels = obs[label_key].astype(str)
    metrics: dict[str, Any] = {
        "n_cells": int(labels.size),
        "n_rejected": int(labels.isin(list(REJECTION_LABELS)).sum()),
        "mean_confidence": float(np.nanmean(obs[confidence_key].to_numpy(dtype=float)))
        if labels.size
        else None,
        "label_counts": {str(k): int(v) for k, v in labels.value_counts().sort_index().items()},
    }
    if truth_key is not None:
        from .metrics import label_transfer_report

        report = label_transfer_report(obs[truth_key], obs[label_key], reference_labels=reference_labels)
        metrics.update(
            truth_key=truth_key,
            accuracy=report.accuracy,
            macro_f1=report.macro_f1,
            balanced_accuracy=report.balanced_accuracy,
            n_evaluated=report.n_evaluated,
            n_excluded=report.n_excluded,
        )
    return metrics


def _check_obs_column(adata: Any, key: str | None, option: str, where: str) -> None:
    if key is not None and key not in adata.obs.columns:
        raise DataError(
            f"{option}: column {key!r} not found in {where}.obs (columns: {list(adata.obs.columns)})"
        )


# ----------------------------------------------------------------------------------- label-transfer
def _add_label_transfer(p: argparse.ArgumentParser) -> None:
    io = p.add_argument_group("input and output (two h5ad files, or one h5mu file)")
    io.add_argument(
        "--rna",
        metavar="H5AD",
        help="reference AnnData (labelled, for example scRNA-seq; counts or log-normalised)",
    )
    io.add_argument(
        "--atac",
        metavar="H5AD",
        help="query AnnData (for example scATAC-seq gene activity, or another RNA dataset)",
    )
    io.add_argument(
        "--mudata", metavar="H5MU", help="MuData holding both modalities (instead of --rna/--atac)"
    )
    io.add_argument(
        "--output",
        required=True,
        metavar="PATH",
        help="annotated query (h5ad), or the annotated MuData (h5mu) with --mudata",
    )
    add_verb_options(p, "tl.label_transfer")
    e = p.add_argument_group("method options (ensemble, knn)")
    e.add_argument("--n-comps", type=int, default=None, help="joint PCA components (default: 50)")
    s = p.add_argument_group("method options (scjoint); unset options take the preset's value")
    s.add_argument("--max-epochs", type=int, default=None, help="stage-1 training epochs")
    s.add_argument(
        "--max-epochs-stage3", type=int, default=None, help="stage-3 training epochs (0 skips stage 3)"
    )
    s.add_argument("--batch-size", type=int, default=None, help="cells drawn from each modality per step")
    s.add_argument("--accelerator", default=None, help="Lightning accelerator (default: auto)")
    s.add_argument("--devices", type=_devices, default=None, help="Lightning devices (default: auto)")
    k = p.add_argument_group("method options (knn)")
    k.add_argument(
        "--metric", choices=["cosine", "euclidean"], default=None, help="kNN metric (default: cosine)"
    )
    k.add_argument(
        "--backend", choices=["exact", "pynndescent"], default=None, help="kNN search (default: exact)"
    )
    x = p.add_argument_group("more")
    x.add_argument(
        "--kwarg",
        action="append",
        type=_kwarg,
        metavar="KEY=VALUE",
        help="another keyword of the method (**method_kwargs, e.g. smooth_steps=2, n_latent=32 or "
        "n_features=50); VALUE is read as JSON when it can be",
    )
    x.add_argument(
        "--truth-key",
        default=None,
        help="query .obs column with known labels: the summary then reports accuracy, macro-F1 and balanced accuracy",
    )


#: the method options of label-transfer, by method (others go through --kwarg)
_METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "ensemble": ("n_comps",),
    "knn": ("n_comps", "metric", "backend"),
    "scjoint": ("max_epochs", "max_epochs_stage3", "batch_size", "accelerator", "devices"),
    "castle": (),
}


def _run_label_transfer(run: Run) -> None:
    args = run.args
    if args.mudata is not None and (args.rna is not None or args.atac is not None):
        raise UsageError("give either --mudata, or --rna and --atac, not both")
    if args.mudata is None and (args.rna is None or args.atac is None):
        raise UsageError("give --rna and --atac (two h5ad files), or --mudata (one h5mu file)")
    own = _METHOD_OPTIONS[args.method]
    for name in dict.fromkeys(n for names in _METHOD_OPTIONS.values() for n in names):
        if name not in own and getattr(args, name) is not None:
            owners = " or ".join(m for m, names in _METHOD_OPTIONS.items() if name in names)
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag}: option of --method {owners}, not of --method {args.method}")
    if args.faithful and args.method != "scjoint":
        raise UsageError(f"--faithful: option of --method scjoint, not of --method {args.method}")
    method_kwargs = _merge_kwargs({name: getattr(args, name) for name in own}, args.kwarg)
    output = check_output_path(args.output)
    params = verb_params(args)
    rna_mod, atac_mod = params.pop("rna_mod"), params.pop("atac_mod")
    run.params = {**params, **method_kwargs}

    from . import tl
    from ._utils._keys import LabelTransferKeys

    if args.mudata is not None:
        mdata = run.read("--mudata", args.mudata, mudata=True)
        for option, mod in (("--rna-mod", rna_mod), ("--atac-mod", atac_mod)):
            if mod not in mdata.mod:
                raise DataError(
                    f"{option}: modality {mod!r} not in the MuData (modalities: {list(mdata.mod)})"
                )
        reference, query = mdata.mod[rna_mod], mdata.mod[atac_mod]
        where = (f"the MuData's {rna_mod!r} modality", f"the MuData's {atac_mod!r} modality")
        data, query_data = mdata, None
        params.update(rna_mod=rna_mod, atac_mod=atac_mod)
        run.params.update(rna_mod=rna_mod, atac_mod=atac_mod)
    else:
        reference = run.read("--rna", args.rna)
        query = run.read("--atac", args.atac)
        where = ("the reference (--rna)", "the query (--atac)")
        data, query_data = reference, query
    _check_obs_column(reference, args.labels_key, "--labels-key", where[0])
    _check_obs_column(query, args.truth_key, "--truth-key", where[1])
    with run.progress.step(f"label transfer ({args.method})"):
        tl.label_transfer(data, query_data, **params, **method_kwargs)
    keys = LabelTransferKeys(args.key_added)
    run.recorded_params = dict(query.uns[keys.uns].get("params", {}))
    run.metrics = _label_metrics(
        query.obs,
        label_key=keys.label,
        confidence_key=keys.confidence,
        truth_key=args.truth_key,
        reference_labels=reference.obs[args.labels_key],
    )
    run.write(mdata if args.mudata is not None else query, output)


# ------------------------------------------------------------------------------------ gene-activity
def _add_gene_activity(p: argparse.ArgumentParser) -> None:
    io = p.add_argument_group("input and output")
    io.add_argument("--peaks", required=True, metavar="H5AD", help="cells x peaks accessibility (h5ad)")
    src = io.add_mutually_exclusive_group(required=True)
    src.add_argument("--genome", help="built-in gene table: GRCh38 (hg38), GRCm38 (mm10) or hg19 (GRCh37)")
    src.add_argument(
        "--annotation",
        metavar="TABLE",
        help="gene table file instead of --genome: tab-separated with a header naming chrom, start, end "
        "(1-based inclusive), strand and the --gene-key column, or a BED6 file (0-based; name = gene)",
    )
    io.add_argument("--output", required=True, metavar="PATH", help="cells x genes gene activity (h5ad)")
    o = p.add_argument_group("options of sct.datasets.gene_annotation (with --genome)")
    o.add_argument(
        "--data-dir",
        default=None,
        help="data directory holding the gene tables (default: SCTRANSFER_DATA_DIR)",
    )
    o.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download the hg19 table when missing (default: yes)",
    )
    add_verb_options(p, "pp.gene_activity", skip=("annotation",))


def read_annotation(value: str, option: str = "--annotation") -> Any:
    """Read a gene table: tab- (or comma-) separated with a header, or BED6 (converted to 1-based starts)."""
    import pandas as pd

    path = _input_path(value, option)
    try:
        with path.open(encoding="utf-8") as fh:
            first = next(
                (line for line in fh if line.strip() and not line.startswith(("#", "track", "browser"))), ""
            )
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{option}: cannot read {value} as text: {_exception_message(err)}") from None
    sep = "\t" if "\t" in first else ","
    fields = [f.strip() for f in first.rstrip("\n").split(sep)]
    try:
        if len(fields) >= 6 and fields[1].isdigit() and fields[2].isdigit():
            bed = pd.read_csv(
                path, sep="\t", header=None, comment="#", usecols=range(6), dtype={0: str, 3: str, 5: str},
                names=["chrom", "start", "end", "gene_name", "score", "strand"], keep_default_na=False,
            )  # fmt: skip
            bed = bed[~bed["chrom"].str.startswith(("track", "browser"))]
            table = pd.DataFrame(
                {
                    "gene_id": bed["gene_name"].to_numpy(),
                    "gene_name": bed["gene_name"].to_numpy(),
                    "chrom": bed["chrom"].to_numpy(),
                    "start": bed["start"].astype("int64").to_numpy() + 1,
                    "end": bed["end"].astype("int64").to_numpy(),
                    "strand": bed["strand"].to_numpy(),
                }
            )
        elif {"chrom", "start", "end", "strand"} <= set(fields):
            table = pd.read_csv(
                path, sep=sep, comment="#", dtype={"chrom": str, "strand": str}, keep_default_na=False
            )
        else:
            raise DataError(
                f"{option}: {value} is neither a gene table with a header naming chrom, start, end, strand "
                f"and the gene column, nor a BED6 file (first line: {first.strip()[:80]!r})"
            )
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{option}: cannot parse {value}: {_exception_message(err)}") from None
    table.attrs["sct_dataset"] = {"name": f"file:{path.name}"}
    return table


def _run_gene_activity(run: Run) -> None:
    args = run.args
    output = check_output_path(args.output)
    params = verb_params(args)
    run.params = {"genome": args.genome, "annotation": args.annotation, **params}
    from . import datasets, pp
    from ._utils._keys import GENE_ACTIVITY_KEY

    if args.genome is not None:
        from .datasets._annotation import _canonical

        try:
            _canonical(args.genome)
        except ValueError as err:
            raise UsageError(f"--genome: {_exception_message(err)}") from None
    peaks = run.read("--peaks", args.peaks)
    with run.progress.step("reading the gene annotation"):
        if args.genome is not None:
            annotation = datasets.gene_annotation(args.genome, data_dir=args.data_dir, download=args.download)
        else:
            annotation = read_annotation(args.annotation)
    with run.progress.step("gene activity"):
        result = pp.gene_activity(peaks, annotation=annotation, **params)
    recorded = dict(result.uns[GENE_ACTIVITY_KEY]["params"])
    run.recorded_params = recorded
    import numpy as np

    per_cell = np.asarray((result.X != 0).sum(axis=1)).ravel()
    run.metrics = {
        "n_cells": int(result.n_obs),
        "n_genes": int(result.n_vars),
        "n_peaks_total": recorded.get("n_peaks_total"),
        "n_peaks_used": recorded.get("n_peaks_used"),
        "n_peaks_unmatched_chrom": recorded.get("n_peaks_unmatched_chrom"),
        "median_active_genes_per_cell": float(np.median(per_cell)) if per_cell.size else None,
    }
    run.write(result, output)


# ------------------------------------------------------------------------------------------- castle
def _add_castle(p: argparse.ArgumentParser) -> None:
    io = p.add_argument_group("input and output")
    io.add_argument(
        "--source",
        required=True,
        metavar="H5AD",
        help="labelled cells (counts or log-normalised values, h5ad)",
    )
    io.add_argument(
        "--target",
        required=True,
        metavar="H5AD",
        help="cells to classify (counts or log-normalised values, h5ad)",
    )
    io.add_argument("--output", required=True, metavar="PATH", help="annotated target (h5ad)")
    add_verb_options(p, "tl.castle")
    x = p.add_argument_group("more")
    x.add_argument(
        "--kwarg",
        action="append",
        type=_kwarg,
        metavar="KEY=VALUE",
        help="another CaSTLe option (**model_kwargs, e.g. n_rounds=30); VALUE is read as JSON when it can be",
    )
    x.add_argument(
        "--truth-key", default=None, help="target .obs column with known labels, scored in the summary"
    )


def _run_castle(run: Run) -> None:
    args = run.args
    output = check_output_path(args.output)
    explicit = verb_params(args)
    model_kwargs = _merge_kwargs({}, args.kwarg)
    for key in model_kwargs:
        if key in explicit:
            raise UsageError(f"--kwarg {key}=... repeats the option --{key.replace('_', '-')}")
    run.params = {**explicit, **model_kwargs}
    from . import tl
    from ._utils._keys import LabelTransferKeys

    source = run.read("--source", args.source)
    target = run.read("--target", args.target)
    _check_obs_column(source, args.labels_key, "--labels-key", "the source (--source)")
    _check_obs_column(target, args.truth_key, "--truth-key", "the target (--target)")
    with run.progress.step("CaSTLe"):
        tl.castle(source, target, **explicit, **model_kwargs)
    keys = LabelTransferKeys(args.key_added)
    run.recorded_params = dict(target.uns[keys.uns].get("params", {}))
    run.metrics = _label_metrics(
        target.obs,
        label_key=keys.label,
        confidence_key=keys.confidence,
        truth_key=args.truth_key,
        reference_labels=source.obs[args.labels_key],
    )
    run.write(target, output)


# ------------------------------------------------------------------------------- bermuda, metaneighbor
def _add_batches_input(p: argparse.ArgumentParser, what: str) -> None:
    io = p.add_argument_group("input and output")
    io.add_argument("--input", required=True, metavar="H5AD", help="cells x genes of all batches (h5ad)")
    io.add_argument("--output", required=True, metavar="PATH", help=what)


def _add_bermuda(p: argparse.ArgumentParser) -> None:
    _add_batches_input(p, "the input with the aligned embedding (h5ad)")
    add_verb_options(p, "tl.bermuda")
    x = p.add_argument_group("more")
    x.add_argument(
        "--kwarg",
        action="append",
        type=_kwarg,
        metavar="KEY=VALUE",
        help="a training option or model setting (**train_kwargs, e.g. batch_size=64); VALUE is read as JSON",
    )


def _run_bermuda(run: Run) -> None:
    args = run.args
    output = check_output_path(args.output)
    params = verb_params(args)
    train_kwargs = _merge_kwargs({}, args.kwarg)
    for key in train_kwargs:
        if key in params:
            raise UsageError(f"--kwarg {key}=... repeats the option --{key.replace('_', '-')}")
    run.params = {**params, **train_kwargs}
    from . import tl

    adata = run.read("--input", args.input)
    _check_obs_column(adata, args.batch_key, "--batch-key", "the input (--input)")
    _check_obs_column(adata, args.cluster_key, "--cluster-key", "the input (--input)")
    with run.progress.step("BERMUDA"):
        tl.bermuda(adata, **params, **train_kwargs)
    uns = adata.uns[args.key_added]
    run.recorded_params = dict(uns.get("params", {}))
    run.metrics = {
        "n_cells": int(adata.n_obs),
        "n_batches": int(adata.obs[args.batch_key].nunique()),
        "n_genes_used": len(uns.get("genes", [])),
        "n_cluster_pairs": len(uns.get("cluster_pairs", [])),
        "epochs_trained": uns.get("epochs_trained"),
        "embedding_shape": list(adata.obsm[f"X_{args.key_added}"].shape),
    }
    run.write(adata, output)


def _add_metaneighbor(p: argparse.ArgumentParser) -> None:
    _add_batches_input(p, "the input with the MetaNeighbor scores in .uns (h5ad)")
    add_verb_options(p, "tl.metaneighbor")


def _run_metaneighbor(run: Run) -> None:
    args = run.args
    output = check_output_path(args.output)
    params = verb_params(args)
    run.params = dict(params)
    from . import tl

    adata = run.read("--input", args.input)
    _check_obs_column(adata, args.batch_key, "--batch-key", "the input (--input)")
    _check_obs_column(adata, args.cluster_key, "--cluster-key", "the input (--input)")
    with run.progress.step("MetaNeighbor"):
        tl.metaneighbor(adata, **params)
    import numpy as np

    uns = adata.uns[args.key_added]
    run.recorded_params = dict(uns.get("params", {}))
    sim = np.asarray(uns["similarity"], dtype=float)
    across = np.asarray(uns["cluster_batches"])[:, None] != np.asarray(uns["cluster_batches"])[None, :]
    run.metrics = {
        "n_clusters": len(uns["clusters"]),
        "max_similarity_across_batches": float(sim[across].max()) if across.any() else None,
        "n_pairs_above_0.85": int(((sim >= 0.85) & across).sum() // 2),
    }
    run.write(adata, output)


# ------------------------------------------------------------------------------------------- trvae
def _add_model_location(p: argparse.ArgumentParser, verb: str) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--model-dir",
        metavar="DIR",
        help=f"model directory ({verb} by sct.models.TRVAE.{'save' if verb == 'written' else 'load'})",
    )
    where.add_argument(
        "--model-file", metavar="FILE", help=f"the model as one file (the directory's model.pt; {verb} as is)"
    )


def _add_trvae(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="trvae_action", metavar="ACTION", parser_class=_Parser)
    train = actions.add_parser(
        "train",
        help="train trVAE across conditions and write its latent representation and the model",
        description="Train trVAE (sct.tl.trvae) across the conditions of one AnnData; write the annotated "
        "data and the trained model.",
        allow_abbrev=False,
    )
    io = train.add_argument_group("input and output")
    io.add_argument("--input", required=True, metavar="H5AD", help="cells x genes, log-normalised (h5ad)")
    io.add_argument(
        "--output", required=True, metavar="PATH", help="the input with the latent representation"
    )
    _add_model_location(io, "written")
    add_verb_options(train, "tl.trvae", skip=("copy", "enable_progress_bar"))
    o = train.add_argument_group("more")
    o.add_argument(
        "--kwarg",
        action="append",
        type=_kwarg,
        metavar="KEY=VALUE",
        help="a model setting (**config, e.g. n_latent=10 or encoder_layers=[64]); VALUE is read as JSON",
    )
    _add_common(train)
    train.set_defaults(_action=_run_trvae_train)

    predict = actions.add_parser(
        "predict",
        help="predict cells under another condition with a trained trVAE model",
        description="Encode cells under their (or a given) source condition and decode them under the "
        "target condition with a trained trVAE model (sct.models.TRVAE.predict).",
        allow_abbrev=False,
    )
    io = predict.add_argument_group("input and output")
    io.add_argument(
        "--input", required=True, metavar="H5AD", help="cells to transfer, with the model's genes"
    )
    io.add_argument("--output", required=True, metavar="PATH", help="the predicted cells (h5ad)")
    _add_model_location(io, "read")
    add_verb_options(predict, "models.TRVAE.predict")
    _add_common(predict)
    predict.set_defaults(_action=_run_trvae_predict)


_MODEL_FILE = "model.pt"


def _save_model(model: Any, args: argparse.Namespace) -> str:
    """Save ``model`` atomically to ``--model-dir`` (a directory) or ``--model-file`` (its one file)."""
    import shutil

    target = Path(args.model_dir or args.model_file)
    parent = target.parent if str(target.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=parent))
    try:
        model.save(str(staging / "model"), overwrite=True)
        if args.model_file is not None:
            os.replace(staging / "model" / _MODEL_FILE, target)
        else:
            previous = staging / "previous"
            if target.exists():
                os.replace(target, previous)
            try:
                os.replace(staging / "model", target)
            except OSError:
                if previous.exists():
                    os.replace(previous, target)
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


@contextlib.contextmanager
def _model_directory(args: argparse.Namespace) -> Iterator[Path]:
    """The model directory to load: ``--model-dir``, or a temporary one holding ``--model-file``."""
    if args.model_dir is not None:
        path = Path(args.model_dir)
        if not (path / _MODEL_FILE).is_file():
            raise DataError(
                f"--model-dir: {path} holds no {_MODEL_FILE}; pass the directory written by trvae train"
            )
        yield path
        return
    source = _input_path(args.model_file, "--model-file")
    with tempfile.TemporaryDirectory(prefix="sctransfer-model-") as tmp:
        os.symlink(source.resolve(), Path(tmp) / _MODEL_FILE)
        yield Path(tmp)


def _run_trvae_train(run: Run) -> None:
    args = run.args
    output = check_output_path(args.output)
    if args.model_file is not None:
        check_output_path(args.model_file, "--model-file")
    else:
        if Path(args.model_dir).is_file():
            raise DataError(f"--model-dir: {args.model_dir} is a file; give a directory, or use --model-file")
        check_output_path(str(Path(args.model_dir).parent / "x"), "--model-dir")
    params = verb_params(args)
    config = _merge_kwargs({}, args.kwarg)
    for key in config:
        if key in params:
            raise UsageError(f"--kwarg {key}=... repeats the option --{key.replace('_', '-')}")
    run.params = {**params, **config}
    from ._utils._keys import embedding_uns_key
    from .tl._trvae import fit_and_write

    adata = run.read("--input", args.input)
    _check_obs_column(adata, args.condition_key, "--condition-key", "the input (--input)")
    with run.progress.step("trVAE training"):
        _, model = fit_and_write(adata, **params, **config)
    key = embedding_uns_key(args.key_added)
    uns = adata.uns[key]
    run.recorded_params = dict(uns.get("params", {}))
    run.metrics = {
        "n_cells": int(adata.n_obs),
        "conditions": list(uns.get("conditions", [])),
        "latent_shape": list(adata.obsm[f"X_{key}"].shape),
        "training": dict(uns.get("training", {})),
    }
    run.write(adata, output)
    with run.progress.step("saving the model"):
        run.outputs["model"] = {"path": _save_model(model, args)}


def _run_trvae_predict(run: Run) -> None:
    args = run.args
    output = check_output_path(args.output)
    run.params = verb_params(args)
    import numpy as np
    import pandas as pd
    import torch
    from anndata import AnnData

    from ._utils._transfer import check_unique_names
    from ._utils._validation import get_matrix, take_columns
    from .models import TRVAE

    adata = run.read("--input", args.input)
    with _model_directory(args) as model_dir:
        try:
            registry = TRVAE.load_registry(str(model_dir))
            saved = torch.load(model_dir / _MODEL_FILE, map_location="cpu", weights_only=False)
        except Exception as err:  # torch and scvi raise many types for a file that is not a model
            raise DataError(f"cannot read the trVAE model: {_exception_message(err)}") from None
        setup = registry.get("setup_args", {})
        condition_key, layer = setup.get("condition_key"), setup.get("layer")
        genes = [str(g) for g in np.asarray(saved.get("var_names", []))]
        missing = [g for g in genes if g not in adata.var_names]
        if missing:
            raise DataError(
                f"--input lacks {len(missing)} of the model's {len(genes)} genes (for example {missing[:3]})"
            )
        obs = adata.obs.copy()
        if condition_key not in obs.columns:
            if args.source_condition is None:
                raise DataError(
                    f"--input has no .obs column {condition_key!r} (the model's condition key); add it or "
                    "pass --source-condition"
                )
            obs[condition_key] = args.source_condition
        check_unique_names(adata, "--input")
        X = take_columns(get_matrix(adata, layer, "the input"), adata.var_names.get_indexer(genes))
        work = AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(genes)))
        with run.progress.step("trVAE prediction"):
            model = TRVAE.load(str(model_dir), adata=work, accelerator="cpu")
            result = model.predict(work, **run.params)
    result.obs = result.obs.drop(columns=[c for c in result.obs.columns if c.startswith("_scvi")])
    run.recorded_params = {
        "condition_key": condition_key,
        "layer": layer,
        "conditions": list(model.conditions_),
    }
    run.metrics = {
        "n_cells": int(result.n_obs),
        "n_genes": int(result.n_vars),
        "source_counts": {str(k): int(v) for k, v in result.obs["source_condition"].value_counts().items()},
    }
    run.write(result, output)


def _run_trvae(run: Run) -> None:
    action = getattr(run.args, "_action", None)
    if action is None:
        raise UsageError("choose an action: train or predict (see 'sctransfer trvae --help')")
    action(run)


# ------------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class Verb:
    """A subcommand: its name, help, arguments and runner."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Run], None]
    #: the verb has actions (``trvae train|predict``) that carry the common options themselves
    nested: bool = False


VERBS: list[Verb] = [
    Verb(
        "label-transfer",
        "transfer cell-type labels from a reference (RNA) to a query (ATAC gene activity): sct.tl.label_transfer",
        _add_label_transfer,
        _run_label_transfer,
    ),
    Verb(
        "gene-activity",
        "sum peak accessibility over gene regions (peaks -> genes): sct.pp.gene_activity",
        _add_gene_activity,
        _run_gene_activity,
    ),
    Verb(
        "castle",
        "classify target cells with CaSTLe trained on a labelled source: sct.tl.castle",
        _add_castle,
        _run_castle,
    ),
    Verb(
        "bermuda",
        "align batches with BERMUDA and store the aligned embedding: sct.tl.bermuda",
        _add_bermuda,
        _run_bermuda,
    ),
    Verb(
        "metaneighbor",
        "score cluster similarity across batches with MetaNeighbor: sct.tl.metaneighbor",
        _add_metaneighbor,
        _run_metaneighbor,
    ),
    Verb(
        "trvae",
        "train trVAE across conditions (train), or predict cells under another condition (predict): sct.tl.trvae",
        _add_trvae,
        _run_trvae,
        nested=True,
    ),
]


def available_verbs() -> list[Verb]:
    """The subcommands (building them imports no part of the package beyond this module)."""
    return list(VERBS)


def build_parser(verbs: Sequence[Verb] | None = None, *, only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with one subcommand per verb.

    With ``only``, just that subcommand gets its options (read from the verb's signature, which imports
    the verb), so that ``sctransfer --help`` and ``--version`` import nothing.
    """
    verbs = available_verbs() if verbs is None else verbs
    parser = _Parser(
        prog=PROG,
        description="Transfer learning across single-cell datasets and modalities, on h5ad/h5mu files. "
        "Each command reads its inputs, runs the sctransfer verb of the same name and writes the result "
        "atomically. Exit status: 0 success, 1 data error, 2 usage error.",
        epilog="Run 'sctransfer COMMAND --help' for the options of a command. GALAXY_SLOTS sets the threads.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for verb in verbs:
        p = sub.add_parser(verb.name, help=verb.help, description=verb.help, allow_abbrev=False)
        p.set_defaults(_verb=verb)
        if only is not None and verb.name != only:
            continue
        verb.add_arguments(p)
        if not verb.nested:
            _add_common(p)
    return parser


def _summary(run: Run, verb: Verb, argv: Sequence[str], seconds: float, environment: dict[str, Any]) -> dict:
    return {
        "sctransfer_version": _package_version(),
        "command": f"{verb.name} {run.args.trvae_action}" if verb.nested else verb.name,
        "argv": list(argv),
        "params": run.params,
        "recorded_params": run.recorded_params,
        "inputs": run.inputs,
        "outputs": run.outputs,
        "metrics": run.metrics,
        "seconds": seconds,
        "environment": environment,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sctransfer`` command line.

    Parameters
    ----------
    argv
        The arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    The exit status: :data:`EXIT_OK`, :data:`EXIT_DATA_ERROR` or :data:`EXIT_USAGE_ERROR`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # answered before the parser (and its check of the verbs) is built
        print(f"{PROG} {_package_version()}")
        return EXIT_OK
    debug = "--debug" in argv
    prog = PROG
    try:
        environment = configure_environment()
        command = next((a for a in argv if not a.startswith("-")), None)
        parser = build_parser(only=command if command in {v.name for v in VERBS} else "")
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return int(exc.code or 0)
        verb: Verb | None = getattr(args, "_verb", None)
        if verb is None:
            names = ", ".join(v.name for v in available_verbs())
            raise UsageError(f"choose a command: {names} (see '{PROG} --help')")
        prog = f"{PROG} {verb.name}"
        if verb.nested and getattr(args, "_action", None) is None:
            raise UsageError(f"choose an action (see '{prog} --help')")
        debug = args.debug
        if args.summary_json is not None:
            summary_path = check_output_path(args.summary_json, "--summary-json")
        tty = _stderr_is_tty()  # progress bars only on a terminal (sct.settings.progress_bar)
        run = Run(args=args, progress=_Progress(tty))
        start = time.perf_counter()
        with _console(args.verbose, progress_bar=tty), _apply_threads(environment["threads"]):
            verb.run(run)
            if args.summary_json is not None:
                _write_json(summary_path, _summary(run, verb, argv, time.perf_counter() - start, environment))
        return EXIT_OK
    except CLIError as err:
        if debug:
            raise
        print(f"{prog}: error: {_one_line(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, LookupError, OSError) as err:
        if debug:
            raise
        print(f"{prog}: error: {_exception_message(err)}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except Exception as err:
        if debug:
            raise
        print(
            f"{prog}: error: unexpected {type(err).__name__}: {_exception_message(err)} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_DATA_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
