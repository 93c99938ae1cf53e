"""Helpers that read from and write to AnnData (the only place results are written)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ._keys import UNKNOWN_LABEL, LabelTransferKeys


def to_plain(value: Any) -> Any:
    """Convert params to types that ``write_h5ad`` accepts (no tuples, no NumPy scalars, no None in lists)."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def write_labels(
    adata: AnnData,
    keys: LabelTransferKeys,
    *,
    codes: np.ndarray,
    confidence: np.ndarray,
    classes: list[str],
    proba: np.ndarray | None = None,
    uns: dict[str, Any] | None = None,
) -> None:
    """Write transferred labels into ``adata``.

    ``codes`` index ``classes``; ``-1`` marks a rejected cell, written as ``"unknown"``.
    """
    categories = list(classes)
    codes = np.asarray(codes, dtype=np.int64)
    if (codes < 0).any():
        categories.append(UNKNOWN_LABEL)
        codes = np.where(codes < 0, len(categories) - 1, codes)
    adata.obs[keys.label] = pd.Categorical.from_codes(codes, categories=categories)
    adata.obs[keys.confidence] = np.asarray(confidence, dtype=np.float64)
    if proba is not None:
        # an array, not a DataFrame: class names such as "L2/3" are not valid HDF5 column keys. The column
        # order is the class order recorded in .uns[key]["classes"].
        adata.obsm[keys.proba] = np.asarray(proba, dtype=np.float64)
    if uns is not None:
        adata.uns[keys.uns] = to_plain(uns)


def check_key_name(key_added: str) -> None:
    """Raise unless ``key_added`` is a non-empty string usable as an HDF5 key."""
    if not isinstance(key_added, str) or not key_added or "/" in key_added:
        raise ValueError(f"key_added must be a non-empty string without '/', got {key_added!r}.")


def clear_result(adata: AnnData, key_added: str) -> None:
    """Remove every output a previous run with ``key_added`` wrote (as listed in its ``.uns`` entry)."""
    keys = LabelTransferKeys(key_added)
    previous = adata.uns.get(keys.uns)
    written = previous.get("keys", {}) if isinstance(previous, dict) else {}
    for column in {keys.label, keys.confidence, *written.get("obs", [])}:
        if column in adata.obs.columns:
            del adata.obs[column]
    for key in {keys.proba, keys.embedding, *written.get("obsm", [])}:
        if key in adata.obsm:
            del adata.obsm[key]
    adata.uns.pop(keys.uns, None)


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
    from .. import __version__

    clear_result(adata, keys.key_added)
    obs_keys = [keys.label, keys.confidence]
    obsm_keys = [keys.proba]
    for suffix, values in extra_obs.items():
        adata.obs[keys.extra(suffix)] = np.asarray(values)
        obs_keys.append(keys.extra(suffix))
    if embedding is not None:
        adata.obsm[keys.embedding] = np.asarray(embedding)
        obsm_keys.append(keys.embedding)
    uns = {
        **uns,
        "seconds": time.perf_counter() - start,
        "version": __version__,
        "keys": {"obs": obs_keys, "obsm": obsm_keys},
    }
    write_labels(adata, keys, codes=codes, confidence=confidence, classes=classes, proba=proba, uns=uns)
