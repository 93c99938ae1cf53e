"""``sct.models.TRVAE``: conditional VAE with MMD for condition transfer and reference mapping."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from lightning.pytorch.callbacks import EarlyStopping
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField

from ..._utils._logging import logger
from ..._utils._torch import register_fields, run_training
from ..._utils._validation import (
    check_choice,
    check_int,
    check_nonempty,
    check_obs_key,
    check_values,
    gene_positions,
    get_matrix,
    take_columns,
)
from .._base import NeuralModel
from . import _data
from ._config import PREDICT_METHODS, PRESETS, RENAMED_PRESETS, PredictMethod, TRVAEPreset
from ._data import TRVAEDataModule, dense_rows
from ._module import TRVAEModule
from ._plan import RestoreBest, TRVAETrainingPlan

CONDITION_KEY = "condition"

# settings that go to the torch module (the rest drive training)
_MODULE_FIELDS = (
    "n_latent", "encoder_layers", "decoder_layers", "recon_loss", "kl_reduction", "alpha", "beta", "eta",
    "mmd_on", "mmd_after_dropout", "kernel_reduce", "estimator", "mmd_boundary", "legacy_pairing", "norm",
    "activation", "leaky_slope", "dropout", "bn_momentum", "bn_eps", "encoder_bias", "decoder_bias",
    "output_activation", "var_eps", "n_reference_conditions", "freeze_expression",
)  # fmt: skip


class TRVAE(NeuralModel):
    """trVAE: a conditional VAE whose conditions are aligned by an MMD penalty.

    The condition (for example CTRL/STIM, or the batch) enters the first layer of the encoder and of the
    decoder. An MMD term pulls the cells of different conditions together on the first decoder layer
    (``mmd_on="y"``, the paper) or in the latent space (``mmd_on="z"``). :meth:`predict` transfers cells
    between conditions: it encodes them under their source condition and decodes them under the target
    (``method="decode"``), or, with the default preset, adds the decoded difference between the target and
    the source to each cell's own values (``method="shift"``).

    Register the data with :meth:`setup_anndata` first, or pass ``condition_key`` here.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata` (or pass ``condition_key`` to register it here):
        log-normalised values for the Gaussian losses (``recon_loss="sse"``/``"mse"``), counts for ``"nb"``.
        A matrix opened with ``backed="r"`` or held as a dask array is never read whole: training reads
        blocks of contiguous rows and shuffles the cells of a buffer of random blocks at a time (the
        in-memory draw when one buffer holds every cell), and inference reads by minibatches; the
        "Scaling to large data" page gives the sizes and what they cost.
    condition_key, layer
        If given, call :meth:`setup_anndata` with them first.
    preset
        Named parameter set (:data:`~sctransfer.models.trvae.PRESETS`): ``"default"``, ``"faithful"``
        (the paper's Kang notebook, formerly ``"paper_kang"``), ``"paper"`` (the paper's script),
        ``"paper_haber"`` (the paper's Haber notebook) or ``"scarches"``. See the "differences" page of
        the documentation.
    conditions
        All condition names, in code order; ``None`` uses the sorted values of the condition column.
    **config
        Overrides of single settings of the preset (fields of :class:`TRVAEConfig`), for example
        ``mmd_on="z"`` or ``legacy_pairing=True``.

    Examples
    --------
    Train, predict the control cells under the stimulus, and keep the model (``sct.tl.trvae`` writes
    the latent representation only):

    >>> import tempfile
    >>> import numpy as np, anndata as ad
    >>> import sctransfer as sct
    >>> rng = np.random.default_rng(0)
    >>> adata = ad.AnnData(rng.gamma(2.0, 1.0, (120, 30)).astype(np.float32))
    >>> adata.obs["stim"] = np.repeat(["CTRL", "STIM"], 60)
    >>> model = sct.models.TRVAE(adata, condition_key="stim", encoder_layers=[16], decoder_layers=[16], n_latent=4)
    >>> model.train(max_epochs=2, enable_progress_bar=False)
    >>> predicted = model.predict(adata[adata.obs["stim"] == "CTRL"], target_condition="STIM")
    >>> predicted.shape
    (60, 30)
    >>> with tempfile.TemporaryDirectory() as directory:
    ...     model.save(directory, overwrite=True)
    ...     loaded = sct.models.TRVAE.load(directory, adata=adata)
    >>> loaded.conditions_
    ['CTRL', 'STIM']
    """

    _module_cls = TRVAEModule
    presets = PRESETS
    renamed_presets = RENAMED_PRESETS

    def __init__(
        self,
        adata: AnnData,
        *,
        condition_key: str | None = None,
        layer: str | None = None,
        preset: TRVAEPreset = "default",
        conditions: list[str] | None = None,
        **config: Any,
    ) -> None:
        if condition_key is not None:
            self.setup_anndata(adata, condition_key=condition_key, layer=layer)
        elif layer is not None:
            raise ValueError(
                "layer= needs condition_key= (or register the data with TRVAE.setup_anndata first)."
            )
        super().__init__(adata)
        for key in ("encoder_layers", "decoder_layers"):
            if key in config:
                config[key] = tuple(check_int(v, key) for v in config[key])
        cfg = self._set_config(preset, config)
        check_choice(cfg.predict_method, "predict_method", PREDICT_METHODS)
        if not 0 <= cfg.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {cfg.validation_fraction}.")
        self.condition_key_ = self.adata_manager.registry["setup_args"]["condition_key"]
        self.layer_ = self.adata_manager.registry["setup_args"]["layer"]
        observed = sorted(str(c) for c in pd.unique(self.adata.obs[self.condition_key_].dropna()))
        if conditions is None:
            conditions = observed
        conditions = [str(c) for c in conditions]
        if len(set(conditions)) != len(conditions):
            raise ValueError(f"conditions has duplicates: {conditions}.")
        unseen = sorted(set(observed) - set(conditions))
        if unseen:
            raise ValueError(f"the data has conditions {unseen} that are not in conditions={conditions}.")
        if len(conditions) < 2:
            raise ValueError(
                f"{self.condition_key_!r} holds a single condition ({conditions}); trVAE needs at least two "
                "(for example control and stimulated cells, or two batches)."
            )
        empty = [c for c in conditions[cfg.n_reference_conditions :] if c not in observed]
        if empty:
            raise ValueError(
                f"conditions {empty} have no cells in the training data, so the model cannot learn them; "
                "drop them from conditions= (a new condition is added later with TRVAE.load_query_data, "
                "on its cells)."
            )
        X = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        check_values(X, "the training data", nonnegative=cfg.recon_loss == "nb")
        self.conditions_ = conditions
        self.genes_ = [str(g) for g in self.adata.var_names]
        self.train_info_: dict[str, Any] = {}
        self.module = self._build_module()
        self._model_summary_string = (
            f"TRVAE ({self.preset_} preset): {len(self.genes_)} genes, conditions {conditions}, "
            f"latent {cfg.n_latent}, {cfg.recon_loss} loss, MMD on {cfg.mmd_on}"
        )
        condition_key = layer = None  # already registered; loading a saved model registers from its registry
        preset = self.preset_
        # every resolved setting, not only the overrides: a saved model reloads with its own settings when a
        # later version changes a preset
        config = dict(self.config_)
        self.init_params_ = self._get_init_params(locals())

    def _build_module(self) -> TRVAEModule:
        cfg = self.config
        kwargs = {name: getattr(cfg, name) for name in _MODULE_FIELDS}
        return TRVAEModule(n_input=len(self.genes_), n_conditions=len(self.conditions_), **kwargs)

    # ---- set-up -------------------------------------------------------------------------------
    @classmethod
    def setup_anndata(
        cls, adata: AnnData, *, condition_key: str, layer: str | None = None, **kwargs: Any
    ) -> None:
        """Register an AnnData for trVAE.

        Parameters
        ----------
        adata
            Cells x genes.
        condition_key
            ``.obs`` column with each cell's condition (no missing values).
        layer
            Layer with the values; ``None`` uses ``.X``.
        """
        values = check_obs_key(adata, condition_key, "adata", what="condition")
        if values.isna().any():
            raise ValueError(
                f"adata.obs[{condition_key!r}] has {int(values.isna().sum())} missing values; give every cell "
                "a condition or drop those cells."
            )
        get_matrix(adata, layer, "adata")
        setup_method_args = cls._get_setup_method_args(**locals())
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            CategoricalObsField(CONDITION_KEY, condition_key),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        register_fields(adata_manager, adata, **kwargs)
        cls.register_manager(adata_manager)

    # ---- helpers ------------------------------------------------------------------------------
    def _condition_codes(self, names: pd.Series | np.ndarray, what: str) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.conditions_)}
        names = pd.Series(np.asarray(names, dtype=object)).astype(str)
        unseen = sorted(set(names) - set(lookup))
        if unseen:
            raise ValueError(
                f"{what} {unseen} not seen in training (the model knows {self.conditions_}); map the new "
                "conditions first with TRVAE.load_query_data."
            )
        return names.map(lookup).to_numpy(dtype=np.int64)

    def _check_condition(self, name: str, what: str) -> int:
        if str(name) not in self.conditions_:
            raise ValueError(
                f"{what} {name!r} was not seen in training; choose one of {self.conditions_} (or map it "
                "first with TRVAE.load_query_data)."
            )
        return self.conditions_.index(str(name))

    def _inputs(self, adata: AnnData | None, *, need_conditions: bool = True):
        """Values on the model's genes (CSR or dense, not densified) and condition codes of ``adata``.

        A backed or dask matrix stays where it is (training and inference read it by blocks of rows),
        unless its genes must be reordered: then only the model's genes are read into memory.
        """
        if adata is None:
            adata = self.adata
        if not isinstance(adata, AnnData):
            raise TypeError(f"adata must be an AnnData object, got {type(adata).__name__}.")
        X = get_matrix(adata, self.layer_, "adata")
        idx = gene_positions(adata.var_names, self.genes_, "adata")
        if idx is not None:
            X = take_columns(X, idx, "adata")
        if sp.issparse(X):
            X = sp.csr_matrix(X)
        check_values(X, "adata", nonnegative=self.config.recon_loss == "nb")
        codes = None
        if need_conditions:
            values = check_obs_key(adata, self.condition_key_, "adata", what="condition")
            codes = self._condition_codes(values, "adata has conditions")
        return adata, X, codes

    def _split(self, codes: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        rng = np.random.default_rng(seed)
        n = codes.size
        if cfg.validation_fraction <= 0:
            return np.arange(n), np.array([], dtype=np.int64)
        if cfg.stratified_split:
            val = []
            for k in np.unique(codes):
                cells = rng.permutation(np.flatnonzero(codes == k))
                val.append(cells[: round(cfg.validation_fraction * cells.size)])
            val = np.sort(np.concatenate(val))
        else:
            val = np.sort(rng.permutation(n)[: round(cfg.validation_fraction * n)])
        train = np.setdiff1d(np.arange(n), val)
        return train, val

    # ---- training -----------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int | None = None,
        *,
        batch_size: int | None = None,
        lr: float | None = None,
        early_stopping: bool = True,
        random_state: int = 0,
        num_threads: int | None = 1,
        accelerator: str | None = None,
        devices: int | list[int] | str = "auto",
        enable_progress_bar: bool | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        """Train on the registered cells (a reference model starts from fresh weights seeded by ``random_state``).

        Parameters
        ----------
        max_epochs
            Upper bound on the epochs (the preset's ``max_epochs`` when ``None``).
        batch_size
            Cells per minibatch (the preset's ``batch_size`` when ``None``).
        lr
            Adam learning rate (the preset's ``lr`` when ``None``).
        early_stopping
            Stop after ``early_stopping_patience`` epochs without a better validation loss (when the
            preset has a patience and a validation split), with scvi-tools' early stopping.
        random_state
            Seed for the weights, the split, the minibatches and dropout.
        num_threads
            torch CPU threads while training (restored afterwards); ``None`` keeps the current setting.
        accelerator, devices
            Lightning device selection; ``accelerator=None`` uses ``sct.settings.device`` (``"auto"``
            uses a GPU when there is one).
        enable_progress_bar
            Show a progress bar over the epochs (on stderr); ``None`` follows
            ``sct.settings.progress_bar``.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`.
        """
        cfg = self.config
        epochs = cfg.max_epochs if max_epochs is None else check_int(max_epochs, "max_epochs")
        batch = cfg.batch_size if batch_size is None else check_int(batch_size, "batch_size", 2)
        lr = cfg.lr if lr is None else float(lr)
        _, X, codes = self._inputs(None)
        torch.manual_seed(random_state)
        if cfg.n_reference_conditions == 0:
            self.module = self._build_module()
        train_idx, val_idx = self._split(codes, random_state)
        dm = TRVAEDataModule(
            X, codes, train_idx, val_idx, batch_size=batch, seed=random_state, balanced=cfg.balanced_sampling
        )
        has_val = val_idx.size > 0
        plan = TRVAETrainingPlan(
            self.module, lr=lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay,
            kl_warmup_epochs=cfg.kl_warmup_epochs, lr_patience=cfg.lr_patience, lr_factor=cfg.lr_factor,
            has_validation=has_val,
        )  # fmt: skip
        callbacks = list(trainer_kwargs.pop("callbacks", []))
        restorer = None
        if has_val:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
            if early_stopping and cfg.early_stopping_patience is not None:  # scvi-tools' early stopping
                trainer_kwargs.setdefault("early_stopping", True)
                trainer_kwargs.setdefault("early_stopping_monitor", "validation_loss")
                trainer_kwargs.setdefault("early_stopping_patience", cfg.early_stopping_patience)
            if cfg.restore_best:
                restorer = RestoreBest("validation_loss")
                callbacks.append(restorer)
        if cfg.grad_clip:
            trainer_kwargs.setdefault("gradient_clip_val", cfg.grad_clip)
            trainer_kwargs.setdefault("gradient_clip_algorithm", "value")
        start = time.perf_counter()
        with warnings.catch_warnings():
            # a query model keeps its frozen batch-norm layers in eval mode on purpose
            warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
            self.module.train()
            run_training(
                self, training_plan=plan, data_splitter=dm, max_epochs=epochs, description="trVAE",
                accelerator=accelerator, devices=devices, num_threads=num_threads,
                enable_progress_bar=enable_progress_bar, callbacks=callbacks, **trainer_kwargs,
            )  # fmt: skip
        seconds = time.perf_counter() - start
        self.module.eval()
        stopper = next((c for c in self.trainer.callbacks if isinstance(c, EarlyStopping)), None)
        self.train_info_ = {
            "epochs": int(self.trainer.current_epoch),
            "best_epoch": None if restorer is None else int(restorer.best_epoch) + 1,
            "stopped_early": bool(stopper is not None and stopper.stopped_epoch > 0),
            "n_train": int(train_idx.size),
            "n_validation": int(val_idx.size),
            "seconds": float(seconds),
            "random_state": int(random_state),
        }
        logger.info(
            "trVAE: %d epochs in %.1f s (best epoch %s)",
            self.train_info_["epochs"], seconds, self.train_info_["best_epoch"],
        )  # fmt: skip
        # every condition's mean z over the registered cells, for predict(latent_delta=True); saved with
        # the model, so a model loaded onto other cells keeps its training cells' means
        rows = _data.BLOCK_ROWS  # read as training reads: blocks of rows
        z = self._forward(X, codes, codes, sample=False, output="z", batch_size=rows, random_state=0)
        means = np.full((len(self.conditions_), z.shape[1]), np.nan)
        for c in np.unique(codes):
            means[c] = z[codes == c].mean(axis=0, dtype=np.float64)
        self.latent_means_ = means

    # ---- inference ----------------------------------------------------------------------------
    def _batches(self, n: int, batch_size: int):
        for start in range(0, n, batch_size):
            yield np.arange(start, min(start + batch_size, n))

    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        *,
        give_mean: bool = True,
        representation: str = "z",
        batch_size: int = 1024,
        random_state: int = 0,
    ) -> np.ndarray:
        """Latent representation of every cell.

        Parameters
        ----------
        adata
            AnnData with the model's genes (matched by name) and condition column; ``None`` uses the
            model's AnnData.
        give_mean
            Posterior mean of ``z`` (default); ``False`` draws one sample per cell.
        representation
            ``"z"`` (latent space) or ``"y"`` (first decoder layer, decoded under the cell's own condition;
            the layer the paper's MMD aligns).
        batch_size
            Cells processed at a time.
        random_state
            Seed of the samples when ``give_mean=False``.

        Returns
        -------
        Array of shape ``(n_cells, n_latent)`` (``"z"``) or ``(n_cells, decoder_layers[0])`` (``"y"``).
        """
        if representation not in ("z", "y"):
            raise ValueError(f"representation must be 'z' or 'y', got {representation!r}.")
        if adata is not None:
            check_nonempty(adata, "adata")
        _, X, codes = self._inputs(adata)
        return self._forward(X, codes, codes, sample=not give_mean, output=representation,
                             batch_size=batch_size, random_state=random_state)  # fmt: skip

    def _forward(
        self,
        X,
        source: np.ndarray,
        target: np.ndarray,
        *,
        sample: bool,
        output: str,
        batch_size: int,
        random_state: int,
        offsets: np.ndarray | None = None,
    ) -> np.ndarray:
        """Encode ``X`` under ``source`` and return ``z``, or decode under ``target`` (``"mean"``/``"y"``).

        ``offsets`` (conditions x latent) adds row ``source`` to every cell's ``z`` before decoding.
        """
        self.module.eval()
        device = next(self.module.parameters()).device
        shift = None if offsets is None else torch.as_tensor(offsets, dtype=torch.float32, device=device)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(random_state)
        out: np.ndarray | None = None  # filled minibatch by minibatch: no list of blocks to concatenate
        try:
            with torch.inference_mode():
                for idx in self._batches(X.shape[0], batch_size):
                    x = torch.as_tensor(dense_rows(X, idx), device=device)
                    s = torch.as_tensor(source[idx], device=device)
                    inf = self.module.inference(x, s, sample=sample)
                    if output == "z":
                        block = inf["z"]
                    else:
                        t = torch.as_tensor(target[idx], device=device)
                        z = inf["z"] if shift is None else inf["z"] + shift[s]
                        gen = self.module.generative(z, t, inf["library"])
                        block = gen["y" if output == "y" else "mean"]
                    if out is None:
                        out = np.empty((X.shape[0], block.shape[1]), dtype=np.float32)
                    out[idx[0] : idx[-1] + 1] = block.cpu().numpy()
        finally:
            torch.random.set_rng_state(generator_state)
        return out

    def predict(
        self,
        adata: AnnData | None = None,
        *,
        target_condition: str,
        source_condition: str | None = None,
        method: PredictMethod | None = None,
        latent_delta: bool = False,
        sample: bool = False,
        batch_size: int = 1024,
        random_state: int = 0,
    ) -> AnnData:
        """Transfer cells to another condition: encode under the source, decode under the target.

        Parameters
        ----------
        adata
            Cells to transfer, with the model's genes (matched by name); ``None`` uses the model's AnnData.
        target_condition
            Condition to decode under (one of the training conditions).
        source_condition
            Condition to encode under; ``None`` uses each cell's own condition from the condition column.
        method
            ``"decode"`` returns the values decoded under the target (trVAE's transfer); ``"shift"`` each
            cell's own values plus the difference between the cell decoded under the target and under
            the source; ``None`` the preset's ``predict_method`` (``"shift"`` for ``"default"``,
            ``"decode"`` for every other preset). The shift keeps what the decoder does not reconstruct
            of the cell and predicts only the response; it is clipped at 0 when the model's output is
            non-negative (ReLU or softplus output, or ``"nb"``).
        latent_delta
            Before decoding under the target, add to each cell's ``z`` the difference between the mean
            ``z`` of the training cells of the target condition and that of the cell's source condition
            (scGen's latent arithmetic, here with trVAE's conditional decoder). With ``"shift"`` the
            decoding under the source keeps the cell's own ``z``. The MMD pulls the conditions' latent
            distributions together, but not their means where the conditions' cell types differ in
            proportion (for example a type held out of one condition). See ``docs/differences/trvae.md``
            for what it changes on Kang.
        sample
            Decode one sample of ``z`` per cell instead of the posterior mean (with ``"shift"``, both
            decodings use the same sample).
        batch_size
            Cells processed at a time.
        random_state
            Seed of the samples when ``sample=True``.

        Returns
        -------
        A new AnnData (the input is not changed) with the predicted values in ``.X`` (dense;
        log-normalised values for the Gaussian losses, expected counts at each cell's own library size
        for ``"nb"``), the input's ``.obs`` with ``obs[condition_key]`` set to the target and
        ``obs["source_condition"]`` holding the source, and ``.var`` indexed by the model's genes.
        ``.uns["predict_method"]`` records the method used and ``.uns["latent_delta"]`` whether the
        latent difference was added.
        """
        method = self.config.predict_method if method is None else method
        check_choice(method, "method", PREDICT_METHODS)
        target = self._check_condition(target_condition, "target_condition")
        adata_in, X, _ = self._inputs(adata, need_conditions=False)
        n = X.shape[0]
        if n == 0:
            raise ValueError(
                "adata has no cells to predict (for example no cells of the source condition were "
                "selected); pass at least one cell."
            )
        if source_condition is None:
            values = check_obs_key(adata_in, self.condition_key_, "adata", what="condition")
            source = self._condition_codes(values, "adata has conditions")
        else:
            source = np.full(n, self._check_condition(source_condition, "source_condition"), dtype=np.int64)
        settings = {"sample": sample, "output": "x", "batch_size": batch_size, "random_state": random_state}
        offsets = self._latent_offsets(target, source) if latent_delta else None
        pred = self._forward(X, source, np.full(n, target, dtype=np.int64), offsets=offsets, **settings)
        if method == "shift":
            # the same z (posterior mean, or the same seeded sample) decoded under the source
            pred -= self._forward(X, source, source, **settings)
            for idx in self._batches(n, batch_size):
                pred[idx] += dense_rows(X, idx)
            if self.module.nonnegative_output:
                np.maximum(pred, 0.0, out=pred)
        obs = adata_in.obs.copy()
        obs["source_condition"] = pd.Categorical(
            np.asarray(self.conditions_, dtype=object)[source], categories=self.conditions_
        )
        obs[self.condition_key_] = pd.Categorical([self.conditions_[target]] * n, categories=self.conditions_)
        return AnnData(
            X=pred,
            obs=obs,
            var=pd.DataFrame(index=pd.Index(self.genes_)),
            uns={"predict_method": method, "latent_delta": bool(latent_delta)},
        )

    def _latent_offsets(self, target: int, source: np.ndarray) -> np.ndarray:
        """Per source condition, the target's mean ``z`` minus the source's (``conditions x latent``)."""
        means = getattr(self, "latent_means_", None)
        if means is None:
            raise ValueError(
                "latent_delta=True needs the conditions' mean latent codes, which a model records when it "
                "is trained; this model has none (trained with an earlier version): train it again."
            )
        used = np.unique(np.append(source, target))
        empty = [self.conditions_[c] for c in used if np.isnan(means[c]).any()]
        if empty:
            raise ValueError(
                f"latent_delta=True needs training cells of every condition involved; the model was trained "
                f"without cells of {empty}. Use latent_delta=False for them."
            )
        return (means[target][None, :] - means).astype(np.float32)

    # ---- query mapping ------------------------------------------------------------------------
    @classmethod
    def load_query_data(
        cls,
        adata: AnnData,
        reference_model: TRVAE,
        *,
        freeze_expression: bool = True,
        remove_dropout: bool = True,
        **config: Any,
    ) -> TRVAE:
        """A model for new conditions built on a trained reference ("architecture surgery").

        The query's conditions that the reference has not seen are appended. Every reference weight is
        copied and frozen, except the condition weights of the first encoder and decoder layers (and the
        NB dispersion), of which only the new conditions' rows are trained; batch-norm layers keep the
        reference statistics. Train the returned model on the query cells with :meth:`train`; afterwards
        it maps reference and query cells into one latent space.

        Parameters
        ----------
        adata
            Query cells, with the reference's condition column and genes (reordered by name when needed;
            a new AnnData is then registered, and the input is not changed).
        reference_model
            A trained :class:`TRVAE`.
        freeze_expression
            ``False`` also trains the first encoder and decoder layers (all their weights).
        remove_dropout
            Train the query model without dropout.
        **config
            Overrides of training settings (for example ``max_epochs=100``).

        Returns
        -------
        The query model (not trained yet).
        """
        if not isinstance(reference_model, TRVAE):
            raise TypeError(f"reference_model must be a TRVAE, got {type(reference_model).__name__}.")
        if not reference_model.is_trained_:
            raise ValueError("the reference model is not trained; call reference_model.train() first.")
        key, layer = reference_model.condition_key_, reference_model.layer_
        values = check_obs_key(adata, key, "the query", what="condition")
        idx = gene_positions(adata.var_names, reference_model.genes_, "the query")
        if idx is not None:
            adata = adata[:, idx].copy()
        new = sorted(set(values.astype(str)) - set(reference_model.conditions_))
        conditions = [*reference_model.conditions_, *new]
        cls.setup_anndata(adata, condition_key=key, layer=layer)
        settings = {
            k: v for k, v in reference_model.config_.items() if k not in {"encoder_layers", "decoder_layers"}
        }
        settings["encoder_layers"] = list(reference_model.config_["encoder_layers"])
        settings["decoder_layers"] = list(reference_model.config_["decoder_layers"])
        if remove_dropout:
            settings["dropout"] = 0.0
        settings.update(config)
        settings["n_reference_conditions"] = len(reference_model.conditions_)
        settings["freeze_expression"] = freeze_expression
        model = cls(adata, preset=reference_model.preset_, conditions=conditions, **settings)
        ref_state = reference_model.module.state_dict()
        state = model.module.state_dict()
        with torch.no_grad():
            for name, tensor in state.items():
                ref = ref_state[name].to(tensor.device)
                if ref.shape == tensor.shape:
                    tensor.copy_(ref)
                elif name.endswith("condition_weight"):
                    tensor[: ref.shape[0]] = ref
                elif name == "theta":
                    tensor[:, : ref.shape[1]] = ref
                else:  # pragma: no cover - architecture mismatch
                    raise ValueError(
                        f"cannot copy reference weight {name}: {tuple(ref.shape)} vs {tuple(tensor.shape)}"
                    )
        model.module.load_state_dict(state)
        model.reference_conditions_ = list(reference_model.conditions_)
        logger.info("trVAE query model: new conditions %s on top of %s", new, reference_model.conditions_)
        return model

    def __repr__(self) -> str:
        return self._model_summary_string
