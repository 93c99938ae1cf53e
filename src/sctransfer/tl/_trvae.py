"""``sct.tl.trvae``: train trVAE on one AnnData and write its latent representation."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pandas as pd
from anndata import AnnData

from .._utils._anndata import copy_of, to_plain
from .._utils._docs import inject_docs
from .._utils._keys import TRVAE_EMBEDDING_KEY, embedding_uns_key
from .._utils._logging import logger
from .._utils._validation import check_nonempty, check_obs_key, check_writable, get_matrix

if TYPE_CHECKING:
    from ..models.trvae import TRVAE


@inject_docs()
def trvae(
    adata: AnnData,
    *,
    condition_key: str,
    layer: str | None = None,
    preset: str = "default",
    max_epochs: int | None = None,
    batch_size: int | None = None,
    accelerator: str | None = None,
    key_added: str = TRVAE_EMBEDDING_KEY,
    random_state: int = 0,
    copy: bool = False,
    enable_progress_bar: bool | None = None,
    **config: Any,
) -> TRVAE | tuple[AnnData, TRVAE]:
    """Train trVAE across the conditions of ``adata`` and store its latent representation.

    Trains :class:`sctransfer.models.TRVAE` on every cell, then writes the posterior mean of ``z``. The
    returned model predicts cells under another condition with
    :meth:`~sctransfer.models.TRVAE.predict` and maps new conditions with
    :meth:`~sctransfer.models.TRVAE.load_query_data`.

    Parameters
    ----------
    adata
        Cells x genes: log-normalised values (for example 2,000 highly variable genes) for the default
        and paper presets, counts for ``preset="scarches"``.
    condition_key
        ``.obs`` column with each cell's condition (at least two conditions, no missing values).
    layer
        Layer with the values; ``None`` uses ``.X``.
    preset
        ``"default"``, ``"paper"``, ``"paper_kang"``, ``"paper_haber"`` or ``"scarches"`` (see
        :class:`~sctransfer.models.TRVAE`).
    max_epochs, batch_size
        Override the preset's values.
    accelerator
        Lightning accelerator; ``None`` uses ``sct.settings.device`` (``"auto"``: a GPU when there is one).
    key_added
        ``.obsm`` key of the latent representation; the parameters go to ``.uns`` under the same name
        without its ``"X_"`` prefix.
    {random_state}
    copy
        If ``False`` (default) write into ``adata`` and return the model; if ``True`` leave ``adata``
        untouched and return the annotated copy with the model.
    enable_progress_bar
        Show a progress bar over the epochs (on stderr); ``None`` follows ``sct.settings.progress_bar``.
    **config
        Other settings of :class:`~sctransfer.models.TRVAE` (fields of
        :class:`~sctransfer.models.trvae.TRVAEConfig`, for example ``mmd_on="z"``).

    Returns
    -------
    The trained model (with ``copy=True``: ``(annotated copy, model)``). Sets:

    ``.obsm[key_added]``
        Posterior mean of the latent ``z`` of every cell (``n_cells x n_latent``).
    ``.uns[key_added without "X_"]``
        ``params`` (every setting, resolved from the preset, plus ``condition_key``, ``layer``,
        ``random_state``), ``conditions`` (in code order) and ``training`` (epochs, best epoch,
        seconds, split sizes).

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> import sctransfer as sct
    >>> rng = np.random.default_rng(0)
    >>> adata = ad.AnnData(rng.gamma(2.0, 1.0, (120, 30)).astype(np.float32))
    >>> adata.obs["stim"] = np.repeat(["CTRL", "STIM"], 60)
    >>> model = sct.tl.trvae(adata, condition_key="stim", max_epochs=2, enable_progress_bar=False,
    ...                      encoder_layers=[16], decoder_layers=[16], n_latent=4)
    >>> adata.obsm["X_trvae"].shape
    (120, 4)
    """
    from ..models.trvae import TRVAE

    check_nonempty(adata, "adata")
    check_writable(adata, "adata", copy=copy)
    check_obs_key(adata, condition_key, "adata", what="condition")
    X = get_matrix(adata, layer, "adata")
    if copy:
        adata = copy_of(adata)
        X = get_matrix(adata, layer, "adata")
    # the model registers its own light AnnData (the same matrix, not a copy) so that scvi-tools' set-up
    # columns never land in the user's object
    obs = pd.DataFrame({condition_key: adata.obs[condition_key].to_numpy()}, index=adata.obs_names)
    work = AnnData(X=X, obs=obs, var=pd.DataFrame(index=adata.var_names.copy()))
    TRVAE.setup_anndata(work, condition_key=condition_key)
    start = time.perf_counter()
    model = TRVAE(work, preset=preset, **config)
    model.train(
        max_epochs, batch_size=batch_size, random_state=random_state, accelerator=accelerator,
        enable_progress_bar=enable_progress_bar,
    )  # fmt: skip
    latent = model.get_latent_representation()
    seconds = time.perf_counter() - start
    adata.obsm[key_added] = latent
    params = {
        "condition_key": condition_key,
        "layer": layer,
        "preset": preset,
        "random_state": random_state,
        "key_added": key_added,
        **model.config_,
    }
    adata.uns[embedding_uns_key(key_added)] = to_plain(
        {
            "params": params,
            "conditions": list(model.conditions_),
            "training": {k: v for k, v in model.train_info_.items() if v is not None},
            "seconds": seconds,
        }
    )
    logger.info("trVAE: latent of %d cells written to .obsm[%r] in %.1f s", adata.n_obs, key_added, seconds)
    return (adata, model) if copy else model
