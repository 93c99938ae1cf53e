"""Locate, verify (sha256) and, where a public URL exists, download the real-data files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .._utils._logging import logger
from ._registry import FileInfo, get_entry

__all__ = ["DATA_DIR_ENV", "DataNotFoundError", "_fetch", "data_dir", "is_available"]

#: Environment variable naming the data directory.
DATA_DIR_ENV = "SCTRANSFER_DATA_DIR"

# resolved path -> (size, mtime_ns) of files whose sha256 was verified in this process
_VERIFIED: dict[str, tuple[int, int]] = {}


class DataNotFoundError(FileNotFoundError):
    """A data file is neither in the data directory nor downloadable.

    The message says which file was looked for, where, and how to provide it.
    """


def data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory the dataset loaders read from.

    Resolution order: the ``data_dir`` argument, then the ``SCTRANSFER_DATA_DIR`` environment variable,
    then the user cache directory of ``sctransfer`` (``platformdirs.user_cache_dir("sctransfer")``, the
    same folder as ``pooch.os_cache("sctransfer")``). Files live in it as ``<folder>/<file>``, for example
    ``mop_snareseq2/GxC1.npz``.

    Parameters
    ----------
    data_dir
        Explicit directory; overrides the environment variable.

    Returns
    -------
    The data directory (it need not exist yet).
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("sctransfer"))


_resolve = data_dir  # the loaders' keyword ``data_dir`` shadows the function


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(path: Path) -> tuple[str, tuple[int, int]]:
    st = path.stat()
    return str(path.resolve()), (st.st_size, st.st_mtime_ns)


def _verify(path: Path, info: FileInfo) -> None:
    """Check the sha256 of ``path`` against the registry; remember verified files by (path, size, mtime)."""
    key, stamp = _stat_key(path)
    if _VERIFIED.get(key) == stamp:
        return
    got = _sha256(path)
    if got != info.sha256:
        how = (
            f"delete it to download it again from {info.url}"
            if info.url
            else f"replace it with the original file ({info.key} of the sctransfer data directory)"
        )
        raise ValueError(
            f"sha256 mismatch for {info.key} at {path}: expected {info.sha256}, got {got} "
            f"({stamp[0]} bytes, expected {info.size}). The file is corrupted or a different version; {how}."
        )
    _VERIFIED[key] = stamp


def _not_found_message(info: FileInfo, path: Path, root: Path, reason: str) -> str:
    msg = (
        f"Data file {info.key} not found: looked for {path} ({reason}). Provide it by setting "
        f"{DATA_DIR_ENV} (or passing data_dir=...) to a folder holding {info.folder}/{info.name}, "
        f"or by putting the file at {path}."
    )
    if info.url:
        msg += f" It can be downloaded from {info.url} (sha256 {info.sha256})."
    else:
        msg += " It has no public download URL; copy it from the sctransfer shared data directory."
    return msg


def _fetch(
    folder: str, name: str, *, data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> Path:
    """Return the verified local path of ``<folder>/<name>``, downloading it with pooch if needed.

    Parameters
    ----------
    folder
        Sub-folder of the data directory.
    name
        File name (must be in the registry).
    data_dir
        Data directory; ``None`` resolves it with :func:`data_dir`.
    download
        Whether a missing file that has a public URL may be downloaded.

    Returns
    -------
    Path of the file, whose sha256 matches the registry.

    Raises
    ------
    DataNotFoundError
        If the file is missing and cannot be downloaded (no URL, ``download=False`` or a network failure).
    ValueError
        If the file exists but its sha256 differs from the registry.
    """
    info = get_entry(folder, name)
    root = _resolve(data_dir)
    path = root / folder / name
    if path.is_file():
        _verify(path, info)
        return path
    if info.url is None:
        raise DataNotFoundError(_not_found_message(info, path, root, "no public download URL"))
    if not download:
        raise DataNotFoundError(_not_found_message(info, path, root, "download=False"))
    import pooch

    logger.info("Downloading %s from %s to %s", info.key, info.url, path)
    try:
        pooch.retrieve(
            info.url,
            known_hash=f"sha256:{info.sha256}",
            fname=name,
            path=root / folder,
            progressbar=False,
        )
    except ValueError as exc:  # pooch: downloaded content has the wrong hash
        raise ValueError(
            f"Downloaded {info.key} from {info.url} but its sha256 does not match the registry "
            f"({info.sha256}): {exc}"
        ) from exc
    except Exception as exc:  # network or file-system failure
        raise DataNotFoundError(
            _not_found_message(info, path, root, f"download failed: {type(exc).__name__}: {exc}")
        ) from exc
    if not path.is_file():  # pragma: no cover - pooch always writes path on success
        raise DataNotFoundError(_not_found_message(info, path, root, "download produced no file"))
    key, stamp = _stat_key(path)
    _VERIFIED[key] = stamp  # pooch checked the hash
    return path


def is_available(folder: str, name: str, *, data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``<folder>/<name>`` exists in the data directory (without verifying or downloading it).

    Parameters
    ----------
    folder
        Sub-folder of the data directory.
    name
        File name.
    data_dir
        Data directory; ``None`` resolves it with :func:`data_dir`.

    Returns
    -------
    ``True`` if the file exists.
    """
    return (_resolve(data_dir) / folder / name).is_file()
