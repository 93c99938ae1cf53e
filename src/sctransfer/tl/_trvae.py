"""``sct.tl.trvae``: train trVAE on one AnnData and write its latent representation."""

from __future__ import annotations

import os
import time
from typing import Any

import pandas as pd
from anndata import AnnData

from .._utils._anndata import check_key_name, copy_of, write_result
from .._utils._docs import inject_docs
from .._utils._keys import TRVAE_KEY, embedding_uns_key
from .._utils._logging import logger
from .._utils._save import check_model_path, save_trained
from .._utils._validation import (
    check_nonempty,
    check_obs_key,
    check_writable,
    get_matrix,
)
from ..models.trvae._config import TRVAEPreset


@inject_docs()
def trvae(
    adata: AnnData,
    *,
    condition_key: str,
    layer: str | None = None,
    preset: TRVAEPreset = "default",
    max_epochs: int | None = None,
    batch_size: int | None = None,
    accelerator: str | None = None,
    key_added: str = TRVAE_KEY,
    random_state: int = 0,
    save_model: str | os.PathLike[str] | None = None,
    copy: bool = False,
    enable_progress_bar: bool | None = None,
    **config: Any,
) -> AnnData | None:
    """Train trVAE across the conditions of ``adata`` and store its latent representation.

    Trains :class:`sctransfer.models.TRVAE` on every cell, then writes the posterior mean of ``z``. To
    predict cells under another condition (:meth:`~sctransfer.models.TRVAE.predict`) or map new
    conditions (:meth:`~sctransfer.models.TRVAE.load_query_data`), keep the model with ``save_model`` and
    read it back with :meth:`~sctransfer.models.TRVAE.load`, or train the class itself (see its example).

    Parameters
    ----------
    adata
        Cells x genes: log-normalised values (for example 2,000 highly variable genes) for the default,
        faithful and paper presets, counts for ``preset="scarches"``. A backed or dask matrix is read by
        blocks of rows while training, never whole (see :class:`~sctransfer.models.TRVAE`).
    condition_key
        ``.obs`` column with each cell's condition (at least two conditions, no missing values).
    layer
        Layer with the values; ``None`` uses ``.X``.
    preset
        ``"default"``, ``"faithful"`` (the paper's Kang notebook; ``"paper_kang"`` is its deprecated
        name), ``"paper"``, ``"paper_haber"`` or ``"scarches"`` (see :class:`~sctransfer.models.TRVAE`).
    max_epochs, batch_size
        Override the preset's values.
    accelerator
        Lightning accelerator; ``None`` uses ``sct.settings.device`` (``"auto"``: a GPU when there is one).
    key_added
        Name of the results: ``.obsm[f"X_{{key_added}}"]`` and ``.uns[key_added]`` (a leading ``"X_"`` is
        dropped, so ``"X_trvae"`` names the same results as ``"trvae"``).
    {random_state}
    {save_model}
    {copy}
    enable_progress_bar
        Show a progress bar over the epochs (on stderr); ``None`` follows ``sct.settings.progress_bar``.
    **config
        Other settings of :class:`~sctransfer.models.TRVAE` (fields of
        :class:`~sctransfer.models.trvae.TRVAEConfig`, for example ``mmd_on="z"``).

    Returns
    -------
    ``None``, or the annotated copy with ``copy=True``. Sets:

    ``.obsm[f"X_{{key_added}}"]``
        Posterior mean of the latent ``z`` of every cell (``n_cells x n_latent``).
    ``.uns[key_added]``
        ``params`` (every setting, resolved from the preset, plus ``condition_key``, ``layer``,
        ``random_state``), ``conditions`` (in code order), ``training`` (epochs, best epoch, seconds,
        split sizes), ``seconds``, ``version`` and ``keys``.

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> import sctransfer as sct
    >>> rng = np.random.default_rng(0)
    >>> adata = ad.AnnData(rng.gamma(2.0, 1.0, (120, 30)).astype(np.float32))
    >>> adata.obs["stim"] = np.repeat(["CTRL", "STIM"], 60)
    >>> sct.tl.trvae(adata, condition_key="stim", max_epochs=2, enable_progress_bar=False,
    ...              encoder_layers=[16], decoder_layers=[16], n_latent=4)
    >>> adata.obsm["X_trvae"].shape
    (120, 4)
    """
    from ..models.trvae import TRVAE

    check_nonempty(adata, "adata")
    check_writable(adata, "adata", copy=copy)
    model_path = check_model_path(save_model)
    check_obs_key(adata, condition_key, "adata", what="condition")
    key = embedding_uns_key(key_added)
    check_key_name(key)
    target = copy_of(adata) if copy else adata
    start = time.perf_counter()
    # the model registers its own light AnnData (the same matrix, not a copy) so that scvi-tools' set-up
    # columns never land in the user's object
    obs = pd.DataFrame({condition_key: target.obs[condition_key].to_numpy()}, index=target.obs_names)
    # a backed or dask matrix is not read whole: the model reads it by blocks of rows (see TRVAE.train)
    X = get_matrix(target, layer, "adata")
    work = AnnData(X=X, obs=obs, var=pd.DataFrame(index=target.var_names.copy()))
    TRVAE.setup_anndata(work, condition_key=condition_key)
    model = TRVAE(work, preset=preset, **config)
    model.train(
        random_state=random_state, max_epochs=max_epochs, batch_size=batch_size, accelerator=accelerator,
        enable_progress_bar=enable_progress_bar,
    )  # fmt: skip
    latent = model.get_latent_representation()
    save_trained(model, model_path)
    params = {
        "condition_key": condition_key,
        "layer": layer,
        "preset": model.preset_,
        "random_state": random_state,
        "save_model": None if model_path is None else str(model_path),
        "key_added": key,
        **model.config_,
    }
    write_result(
        target, key, params=params, start=start, obsm={f"X_{key}": latent},
        uns={
            "conditions": list(model.conditions_),
            "training": {k: v for k, v in model.train_info_.items() if v is not None},
        },
    )  # fmt: skip
    logger.info(
        "trVAE: latent of %d cells written to .obsm['X_%s'] in %.1f s",
        target.n_obs,
        key,
        target.uns[key]["seconds"],
    )
    return target if copy else None
