"""Helpers that read from and write to AnnData (the only place results are written)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ._keys import UNKNOWN_LABEL, LabelTransferKeys


def to_plain(value: Any, *, keep_arrays: bool = False) -> Any:
    """Convert params to types that ``write_h5ad`` accepts (no tuples, no NumPy scalars).

    Arrays become lists, unless ``keep_arrays`` (results such as a similarity matrix stay arrays).
    """
    if isinstance(value, dict):
        return {str(k): to_plain(v, keep_arrays=keep_arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v, keep_arrays=keep_arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value if keep_arrays else value.tolist()
    return value


def copy_of(adata: AnnData) -> AnnData:
    """An independent in-memory copy of ``adata`` (a backed AnnData is loaded, as ``copy=True`` promises)."""
    return adata.to_memory() if adata.isbacked else adata.copy()


def check_key_name(key_added: str) -> None:
    """Raise unless ``key_added`` is a non-empty string usable as an HDF5 key."""
    if not isinstance(key_added, str) or not key_added or "/" in key_added:
        raise ValueError(f"key_added must be a non-empty string without '/', got {key_added!r}.")


def clear_result(
    adata: AnnData, key_added: str, *, obs: tuple[str, ...] = (), obsm: tuple[str, ...] = ()
) -> None:
    """Remove every output a previous run with ``key_added`` wrote.

    The outputs are those listed in its ``.uns[key_added]["keys"]``, plus ``obs``/``obsm`` (the keys the
    verb writes by name, for results written before the list was kept).
    """
    previous = adata.uns.get(key_added)
    written = previous.get("keys", {}) if isinstance(previous, dict) else {}
    for column in {*obs, *written.get("obs", [])}:
        if column in adata.obs.columns:
            del adata.obs[column]
    for key in {*obsm, *written.get("obsm", [])}:
        if key in adata.obsm:
            del adata.obsm[key]
    adata.uns.pop(key_added, None)


def write_result(
    adata: AnnData,
    key_added: str,
    *,
    params: dict[str, Any],
    start: float,
    obs: dict[str, Any] | None = None,
    obsm: dict[str, Any] | None = None,
    uns: dict[str, Any] | None = None,
) -> None:
    """Write one verb's result under ``key_added``: the one writer of every verb.

    Everything a previous run with the same key wrote is removed first, so no stale key survives a
    re-run. ``.uns[key_added]`` holds ``params`` (plain types), the verb's other ``uns`` entries (arrays
    stay arrays),
    ``seconds`` (since ``start``, a :func:`time.perf_counter` value), ``version`` (of sctransfer) and
    ``keys`` (the ``.obs``/``.obsm`` keys written, so that the next run can remove them).
    """
    from .. import __version__

    obs, obsm = dict(obs or {}), dict(obsm or {})
    clear_result(adata, key_added, obs=tuple(obs), obsm=tuple(obsm))
    for column, values in obs.items():
        adata.obs[column] = values if isinstance(values, pd.Categorical | pd.Series) else np.asarray(values)
    for key, values in obsm.items():
        adata.obsm[key] = np.asarray(values)
    adata.uns[key_added] = {
        "params": to_plain(params),
        **to_plain(uns or {}, keep_arrays=True),
        "seconds": time.perf_counter() - start,
        "version": __version__,
        "keys": {"obs": list(obs), "obsm": list(obsm)},
    }


def write_transfer_result(
    adata: AnnData,
    keys: LabelTransferKeys,
    *,
    codes: np.ndarray,
    confidence: np.ndarray,
    classes: list[str],
    proba: np.ndarray,
    embedding: np.ndarray | None,
    extra_obs: dict[str, np.ndarray],
    uns: dict[str, Any],
    start: float,
) -> None:
    """Write one label-transfer result under ``keys``, replacing everything a previous run wrote there.

    ``uns`` gains ``seconds`` (since ``start``, a :func:`time.perf_counter` value), ``version`` and
    ``keys`` (the ``.obs``/``.obsm`` keys written, so that a re-run can remove them).
    """
    categories = list(classes)
    codes = np.asarray(codes, dtype=np.int64)
    if (codes < 0).any():
        categories.append(UNKNOWN_LABEL)
        codes = np.where(codes < 0, len(categories) - 1, codes)
    obs: dict[str, Any] = {
        keys.label: pd.Categorical.from_codes(codes, categories=categories),
        keys.confidence: np.asarray(confidence, dtype=np.float64),
        **{keys.extra(suffix): values for suffix, values in extra_obs.items()},
    }
    # an array, not a DataFrame: class names such as "L2/3" are not valid HDF5 column keys. The column
    # order is the class order recorded in .uns[key]["classes"].
    obsm = {keys.proba: np.asarray(proba, dtype=np.float64)}
    if embedding is not None:
        obsm[keys.embedding] = embedding
    uns = dict(uns)
    params = uns.pop("params", {})
    # the standard names go too, for results written before the key list was kept
    clear_result(adata, keys.uns, obs=(keys.label, keys.confidence), obsm=(keys.proba, keys.embedding))
    write_result(adata, keys.uns, params=params, start=start, uns=uns, obs=obs, obsm=obsm)
