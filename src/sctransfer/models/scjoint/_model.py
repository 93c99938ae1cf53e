"""``sct.models.SCJoint``: scJoint label transfer from scRNA-seq to scATAC-seq, as a scvi-tools model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LabelsWithUnlabeledObsField, LayerField
from sklearn.isotonic import IsotonicRegression

from ..._utils._logging import logger
from ..._utils._torch import register_fields, run_training
from ..._utils._validation import check_int
from ...kernels._knn import knn, knn_vote
from ...kernels._pca import row_subset
from .._base import NeuralModel
from ._config import PRESETS, SCJointPreset
from ._data import TwoDomainDataModule
from ._module import SCJointModule
from ._plan import SCJointTrainingPlan

DOMAIN_KEY = "domain"
UNLABELLED = "__unlabelled__"
#: cells log-normalised at a time for the per-domain feature statistics
_STATISTICS_ROWS = 32_768


def stride_subsample(n: int, limit: int) -> np.ndarray:
    """Positions the reference implementation keeps from ``n`` reference cells when ``n > limit``.

    It walks ``i <- int(i + n / limit)``; the truncation makes the effective stride ``floor(n / limit)``
    whenever ``n / limit`` is not an integer, so between ``limit`` and about ``2 * limit`` cells are kept
    (30,000 cells with a limit of 20,000 keep all 30,000; 50,000 keep 25,000).
    """
    keep, i, step = [], 0, n / limit
    while i < n:
        keep.append(i)
        i = int(i + step)
    return np.asarray(keep, dtype=np.int64)


def build_joint_anndata(
    matrices: list,
    *,
    reference_labels: pd.Series | np.ndarray,
    features: list[str],
    reference_names: pd.Index | list[str],
    query_names: pd.Index | list[str],
) -> AnnData:
    """Stack reference and query cells (same features, same order) into one AnnData set up for SCJoint.

    ``matrices`` is ``[X_reference, X_query]``; the list is emptied as each matrix is copied into the joint
    float32 CSR matrix, so a matrix that nothing else references is freed before the next one is copied
    (the values are then held about one and a half times at the peak, not twice). Reference cells with a
    missing label become unlabelled. ``.obs["domain"]`` is ``"rna"`` for the reference and ``"atac"`` for
    the query; ``.obs["label"]`` holds the labels.
    """
    from ..._utils._validation import CSRRows

    labels = pd.Series(np.asarray(reference_labels, dtype=object))
    labels = labels.where(labels.notna(), UNLABELLED).astype(str).to_numpy()
    n_ref, n_query = matrices[0].shape[0], matrices[1].shape[0]
    rows = CSRRows(n_ref + n_query, matrices[0].shape[1])
    while matrices:
        rows.append(sp.csr_matrix(matrices.pop(0), dtype=np.float32))
    X = rows.finish()
    obs = pd.DataFrame(
        {
            "domain": pd.Categorical(["rna"] * n_ref + ["atac"] * n_query, categories=["rna", "atac"]),
            "label": np.concatenate([labels, np.full(n_query, UNLABELLED, dtype=object)]),
        },
        index=[f"rna:{n}" for n in reference_names] + [f"atac:{n}" for n in query_names],
    )
    joint = AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index([str(f) for f in features])))
    SCJoint.setup_anndata(joint, labels_key="label", domain_key="domain")
    return joint


class SCJoint(NeuralModel):
    """scJoint: co-training of labelled scRNA-seq and unlabelled scATAC-seq in one embedding.

    A linear encoder shared by both modalities maps the shared genes to a 64-d space. Stage 1 trains it
    with the NNDR loss on each modality, a cosine loss that pulls the best-matching ATAC cells onto RNA
    cells, and a cross-entropy on the RNA labels. Stage 2 transfers labels to the ATAC cells by a kNN vote
    in the L2-normalised embedding. Stage 3 trains again with the transferred labels (cross-entropy and a
    center loss), and a last kNN vote gives the final labels.

    Set the data up with :meth:`setup_anndata` on one AnnData holding both modalities' cells on their
    shared features (:meth:`prepare_anndata` builds it from two AnnData objects).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    reference_domain
        Value of the domain column that marks the reference (labelled) cells. ``None`` picks the one domain
        whose cells carry labels.
    preset
        ``"default"`` (the reference's defects fixed) or ``"faithful"`` (the reference implementation's
        behaviour); see :data:`~sctransfer.models.scjoint.PRESETS` and ``docs/differences/scjoint.md``.
    faithful
        Deprecated: ``True`` means ``preset="faithful"``.
    **config
        Overrides of single settings of the preset (fields of :class:`SCJointConfig`).
    """

    _module_cls = SCJointModule
    presets = PRESETS

    def __init__(
        self,
        adata: AnnData,
        *,
        reference_domain: str | None = None,
        preset: SCJointPreset = "default",
        faithful: bool | None = None,
        **config: Any,
    ) -> None:
        super().__init__(adata)
        self._set_config(preset, config, faithful=faithful)
        domains = list(self.adata_manager.get_state_registry(DOMAIN_KEY).categorical_mapping)
        labels_state = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        # classes in sorted order (the registry keeps the order of first appearance)
        unlabelled = labels_state.unlabeled_category
        self.classes_ = sorted(str(c) for c in labels_state.categorical_mapping if c != unlabelled)
        codes = self._codes()
        domain_codes = self._domain_codes()
        if len(domains) != 2:
            raise ValueError(f"SCJoint needs exactly two domains (reference and query), got {domains}.")
        if reference_domain is None:
            labelled = [d for i, d in enumerate(domains) if (codes[domain_codes == i] >= 0).any()]
            if len(labelled) != 1:
                raise ValueError(
                    f"cannot tell the reference domain: labelled cells are in {labelled}; pass reference_domain=."
                )
            reference_domain = labelled[0]
        if reference_domain not in domains:
            raise ValueError(f"reference_domain {reference_domain!r} is not a domain ({domains}).")
        self.domains_ = [str(d) for d in domains]
        self.reference_domain_ = str(reference_domain)
        cfg = self.config
        self.module = SCJointModule(
            n_input=self.summary_stats.n_vars,
            n_labels=len(self.classes_),
            n_latent=cfg.n_latent,
            n_domains=2,
            input_transform=cfg.input_transform,
        )
        if cfg.input_transform == "scaled":
            self._set_feature_statistics()
        self.pseudo_labels_ = None
        self._model_summary_string = (
            f"SCJoint ({self.preset_} preset): {self.summary_stats.n_vars} features, "
            f"{len(self.classes_)} classes, reference domain {self.reference_domain_!r}"
        )
        preset, faithful = self.preset_, None  # a saved model records the resolved preset
        config = dict(self.config_)  # and every resolved setting, whatever a later version's presets say
        self.init_params_ = self._get_init_params(locals())

    # ---- set-up -------------------------------------------------------------------------------
    @classmethod
    def setup_anndata(
        cls, adata: AnnData, *, labels_key: str, domain_key: str, layer: str | None = None, **kwargs: Any
    ) -> None:
        """Register an AnnData holding the cells of both modalities on their shared features.

        Parameters
        ----------
        adata
            Cells of both modalities (rows), shared features (columns); counts or non-negative values.
        labels_key
            ``.obs`` column with the reference labels; query cells and unlabelled reference cells hold
            ``"__unlabelled__"``.
        domain_key
            ``.obs`` column naming each cell's modality (two values).
        layer
            Layer with the values; ``None`` uses ``.X``.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            CategoricalObsField(DOMAIN_KEY, domain_key),
            LabelsWithUnlabeledObsField(REGISTRY_KEYS.LABELS_KEY, labels_key, UNLABELLED),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        register_fields(adata_manager, adata, **kwargs)
        cls.register_manager(adata_manager)

    @staticmethod
    def prepare_anndata(
        adata_rna: AnnData,
        adata_atac: AnnData,
        *,
        labels_key: str,
        layer: str | None = None,
        atac_layer: str | None = None,
        features: list[str] | None = None,
    ) -> AnnData:
        """Build the joint AnnData (RNA cells, then ATAC cells, on the shared features) and set it up.

        The inputs are not changed. Reference cells with a missing label become unlabelled (they are
        embedded but never vote or enter the cross-entropy).

        Returns
        -------
        A new AnnData with ``.obs["domain"]`` (``"rna"``/``"atac"``) and ``.obs["label"]``, registered with
        :meth:`setup_anndata`.
        """
        if features is None:
            features = [f for f in adata_rna.var_names if f in set(adata_atac.var_names)]
        X_rna = adata_rna.X if layer is None else adata_rna.layers[layer]
        X_atac = adata_atac.X if atac_layer is None else adata_atac.layers[atac_layer]
        matrices = [
            X_rna[:, adata_rna.var_names.get_indexer(features)],
            X_atac[:, adata_atac.var_names.get_indexer(features)],
        ]
        return build_joint_anndata(
            matrices,
            reference_labels=adata_rna.obs[labels_key],
            features=features,
            reference_names=adata_rna.obs_names,
            query_names=adata_atac.obs_names,
        )

    # ---- helpers ------------------------------------------------------------------------------
    def _codes(self) -> np.ndarray:
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        mapping = list(state.categorical_mapping)
        raw = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY)).ravel()
        names = np.asarray(mapping, dtype=object)[raw]
        classes = sorted(str(c) for c in mapping if c != state.unlabeled_category)
        lookup = {c: i for i, c in enumerate(classes)}
        return np.array([lookup.get(str(n), -1) for n in names], dtype=np.int64)

    def _domain_codes(self) -> np.ndarray:
        return np.asarray(self.adata_manager.get_from_registry(DOMAIN_KEY)).ravel().astype(np.int64)

    def _X(self):
        X = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        return X.tocsr() if sp.issparse(X) else np.asarray(X)

    def _split(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        domain_codes = self._domain_codes()
        ref_domain = self.domains_.index(self.reference_domain_)
        query_domain = 1 - ref_domain
        return (
            np.flatnonzero(domain_codes == ref_domain),
            np.flatnonzero(domain_codes == query_domain),
            ref_domain,
            query_domain,
        )

    def _set_feature_statistics(self) -> None:
        """Per-domain mean and 1/std of the log-normalised features (for ``input_transform="scaled"``).

        The sums are taken over chunks of :data:`_STATISTICS_ROWS` cells, in float64: a log-normalised copy
        of a whole domain (after the copy that selecting its rows makes) ran a 1M-cell reference out of
        memory here.
        """
        from ...kernels._pca import log_normalize

        X = self._X()
        domain_codes = self._domain_codes()
        for d in range(2):
            rows = np.flatnonzero(domain_codes == d)
            total = np.zeros(X.shape[1])
            total_sq = np.zeros(X.shape[1])
            for start in range(0, rows.size, _STATISTICS_ROWS):
                block = log_normalize(X[rows[start : start + _STATISTICS_ROWS]])
                if sp.issparse(block):
                    total += np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
                    total_sq += np.asarray(block.multiply(block).sum(axis=0, dtype=np.float64)).ravel()
                else:
                    total += block.sum(axis=0, dtype=np.float64)
                    total_sq += np.einsum("ij,ij->j", block, block, dtype=np.float64)
            mean, sq = total / max(rows.size, 1), total_sq / max(rows.size, 1)
            std = np.sqrt(np.maximum(sq - mean**2, 0.0))
            inv = np.divide(1.0, std, out=np.zeros_like(std), where=std > 1e-8)
            self.module.feature_mean[d] = torch.as_tensor(mean, dtype=torch.float32)
            self.module.feature_inv_std[d] = torch.as_tensor(inv, dtype=torch.float32)

    # ---- training -----------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int | None = None,
        *,
        max_epochs_stage3: int | None = None,
        batch_size: int | None = None,
        random_state: int = 0,
        num_threads: int | None = 1,
        accelerator: str | None = None,
        devices: int | list[int] | str = "auto",
        enable_progress_bar: bool | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        """Run the three stages: train, transfer labels by kNN, train again with them.

        Parameters
        ----------
        max_epochs
            Stage-1 epochs (the preset's ``epochs_stage1`` when ``None``).
        max_epochs_stage3
            Stage-3 epochs (``epochs_stage3`` when ``None``); 0 skips stage 3.
        batch_size
            Cells drawn from each modality per step (``batch_size`` of the preset when ``None``).
        random_state
            Seed for the weights and every minibatch draw.
        num_threads
            torch CPU threads while training (restored afterwards); ``None`` keeps the current setting.
            One is fastest for scJoint's small matrices.
        accelerator, devices
            Lightning device selection; ``accelerator=None`` uses ``sct.settings.device`` (``"auto"``
            uses a GPU when there is one).
        enable_progress_bar
            Show a progress bar over the epochs of each stage (on stderr); ``None`` follows
            ``sct.settings.progress_bar``.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (for example ``strategy="ddp"`` with several devices).
        """
        cfg = self.config
        epochs1 = cfg.epochs_stage1 if max_epochs is None else check_int(max_epochs, "max_epochs", 0)
        epochs3 = (
            cfg.epochs_stage3
            if max_epochs_stage3 is None
            else check_int(max_epochs_stage3, "max_epochs_stage3", 0)
        )
        batch = cfg.batch_size if batch_size is None else check_int(batch_size, "batch_size")
        torch.manual_seed(random_state)
        self._reset_parameters(random_state)
        if cfg.init == "pca":
            self._init_from_pca(random_state)
        ref_idx, query_idx, ref_domain, query_domain = self._split()
        X = self._X()
        codes = self._codes()
        n_ref, n_query = ref_idx.size, query_idx.size
        if cfg.steps_rule == "query":
            steps = n_query // batch
        else:
            steps = int(np.ceil(max(n_ref, n_query) / batch))
        if steps == 0:
            logger.info(
                "fewer query cells (%d) than a minibatch (%d): training 1 step per epoch", n_query, batch
            )
        # views of the training matrix when each domain's cells are contiguous (as the verb stacks them): two
        # copies of the domains beside it had been the training's peak of memory
        X_ref, X_query = row_subset(X, ref_idx), row_subset(X, query_idx)

        def run_stage(stage: int, epochs: int, y_query: np.ndarray | None) -> dict:
            dm = TwoDomainDataModule(
                X_ref, X_query, codes[ref_idx], y_query, domain_ref=ref_domain, domain_query=query_domain,
                batch_size=batch, steps_per_epoch=steps, seed=random_state, stage=stage,
            )  # fmt: skip
            plan = SCJointTrainingPlan(
                self.module, stage=stage, lr=cfg.lr_stage1 if stage == 1 else cfg.lr_stage3,
                momentum=cfg.momentum, weight_decay=cfg.weight_decay, lr_decay_epoch=cfg.lr_decay_epoch,
                top_fraction=cfg.top_fraction, l1_weight=cfg.l1_weight, center_weight=cfg.center_weight,
                reference_center_loss=cfg.center_loss == "reference",
                train_centers=stage == 3 and cfg.centers == "learned",
            )  # fmt: skip
            self.module.train()
            run_training(
                self, training_plan=plan, data_splitter=dm, max_epochs=epochs,
                description=f"scJoint stage {stage}", accelerator=accelerator, devices=devices,
                num_threads=num_threads, enable_progress_bar=enable_progress_bar, **trainer_kwargs,
            )  # fmt: skip
            return dict(self.history_ or {})

        self._run_stages(run_stage, epochs1, epochs3, ref_idx, query_idx, codes, random_state)

    def _run_stages(self, run_stage, epochs1, epochs3, ref_idx, query_idx, codes, random_state) -> None:
        cfg = self.config
        history = {}
        if epochs1 > 0:
            history["stage1"] = run_stage(1, epochs1, None)
        # stage 2: kNN transfer of the reference labels to the query
        votes = self._vote(self.get_latent_representation())
        pseudo = votes["codes"].copy()
        if cfg.pseudo_threshold is not None:
            pseudo[votes["vote_fraction"] < cfg.pseudo_threshold] = -1
        self.pseudo_labels_ = pseudo
        logger.info("stage 2: %d of %d query cells get a pseudo-label", int((pseudo >= 0).sum()), pseudo.size)
        if epochs3 > 0:
            if cfg.warm_start:
                if cfg.centers == "learned":
                    self._centers_from_class_means(ref_idx, query_idx, codes, pseudo)
            else:
                self._reset_parameters(random_state + 1, keep_centers=True)
            history["stage3"] = run_stage(3, epochs3, pseudo)
        self.history_ = history
        self.is_trained_ = True
        self.module.eval()

    def _reset_parameters(self, seed: int, keep_centers: bool = False) -> None:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.module.encoder.reset_parameters()
        self.module.classifier.reset_parameters()
        if not keep_centers:
            with torch.no_grad():
                self.module.centers.copy_(torch.randn_like(self.module.centers))
        torch.random.set_rng_state(generator_state)

    def _init_from_pca(self, random_state: int) -> None:
        """Start the encoder at the joint PCA of the standardised inputs (``input_transform="scaled"`` only)."""
        from ...kernels._pca import LogNormalisedRows, joint_pca

        if self.config.input_transform != "scaled":
            raise ValueError('init="pca" needs input_transform="scaled".')
        X, domains = self._X(), self._domain_codes()
        # each domain's rows are log-normalised a chunk at a time as the PCA reads them: a log-normalised copy
        # of every domain (the whole training matrix again) had been the peak of scJoint's memory at 1M cells
        blocks = [LogNormalisedRows(X, rows=np.flatnonzero(domains == d)) for d in range(2)]
        n_comps = min(self.module.n_latent, X.shape[1] - 1)
        pca = joint_pca(blocks, n_comps=n_comps, random_state=random_state)
        scale = np.sqrt(X.shape[0] - 1) / np.maximum(pca.singular_values, 1e-12)
        with torch.no_grad():
            self.module.encoder.weight.zero_()
            self.module.encoder.bias.zero_()
            k = pca.components.shape[0]
            self.module.encoder.weight[:k] = torch.as_tensor(
                pca.components * scale[:, None], dtype=torch.float32
            )

    def _centers_from_class_means(self, ref_idx, query_idx, codes, pseudo) -> None:
        z = self.get_latent_representation(normalize=False)
        cells = np.concatenate([ref_idx, query_idx])
        labels = np.concatenate([codes[ref_idx], pseudo])
        with torch.no_grad():
            for k in range(len(self.classes_)):
                members = cells[labels == k]
                if members.size:
                    self.module.centers[k] = torch.as_tensor(z[members].mean(axis=0), dtype=torch.float32)

    # ---- inference ----------------------------------------------------------------------------
    @torch.inference_mode()
    def get_latent_representation(
        self, adata: AnnData | None = None, *, normalize: bool = True, batch_size: int = 4096
    ) -> np.ndarray:
        """Embedding of every cell (L2-normalised by default, as the kNN transfer uses it).

        Parameters
        ----------
        adata
            AnnData set up like the training data; ``None`` uses the model's AnnData.
        normalize
            Divide every embedding by its L2 norm.
        batch_size
            Cells embedded at a time.

        Returns
        -------
        Array of shape ``(n_cells, n_latent)``.
        """
        if adata is not None:
            adata = self._validate_anndata(adata)
            manager = self.get_anndata_manager(adata, required=True)
            X = manager.get_from_registry(REGISTRY_KEYS.X_KEY)
            domains = np.asarray(manager.get_from_registry(DOMAIN_KEY)).ravel()
        else:
            X, domains = self._X(), self._domain_codes()
        self.module.eval()
        device = next(self.module.parameters()).device
        out = np.zeros((X.shape[0], self.module.n_latent), dtype=np.float32)
        for d in np.unique(domains):
            rows = np.flatnonzero(domains == d)
            for start in range(0, rows.size, batch_size):
                idx = rows[start : start + batch_size]
                block = X[idx]
                block = block.toarray() if sp.issparse(block) else np.asarray(block)
                x = torch.as_tensor(block, dtype=torch.float32, device=device)
                out[idx] = self.module.embed(x, int(d)).cpu().numpy()
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _reference_rows(self, ref_labelled: np.ndarray) -> np.ndarray:
        """The reference cells the kNN uses: all, or the original's stride subsample above ``max_reference``."""
        limit = self.config.max_reference
        if limit is None or ref_labelled.size <= limit:
            return ref_labelled
        return ref_labelled[stride_subsample(ref_labelled.size, limit)]

    def _vote(self, z: np.ndarray) -> dict[str, np.ndarray]:
        cfg = self.config
        ref_idx, query_idx, _, _ = self._split()
        codes = self._codes()
        ref_rows = self._reference_rows(ref_idx[codes[ref_idx] >= 0])
        k = min(cfg.n_neighbors, ref_rows.size)
        nbrs = knn(z[query_idx], z[ref_rows], k=k, metric="cosine")
        pred, frac, proba = knn_vote(nbrs.indices, codes[ref_rows], len(self.classes_))
        return {
            "codes": pred,
            "vote_fraction": frac,
            "proba": proba,
            "indices": nbrs.indices,
            "similarity": 1.0 - nbrs.distances.mean(axis=1),
            "n_reference": np.asarray(ref_rows.size),
        }

    @staticmethod
    def _reference_confidence(pred: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """The original's score: sum over neighbours of ±1/hub count, +1 only when the class index is 0."""
        hubs = np.bincount(indices.ravel(), minlength=indices.max() + 1).astype(np.float64)
        sign = np.where(pred == 0, 1.0, -1.0)
        return sign * (1.0 / hubs[indices]).sum(axis=1)

    def _calibrate(self, z: np.ndarray) -> IsotonicRegression:
        """Map a vote fraction to the chance that the label is right, from a leave-one-out kNN on the reference."""
        ref_idx, _, _, _ = self._split()
        codes = self._codes()
        rows = ref_idx[codes[ref_idx] >= 0]
        k = min(self.config.n_neighbors + 1, rows.size)
        nbrs = knn(z[rows], z[rows], k=k, metric="cosine")
        own = nbrs.indices == np.arange(rows.size)[:, None]
        # drop each cell itself (or the last neighbour when a duplicate pushed it out)
        drop = np.where(own.any(axis=1), own.argmax(axis=1), k - 1)
        keep = np.ones_like(own)
        keep[np.arange(rows.size), drop] = False
        loo = nbrs.indices[keep].reshape(rows.size, k - 1)
        pred, frac, _ = knn_vote(loo, codes[rows], len(self.classes_))
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(frac, (pred == codes[rows]).astype(np.float64))
        return iso

    def predict(self, *, unknown_threshold: float | None = None) -> tuple[pd.DataFrame, np.ndarray]:
        """Final kNN transfer to the query cells.

        Parameters
        ----------
        unknown_threshold
            Query cells whose confidence is below it get the label ``"unknown"`` (code -1).

        Returns
        -------
        A DataFrame indexed by the query cells with ``label``, ``code``, ``confidence`` (per the preset's
        ``confidence`` setting: the vote fraction by default, the original's score with the faithful
        preset), ``probability`` (vote fraction calibrated on the
        reference) and ``similarity`` (mean cosine similarity to the neighbours), and the per-class vote
        fractions (n_query x n_classes).
        """
        if not self.is_trained_:
            raise ValueError("the model is not trained yet; call .train() first.")
        z = self.get_latent_representation()
        votes = self._vote(z)
        _, query_idx, _, _ = self._split()
        codes = votes["codes"].copy()
        if self.config.confidence == "reference":
            confidence = self._reference_confidence(codes, votes["indices"])
        elif self.config.confidence == "vote_similarity":
            confidence = votes["vote_fraction"] * np.clip(votes["similarity"], 0.0, 1.0)
        else:
            confidence = votes["vote_fraction"]
        probability = self._calibrate(z).predict(votes["vote_fraction"])
        if unknown_threshold is not None:
            codes[confidence < unknown_threshold] = -1
        names = np.asarray([*self.classes_, "unknown"], dtype=object)[
            np.where(codes < 0, len(self.classes_), codes)
        ]
        frame = pd.DataFrame(
            {
                "label": names,
                "code": codes,
                "confidence": confidence,
                "probability": probability,
                "similarity": votes["similarity"],
            },
            index=self.adata.obs_names[query_idx],
        )
        return frame, votes["proba"]

    def __repr__(self) -> str:
        return self._model_summary_string
