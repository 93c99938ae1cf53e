"""``sct.models.BERMUDA``: batch alignment by an autoencoder with MMD between matched clusters."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
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
    gene_positions,
    get_matrix,
)
from ...kernels._metaneighbor import metaneighbor, select_cluster_pairs
from .._base import NeuralModel
from ._config import PRESETS, BERMUDAPreset
from ._data import SAMPLERS, ClusterBalancedDataModule, epoch_steps
from ._module import BATCH_CODE_KEY, CLUSTER_CODE_KEY, BERMUDAModule, BERMUDAResidualModule
from ._plan import BERMUDATrainingPlan, PlateauStopping
from ._preprocess import check_preprocessing, log_normalised, preprocess

#: cells above which ``metaneighbor="auto"`` uses the low-memory version
EXACT_METANEIGHBOR_MAX_CELLS = 10_000
#: rows of new data standardised and projected at a time by ``representation="harmony"``
_MAP_ROWS = 10_000
#: the ``representation`` choices of :class:`~sctransfer.models.bermuda.BERMUDAConfig`
REPRESENTATIONS = ("genes", "harmony")


class BERMUDA(NeuralModel):
    """BERMUDA: batch alignment by an autoencoder whose codes are pulled together between matched clusters.

    Every batch is clustered separately; MetaNeighbor scores how similar the clusters of different
    batches are, and the pairs above a threshold are matched. The autoencoder reconstructs min-max scaled
    expression (scaled per batch and gene) cluster by cluster, and its loss adds the MMD between the codes
    of every matched pair, with a weight that ramps up during training. The code is the aligned
    representation.

    The model prepares the values itself, with the choices of its preset (see
    :class:`~sctransfer.models.bermuda.BERMUDAConfig`): counts are log-normalised (to ``target_sum``
    per cell), and the genes detected in every batch are restricted to the union of each batch's variable
    genes. So ``BERMUDA(adata, preset="faithful")`` alone reproduces the reference implementation's
    preprocessing and training; :func:`sctransfer.tl.bermuda` adds the per-batch clustering.

    Set the data up with :meth:`setup_anndata` first.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`: counts, or log-normalised expression.
    cluster_pairs
        Matched clusters as pairs of cluster labels (a list of pairs or a DataFrame with columns
        ``cluster_1`` and ``cluster_2``). ``None`` computes them with MetaNeighbor.
    similarity_threshold
        Least MetaNeighbor AUROC of a matched pair (BERMUDA's ``S_thr``) when ``cluster_pairs`` is ``None``.
    metaneighbor
        ``"exact"``, ``"fast"`` (low-memory) or ``"auto"`` (exact up to 10,000 cells).
    allow_no_pairs
        Train without the MMD when no pair passes the threshold, instead of raising (the default preset then
        returns the corrected PCA, the autoencoder an unaligned code).
    preset
        ``"default"`` or ``"faithful"`` (the reference implementation); see
        :data:`~sctransfer.models.bermuda.PRESETS` and ``docs/differences/bermuda.md``.
    genes
        Names of the genes to use (``var_names`` of ``adata``, which must then be unique); ``None``
        selects them as the preset says.
    random_state
        Seed of the PCA and the correction of ``representation="harmony"`` (the training has its own, in
        :meth:`train`).
    faithful
        Deprecated: ``True`` means ``preset="faithful"``.
    **config
        Overrides of single settings of the preset (fields of
        :class:`~sctransfer.models.bermuda.BERMUDAConfig`).

    Attributes
    ----------
    genes_
        Names of the genes used.
    normalised_
        Whether the registered values were counts, which the model log-normalised (``False`` for the
        model that :func:`sctransfer.tl.bermuda` trains: it is given log-normalised values).
    """

    _module_cls = BERMUDAModule
    presets = PRESETS

    def __init__(
        self,
        adata: AnnData,
        *,
        cluster_pairs: list | pd.DataFrame | None = None,
        similarity_threshold: float = 0.85,
        metaneighbor: str = "auto",
        allow_no_pairs: bool = False,
        preset: BERMUDAPreset = "default",
        genes: Sequence[str] | None = None,
        random_state: int = 0,
        faithful: bool | None = None,
        **config: Any,
    ) -> None:
        super().__init__(adata)
        self._seed = check_int(random_state, "random_state", 0)
        cfg = self._set_config(preset, config, faithful=faithful)
        check_choice(cfg.sampler, "sampler", SAMPLERS)
        check_choice(cfg.representation, "representation", REPRESENTATIONS)
        check_choice(metaneighbor, "metaneighbor", ("auto", "exact", "fast"))
        self.batches_ = [str(b) for b in self._mapping(BATCH_CODE_KEY)]
        self.clusters_ = [str(c) for c in self._mapping(CLUSTER_CODE_KEY)]
        batch_codes, cluster_codes = self._batch_codes(), self._cluster_codes()
        self.cluster_batches_ = self._check_layout(batch_codes, cluster_codes)
        self._prepare(genes)

        if cluster_pairs is None:
            self.similarity_ = self._cluster_similarity(metaneighbor)
            found = select_cluster_pairs(self.similarity_, self.cluster_batches_, similarity_threshold)
            pairs = [[str(a), str(b)] for a, b in zip(found["cluster_1"], found["cluster_2"], strict=True)]
            if not pairs:
                best = self._best_cross_batch_similarity()
                message = (
                    f"no pair of clusters from different batches reaches similarity_threshold="
                    f"{similarity_threshold} (the best cross-batch MetaNeighbor AUROC is {best:.3f}); lower "
                    "similarity_threshold, or pass allow_no_pairs=True to train without the MMD (the "
                    "batches are then not aligned on matched clusters)."
                )
                if not allow_no_pairs:
                    raise ValueError(message)
                logger.warning(message)
        else:
            self.similarity_ = None
            pairs = self._check_pairs(cluster_pairs)
        self.cluster_pairs_ = pairs
        logger.info("BERMUDA: %d clusters in %d batches, %d matched pairs", len(self.clusters_),
                    len(self.batches_), len(pairs))  # fmt: skip

        if cfg.representation == "harmony":
            self._fit_harmony()
            # a loaded model builds buffers of the same size
            config = {**config, "harmony_clusters": int(self.module.centroids.shape[0])}
        else:
            self.module = BERMUDAModule(
                n_input=len(self.genes_),
                n_batches=len(self.batches_),
                n_latent=cfg.n_latent,
                n_hidden=cfg.n_hidden,
            )
            self._set_scaling()
        self._model_summary_string = (
            f"BERMUDA ({self.preset_} preset): {len(self.genes_)} genes, {len(self.batches_)} batches, "
            f"{len(self.clusters_)} clusters, {len(pairs)} matched pairs"
        )
        # a loaded model reuses the preset, genes and pairs instead of selecting and matching again, and every
        # resolved setting, so that a later version's change of a preset does not change it
        config = {**self.config_, **config}
        preset, genes, faithful = self.preset_, list(self.genes_), None
        cluster_pairs, allow_no_pairs = pairs, True
        self.init_params_ = self._get_init_params(locals())

    # ---- set-up -------------------------------------------------------------------------------
    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        *,
        batch_key: str,
        cluster_key: str,
        layer: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Register an AnnData of expression values with batches and per-batch clusters.

        Parameters
        ----------
        adata
            Cells x genes: counts (the model log-normalises them as its preset says) or log-normalised
            values (for example ``sc.pp.normalize_total`` then ``sc.pp.log1p``).
        batch_key
            ``.obs`` column with the batch of every cell.
        cluster_key
            ``.obs`` column with the cluster of every cell; every cluster must lie in one batch.
        layer
            Layer with the values; ``None`` uses ``.X``.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            CategoricalObsField(BATCH_CODE_KEY, batch_key),
            CategoricalObsField(CLUSTER_CODE_KEY, cluster_key),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        register_fields(adata_manager, adata, **kwargs)
        cls.register_manager(adata_manager)

    # ---- helpers ------------------------------------------------------------------------------
    def _mapping(self, key: str) -> list:
        return list(self.adata_manager.get_state_registry(key).categorical_mapping)

    def _codes_of(self, key: str) -> np.ndarray:
        return np.asarray(self.adata_manager.get_from_registry(key)).ravel().astype(np.int64)

    def _batch_codes(self) -> np.ndarray:
        return self._codes_of(BATCH_CODE_KEY)

    def _cluster_codes(self) -> np.ndarray:
        return self._codes_of(CLUSTER_CODE_KEY)

    def _prepare(self, genes: Sequence[str] | None) -> None:
        """The preset's preprocessing of the registered values (see :mod:`._preprocess`), kept for training."""
        check_preprocessing(self.config)
        X = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        if genes is None:
            Xn, positions, self.normalised_ = preprocess(X, self._batch_codes(), self.config, name="adata")
        else:
            names = pd.Index(self.adata.var_names)
            positions = names.get_indexer(pd.Index([str(g) for g in genes])) if names.is_unique else None
            if positions is None or (positions < 0).any() or len(positions) < 2:
                raise ValueError(
                    "genes must name at least two genes of adata.var_names, which must be unique; pass "
                    "genes=None to select them as the preset says."
                )
            positions = np.asarray(positions, dtype=np.int64)
            Xn, self.normalised_ = log_normalised(X, target_sum=self.config.target_sum, columns=positions)
        # the values on the model's genes only: no normalised copy of every gene is made
        self._positions = np.asarray(positions, dtype=np.int64)
        self.genes_ = [str(g) for g in self.adata.var_names[self._positions]]
        self._values = Xn.tocsr() if sp.issparse(Xn) else np.asarray(Xn)

    def _X(self):
        """The preprocessed values of the registered cells on the model's genes."""
        return self._values

    def _check_layout(self, batch_codes: np.ndarray, cluster_codes: np.ndarray) -> list[str]:
        if len(self.batches_) < 2:
            raise ValueError(
                f"BERMUDA aligns batches, but every cell is in batch {self.batches_[0]!r}; pass at least two."
            )
        batch_sizes = np.bincount(batch_codes, minlength=len(self.batches_))
        small = [b for b, n in zip(self.batches_, batch_sizes, strict=True) if n < 2]
        if small:
            raise ValueError(f"batches {small} have fewer than two cells; drop them before aligning.")
        cluster_batch = np.full(len(self.clusters_), -1)
        for c in range(len(self.clusters_)):
            owners = np.unique(batch_codes[cluster_codes == c])
            if owners.size > 1:
                raise ValueError(
                    f"cluster {self.clusters_[c]!r} holds cells of batches "
                    f"{[self.batches_[b] for b in owners]}; BERMUDA clusters every batch on its own, so "
                    "every cluster must lie in one batch (prefix cluster labels with the batch)."
                )
            cluster_batch[c] = owners[0] if owners.size else -1
        if (cluster_batch < 0).any():
            raise ValueError("some cluster categories have no cells; remove unused categories.")
        return [self.batches_[b] for b in cluster_batch]

    def _cluster_similarity(self, version: str) -> pd.DataFrame:
        X = self._X()
        fast = version == "fast" or (version == "auto" and X.shape[0] > EXACT_METANEIGHBOR_MAX_CELLS)
        logger.info("MetaNeighbor (%s) on %d cells x %d genes", "fast" if fast else "exact", *X.shape)
        per_batch = np.bincount(
            [self.batches_.index(b) for b in self.cluster_batches_], minlength=len(self.batches_)
        )
        if (per_batch < 2).any():
            lonely = [b for b, n in zip(self.batches_, per_batch, strict=True) if n < 2]
            raise ValueError(
                f"batches {lonely} have a single cluster; MetaNeighbor scores a cluster against the other "
                "clusters of its batch, so every batch needs at least two (pass cluster_pairs= to skip it)."
            )
        sim = metaneighbor(X, self._batch_codes(), self._cluster_codes(), fast=fast)
        labels = [self.clusters_[i] for i in sim.index]
        return pd.DataFrame(sim.to_numpy(), index=labels, columns=labels)

    def _best_cross_batch_similarity(self) -> float:
        S = self.similarity_.to_numpy()
        cross = np.asarray(self.cluster_batches_)[:, None] != np.asarray(self.cluster_batches_)[None, :]
        return float(S[cross].max()) if cross.any() else float("nan")

    def _check_pairs(self, cluster_pairs: list | pd.DataFrame) -> list[list[str]]:
        if isinstance(cluster_pairs, pd.DataFrame):
            missing = {"cluster_1", "cluster_2"} - set(cluster_pairs.columns)
            if missing:
                raise KeyError(f"cluster_pairs lacks the columns {sorted(missing)}.")
            raw = list(zip(cluster_pairs["cluster_1"], cluster_pairs["cluster_2"], strict=True))
        else:
            raw = list(cluster_pairs)
        pairs = []
        for pair in raw:
            if len(pair) != 2:
                raise ValueError(f"every cluster pair must have two members, got {pair!r}.")
            a, b = str(pair[0]), str(pair[1])
            for c in (a, b):
                if c not in self.clusters_:
                    raise KeyError(f"cluster {c!r} of cluster_pairs is not a cluster of the data.")
            if (
                self.cluster_batches_[self.clusters_.index(a)]
                == self.cluster_batches_[self.clusters_.index(b)]
            ):
                raise ValueError(f"clusters {a!r} and {b!r} are in the same batch; pairs must span batches.")
            pairs.append([a, b])
        return pairs

    def _set_scaling(self) -> None:
        """Per-batch, per-gene minimum and ``1 / (max - min)`` (0 for constant genes, which map to 0)."""
        X, batches = self._X(), self._batch_codes()
        for b in range(len(self.batches_)):
            block = X[batches == b]
            lo = np.asarray(block.min(axis=0).todense() if sp.issparse(block) else block.min(axis=0)).ravel()
            hi = np.asarray(block.max(axis=0).todense() if sp.issparse(block) else block.max(axis=0)).ravel()
            span = hi - lo
            inv = np.divide(1.0, span, out=np.zeros_like(span, dtype=np.float64), where=span > 0)
            self.module.feature_min[b] = torch.as_tensor(lo, dtype=torch.float32)
            self.module.feature_scale[b] = torch.as_tensor(inv, dtype=torch.float32)

    def _fit_harmony(self) -> None:
        """``representation="harmony"``: the corrected PCA that the residual network starts from.

        A joint PCA of the genes standardised within every batch, corrected with
        :func:`~sctransfer.kernels._harmony.harmony`; the statistics that map new cells go to the
        module's buffers, the scaled inputs to ``self._inputs``.
        """
        from ...kernels._harmony import harmony
        from ...kernels._pca import LogNormalisedRows, joint_pca

        cfg = self.config
        X, batches = self._X(), self._batch_codes()
        rows = [np.flatnonzero(batches == b) for b in range(len(self.batches_))]
        # every batch's rows taken a chunk at a time as the PCA reads them: a copy of each batch's rows was
        # a second copy of the values
        blocks = [LogNormalisedRows(X, rows=r, scale="log") for r in rows]
        pca = joint_pca(blocks, n_comps=cfg.n_latent, random_state=self._seed)
        n_comps = pca.components.shape[0]
        if n_comps < cfg.n_latent:
            logger.info("BERMUDA: the data allow %d principal components; the code has %d dimensions, not %d",
                        n_comps, n_comps, cfg.n_latent)  # fmt: skip
        scores = np.empty((X.shape[0], n_comps))
        for r, embedding in zip(rows, pca.embeddings, strict=True):
            scores[r] = embedding
        fit = harmony(scores, batches, n_clusters=cfg.harmony_clusters, random_state=self._seed)
        scale = float(fit.corrected.std()) or 1.0
        logger.info("BERMUDA: Harmony-style correction of %d PCs, %d soft clusters, %d rounds", n_comps,
                    fit.centroids.shape[0], fit.n_iter)  # fmt: skip
        self.module = BERMUDAResidualModule(
            n_input=len(self.genes_), n_batches=len(self.batches_), n_latent=n_comps,
            n_clusters=fit.centroids.shape[0], n_hidden=64 if cfg.n_hidden is None else cfg.n_hidden,
        )  # fmt: skip
        buffers = {
            "gene_mean": np.stack(pca.means),
            "gene_inv_std": np.stack(pca.inv_stds),
            "loadings": pca.components,
            "centroids": fit.centroids,
            "terms": fit.terms,
            "sigma": np.float64(fit.sigma),
            "input_scale": np.float64(scale),
        }
        for name, value in buffers.items():
            getattr(self.module, name).copy_(torch.as_tensor(value, dtype=torch.float64))
        self._inputs = (fit.corrected / scale).astype(np.float32)

    def _harmony_inputs(self, X, batches: np.ndarray) -> np.ndarray:
        """New cells' network inputs: standardised, projected and corrected with the fitted statistics."""
        from ...kernels._harmony import harmony_transform

        m = self.module
        mean, inv_std = m.gene_mean.cpu().numpy(), m.gene_inv_std.cpu().numpy()
        loadings = m.loadings.cpu().numpy()
        scores = np.empty((X.shape[0], loadings.shape[0]))
        for start in range(0, X.shape[0], _MAP_ROWS):  # row chunks: new data are never densified whole
            stop = min(start + _MAP_ROWS, X.shape[0])
            block = X[start:stop]
            block = block.toarray() if sp.issparse(block) else np.asarray(block, dtype=np.float64)
            b = batches[start:stop]
            scores[start:stop] = ((block - mean[b]) * inv_std[b]) @ loadings.T
        corrected = harmony_transform(
            scores, batches, m.centroids.cpu().numpy(), m.terms.cpu().numpy(), float(m.sigma)
        )
        return (corrected / float(m.input_scale)).astype(np.float32)

    def _pair_codes(self) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.clusters_)}
        codes = [[index[a], index[b]] for a, b in self.cluster_pairs_]
        return torch.as_tensor(codes, dtype=torch.long).reshape(-1, 2)

    # ---- training -----------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int | None = None,
        *,
        batch_size: int | None = None,
        random_state: int = 0,
        num_threads: int | None = 1,
        accelerator: str | None = None,
        devices: int | list[int] | str = "auto",
        enable_progress_bar: bool | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        """Train the autoencoder on cluster-balanced minibatches.

        Parameters
        ----------
        max_epochs
            Epochs (the preset's ``max_epochs`` when ``None``); the default preset may stop earlier on a
            plateau of the loss.
        batch_size
            Cells drawn from every cluster per step (the preset's when ``None``).
        random_state
            Seed for the weights and every minibatch.
        num_threads
            torch CPU threads while training (restored afterwards); ``None`` keeps the current setting.
        accelerator, devices
            Lightning device selection; ``accelerator=None`` uses ``sct.settings.device`` (``"auto"``
            uses a GPU when there is one).
        enable_progress_bar
            Show a progress bar over the epochs (on stderr); ``None`` follows
            ``sct.settings.progress_bar``.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (for example ``strategy="ddp"`` with several devices).
        """
        cfg = self.config
        epochs = cfg.max_epochs if max_epochs is None else check_int(max_epochs, "max_epochs", 1)
        batch = cfg.batch_size if batch_size is None else check_int(batch_size, "batch_size", 2)
        batch_codes, cluster_codes = self._batch_codes(), self._cluster_codes()
        members = [np.flatnonzero(cluster_codes == c) for c in range(len(self.clusters_))]
        small = [self.clusters_[c] for c, rows in enumerate(members) if rows.size < batch]
        if small:
            logger.info(
                "clusters %s have fewer cells than a minibatch (%d); their cells repeat", small, batch
            )
        steps = (
            epoch_steps(members, batch_codes, batch) if cfg.steps_per_epoch is None else cfg.steps_per_epoch
        )
        ramp = epochs if cfg.ramp_epochs is None else min(cfg.ramp_epochs, epochs)
        torch.manual_seed(random_state)
        self.module.reset_parameters()
        harmony = cfg.representation == "harmony"
        dm = ClusterBalancedDataModule(
            self._inputs if harmony else self._X(), batch_codes, cluster_codes, batch_size=batch, steps_per_epoch=steps,
            sampler=cfg.sampler, seed=random_state,
        )  # fmt: skip
        plan = BERMUDATrainingPlan(
            self.module, n_clusters=len(self.clusters_), pairs=self._pair_codes(), lr=cfg.lr,
            weight_decay=cfg.weight_decay, gamma=cfg.gamma, ramp_epochs=ramp,
            reset_optimizer_each_epoch=cfg.reset_optimizer_each_epoch, lr_halving_epochs=cfg.lr_halving_epochs,
            proximity=cfg.proximity if harmony else None,
        )  # fmt: skip
        callbacks = list(trainer_kwargs.pop("callbacks", []) or [])
        stopper = None
        if cfg.early_stopping:
            stopper = PlateauStopping(start_epoch=ramp, patience=cfg.patience)
            callbacks.append(stopper)
        trainer_kwargs.setdefault("enable_checkpointing", False)
        self.module.train()
        run_training(
            self, training_plan=plan, data_splitter=dm, max_epochs=epochs, description="BERMUDA",
            accelerator=accelerator, devices=devices, num_threads=num_threads,
            enable_progress_bar=enable_progress_bar, callbacks=callbacks, **trainer_kwargs,
        )  # fmt: skip
        self.module.eval()
        history = self.history_ or {}
        self.epochs_trained_ = len(history["train_loss"]) if "train_loss" in history else epochs
        if plan.nonfinite_epoch is not None:
            warnings.warn(
                f"BERMUDA's loss became NaN or infinite in epoch {plan.nonfinite_epoch}; training stopped there. "
                "Lower lr or gamma, or check the input for extreme values.",
                RuntimeWarning,
                stacklevel=2,
            )
        if stopper is not None and stopper.stopped_epoch is not None:
            logger.info("BERMUDA: the loss plateaued; stopped after %d epochs", stopper.stopped_epoch)
        self.is_trained_ = True

    # ---- inference ----------------------------------------------------------------------------
    def _query_values(self, adata: AnnData) -> tuple[Any, np.ndarray]:
        """New cells' prepared values on the model's genes, and their batch codes."""
        check_nonempty(adata, "adata")
        layer = self.adata_manager.registry["setup_args"]["layer"]
        source = get_matrix(adata, layer, "adata")
        positions = gene_positions(pd.Index(adata.var_names.astype(str)), self.genes_, "adata")
        X, _ = log_normalised(source, target_sum=self.config.target_sum, columns=positions)
        batch_key = self.adata_manager.registry["setup_args"]["batch_key"]
        batches = check_obs_key(adata, batch_key, "adata", what="batches").astype(str)
        codes = pd.Categorical(batches, categories=self.batches_).codes.astype(np.int64)
        if (codes < 0).any():
            unknown = sorted(set(batches[codes < 0]))
            raise ValueError(
                f"adata.obs[{batch_key!r}] has batches the model was not trained on: {unknown[:5]}; the model "
                f"maps cells of its own batches {self.batches_}."
            )
        return X, codes

    @torch.inference_mode()
    def get_latent_representation(
        self, adata: AnnData | None = None, *, batch_size: int = 4096
    ) -> np.ndarray:
        """The code of every cell (the aligned representation), ``n_cells x n_latent``.

        Parameters
        ----------
        adata
            Cells with the training data's batch column (their batches among the model's) and the
            model's genes (:attr:`genes_`, matched by name; other genes are ignored), in the layer the
            model was set up with: counts (log-normalised by the totals of all the genes given) or
            log-normalised values. ``None`` uses the model's AnnData.
        batch_size
            Cells encoded at a time.
        """
        self._check_if_trained(warn=False)
        harmony = self.config.representation == "harmony"
        if adata is not None:
            X, batches = self._query_values(adata)
            if harmony:
                X = self._harmony_inputs(X, batches)
        else:
            X, batches = (self._inputs if harmony else self._X()), self._batch_codes()
        device = next(self.module.parameters()).device
        out = np.empty((X.shape[0], self.module.n_latent), dtype=np.float32)
        for start in range(0, X.shape[0], batch_size):
            block = X[start : start + batch_size]
            block = block.toarray() if sp.issparse(block) else np.asarray(block)
            x = torch.as_tensor(block, dtype=torch.float32, device=device)
            if harmony:  # back to the scale of the corrected PCA
                z = self.module.inference(x)["z"] * float(self.module.input_scale)
            else:
                z = self.module.inference(
                    x, torch.as_tensor(batches[start : start + batch_size], device=device)
                )["z"]
            out[start : start + block.shape[0]] = z.cpu().numpy()
        return out
