"""Reading h5ad/h5mu inputs with one-line errors, and writing every output atomically."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._base import DataError, UsageError, exception_message

#: the one file of a saved neural model (scvi-tools' ``model.pt``), what ``--model-file`` holds
MODEL_FILE = "model.pt"


def input_path(value: str | None, option: str) -> Path:
    """An existing, readable file given to ``option``."""
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
        raise DataError(f"{option}: cannot open {path} as HDF5: {exception_message(err)}") from None
    if "mod" in keys:
        return "h5mu"
    if "X" in keys or "obs" in keys:
        return "h5ad"
    raise DataError(
        f"{option}: {path} is an HDF5 file but neither h5ad nor h5mu (top-level keys: {sorted(keys)})"
    )


def read_data(value: str | None, option: str, *, mudata: bool = False) -> Any:
    """Read the h5ad (or, with ``mudata``, h5mu) file given to ``option``; one-line :class:`DataError`."""
    path = input_path(value, option)
    kind, other = ("h5mu", "h5ad (AnnData)") if mudata else ("h5ad", "h5mu (MuData)")
    if _hdf5_kind(path, option) != kind:
        raise DataError(f"{option}: {path} is an {other} file; this option takes an {kind} file")
    try:
        if mudata:
            import mudata as md

            return md.read_h5mu(path)
        import anndata

        return anndata.read_h5ad(path)
    except Exception as err:  # the readers raise many types for damaged files
        raise DataError(f"{option}: cannot read {path} as {kind}: {exception_message(err)}") from None


def check_output_path(value: str, option: str = "--output") -> Path:
    """Check before any work that ``value`` can be written: its directory exists and is writable."""
    path = Path(value)
    if path.is_dir():
        raise DataError(f"{option}: {value} is a directory; give a file name")
    return _check_parent(path, option)


def _check_parent(path: Path, option: str) -> Path:
    from .._utils._save import parent_problem

    problem = parent_problem(path)
    if problem is not None:
        raise DataError(f"{option}: {problem}")
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


def write_data(data: Any, path: Path) -> None:
    """Write an AnnData (h5ad) or a MuData (h5mu) atomically."""
    from mudata import MuData

    if isinstance(data, MuData):
        import mudata

        write_atomic(path, lambda tmp: mudata.write_h5mu(tmp, data))
    else:
        write_atomic(path, lambda tmp: data.write_h5ad(tmp))


def json_safe(value: Any) -> Any:
    """Plain JSON types: NaN/inf become ``None``, NumPy scalars and arrays Python ones."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(json_safe(payload), indent=2, sort_keys=False, allow_nan=False) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------------------------------- models
def check_model_target(value: str, option: str, *, one_file: bool) -> Path:
    """Check before training that a model directory (or, with ``one_file``, a model file) can be written."""
    path = Path(value)
    if not one_file and path.is_file():
        raise DataError(f"{option}: {value} is a file; give a directory, or use --model-file")
    return check_output_path(value, option) if one_file else _check_parent(path, option)


@contextlib.contextmanager
def model_written_to(target: Path, *, one_file: bool) -> Iterator[None]:
    """Around a run whose verb saves its model to the directory ``target`` (``save_model``).

    A model already at ``target`` is moved aside and comes back if the run fails; it is deleted only once
    the new one is complete. With ``one_file``, the saved directory becomes its :data:`MODEL_FILE` alone.
    """
    parent = target.parent if str(target.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=parent))
    previous = staging / "previous"
    try:
        if target.exists():
            os.replace(target, previous)
        try:
            yield
            if one_file:
                os.replace(target / MODEL_FILE, staging / MODEL_FILE)
                shutil.rmtree(target)
                os.replace(staging / MODEL_FILE, target)
        except BaseException:
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            if previous.exists():
                os.replace(previous, target)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def model_read_from(model_dir: str | None, model_file: str | None) -> Iterator[Path]:
    """The model directory to load: ``--model-dir``, or a temporary one holding ``--model-file``."""
    if model_dir is not None:
        path = Path(model_dir)
        if not (path / MODEL_FILE).is_file():
            raise DataError(
                f"--model-dir: {path} holds no {MODEL_FILE}; pass the directory written by training"
            )
        yield path
        return
    source = input_path(model_file, "--model-file")
    with tempfile.TemporaryDirectory(prefix="sctransfer-model-") as tmp:
        os.symlink(source.resolve(), Path(tmp) / MODEL_FILE)
        yield Path(tmp)
