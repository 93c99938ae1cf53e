"""``save_model=``: how every verb that trains a model keeps it (one place for the check and the write)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def check_model_path(path: str | os.PathLike[str] | None) -> Path | None:
    """Check ``save_model`` before any training: a new or empty directory whose parent exists."""
    if path is None:
        return None
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise ValueError(f"save_model must be a directory path or None, got {path!r}.")
    target = Path(path)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise ValueError(
            f"save_model: {target} exists and is not an empty directory; remove it or choose another path."
        )
    problem = parent_problem(target)
    if problem is not None:
        raise ValueError(f"save_model: {problem}.")
    return target


def parent_problem(path: Path) -> str | None:
    """Why ``path`` cannot be created (its directory is missing or not writable); ``None`` if it can."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return f"the directory of {path} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write to the directory of {path} (permission denied)"
    return None


def save_trained(model: Any, path: Path | None) -> None:
    """Save ``model`` (its ``save(dir_path, overwrite=...)``) to ``path``, checked by :func:`check_model_path`.

    The model is written into a temporary directory beside ``path`` and renamed to ``path`` when complete,
    so an interrupted save leaves no partial model.
    """
    if path is None:
        return
    import inspect

    # a neural model keeps the AnnData it was trained on (the verb's own, preprocessed), so that
    # ``Class.load(path)`` needs no AnnData
    options = {"save_anndata": True} if "save_anndata" in inspect.signature(model.save).parameters else {}
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        model.save(str(staging / "model"), overwrite=True, **options)
        if path.is_dir():
            path.rmdir()  # empty, as checked before the training
        os.replace(staging / "model", path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
