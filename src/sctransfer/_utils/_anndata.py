"""Helpers that read from and write to AnnData (the only place results are written)."""

from __future__ import annotations

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
    rejection_label: str = UNKNOWN_LABEL,
) -> None:
    """Write transferred labels into ``adata``.

    ``codes`` index ``classes``; ``-1`` marks a rejected cell, written as ``rejection_label``
    (``"unknown"`` unless a method names its own, as CaSTLe's ``"Not Classified"``).
    """
    categories = list(classes)
    codes = np.asarray(codes, dtype=np.int64)
    if (codes < 0).any():
        categories.append(rejection_label)
        codes = np.where(codes < 0, len(categories) - 1, codes)
    adata.obs[keys.label] = pd.Categorical.from_codes(codes, categories=categories)
    adata.obs[keys.confidence] = np.asarray(confidence, dtype=np.float64)
    if proba is not None:
        # an array, not a DataFrame: class names such as "L2/3" are not valid HDF5 column keys. The column
        # order is the class order recorded in .uns[key]["classes"].
        adata.obsm[keys.proba] = np.asarray(proba, dtype=np.float64)
    if uns is not None:
        adata.uns[keys.uns] = to_plain(uns)
