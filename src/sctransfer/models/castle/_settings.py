"""CaSTLe options: the two presets (faithful and default), their validation and shared docstring pieces.

A preset is only a set of values on the one code path (ARCHITECTURE: "faithful mode is a preset").
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..._utils._presets import preset_type, resolve_preset
from ..._utils._settings import check_n_jobs
from ..._utils._validation import check_choice, check_float, check_int

#: Source labels that mean "no cell type" in the reference scripts (a regular expression, searched).
UNKNOWN_PATTERN = "not applicable|unclassified|contaminated|unknown"
#: Bin edges of the reference, on the ``log2(x + 1)`` scale: 4 right-closed bins.
BREAKS_LOG2 = (-1.0, 0.0, 1.0, 6.0, math.inf)
#: XGBoost parameters of the reference scripts (R xgboost 0.6.4.1; ``base_score`` spells out that version's
#: default, which modern xgboost changed). ``tree_method`` is a preset value (``PRESETS``).
XGB_PARAMS: dict[str, Any] = {
    "eta": 0.7,
    "max_depth": 5,
    "gamma": 0.001,
    "min_child_weight": 10,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "lambda": 1.0,
    "alpha": 0.0,
    "base_score": 0.5,
}
N_ROUNDS = 20
MODES = ("one_vs_rest", "multiclass")
GENE_CASES = ("exact", "ignore")


@dataclass(frozen=True)
class CaSTLeSettings:
    """Every option of a CaSTLe fit, resolved (no ``None`` left that means "from the preset")."""

    mode: str
    preset: str
    n_features: int
    min_cells: int
    breaks: tuple[float, ...]
    log_base: float | str
    correlation_filter: str
    correlation_threshold: float
    unknown_pattern: str | None
    unknown_case_sensitive: bool
    drop_unknown_multiclass: bool
    encoding: str
    two_class_objective: str
    train_fraction: float
    class_weight: str
    match_detection: bool
    threshold: float | None
    n_rounds: int
    xgb_params: dict[str, Any] = field(default_factory=dict)
    self_training: int = 0
    pseudo_label_threshold: float = 0.9
    gene_case: str = "exact"
    random_state: int | None = 0
    n_jobs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dictionary (lists, not tuples; ``inf`` stays a float)."""
        out = asdict(self)
        out["breaks"] = list(self.breaks)
        return out


#: CaSTLe's presets: the options whose value depends on the preset, and that value. ``"faithful"``
#: reproduces the reference R scripts; ``"default"`` has the fixes of ``docs/differences/castle.md``.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "log_base": "auto",
        "correlation_filter": "pearson",
        "unknown_case_sensitive": False,
        "drop_unknown_multiclass": True,
        "encoding": "onehot",
        "two_class_objective": "binary:logistic",
        "train_fraction": 1.0,
        "class_weight": "balanced",
        "match_detection": True,
        "tree_method": "hist",
    },
    "faithful": {
        "log_base": 2.0,
        "correlation_filter": "reference",
        "unknown_case_sensitive": True,
        "drop_unknown_multiclass": False,
        "encoding": "treatment",
        "two_class_objective": "reg:squarederror",
        "train_fraction": 0.8,
        "class_weight": "none",
        "match_detection": False,
        "tree_method": "exact",
    },
}
#: the preset names, as the type of ``preset`` parameters
CaSTLePreset = preset_type(PRESETS)


def _check_breaks(breaks: Any) -> tuple[float, ...]:
    try:
        edges = tuple(float(b) for b in breaks)
    except (TypeError, ValueError):
        raise ValueError(f"breaks must be a sequence of numbers, got {breaks!r}.") from None
    ok = (
        len(edges) >= 3
        and all(b < a for b, a in itertools.pairwise(edges))
        and edges[0] < 0 <= edges[1]
        and math.isinf(edges[-1])
        and not any(math.isnan(b) for b in edges)
    )
    if not ok:
        raise ValueError(
            "breaks must be at least 3 strictly increasing edges on the log2(x + 1) scale, the first below "
            f"0, the second >= 0 (so that zero is bin 0) and the last inf, like {list(BREAKS_LOG2)}; got "
            f"{breaks!r}."
        )
    return edges


def _check_log_base(value: Any) -> float | str:
    if value == "auto":
        return "auto"
    if value == "e":
        return math.e
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value <= 1:
        raise ValueError(f"log_base must be 'auto', 'e' or a number > 1 (such as 2 or 10), got {value!r}.")
    return float(value)


def resolve_settings(
    *, preset: str = "default", reference: bool | None = None, **options: Any
) -> CaSTLeSettings:
    """Fill the ``None`` options from the preset and validate everything.

    Parameters
    ----------
    preset
        Which preset (:data:`PRESETS`) fills the options left at ``None``.
    reference
        Deprecated: ``True`` means ``preset="faithful"``.
    **options
        The constructor options of :class:`~sctransfer.models.CaSTLe`.

    Returns
    -------
    The resolved settings.
    """
    if isinstance(reference, np.bool_):
        reference = bool(reference)
    # stacklevel 4: the caller of CaSTLe(reference=...)
    preset = resolve_preset(preset, PRESETS, alias=reference, alias_name="reference", stacklevel=4)
    values = dict(options)
    for name, value in PRESETS[preset].items():
        if values.get(name) is None:
            values[name] = value
    mode = check_choice(values["mode"], "mode", MODES)
    if values.get("breaks") is None:
        values["breaks"] = BREAKS_LOG2
    pattern = values.get("unknown_pattern", UNKNOWN_PATTERN)
    if pattern is not None:
        try:
            re.compile(pattern)
        except (TypeError, re.error):
            raise ValueError(
                f"unknown_pattern must be a regular expression or None, got {pattern!r}."
            ) from None
    threshold = values.get("threshold")
    if threshold is None and mode == "one_vs_rest":
        threshold = 0.5
    elif threshold is not None:
        threshold = check_float(threshold, "threshold", minimum=0.0, maximum=1.0)
    xgb_params = {**XGB_PARAMS, "tree_method": values.pop("tree_method")}
    extra = values.get("xgb_params") or {}
    if not isinstance(extra, dict):
        raise ValueError(f"xgb_params must be a dict of XGBoost parameters, got {extra!r}.")
    reserved = {"objective", "num_class", "nthread", "n_jobs", "seed", "random_state"} & set(extra)
    if reserved:
        raise ValueError(
            f"xgb_params must not set {sorted(reserved)}: the objective and number of classes follow from "
            "`mode` and the labels, the seed from `random_state` and the threads from `n_jobs`."
        )
    xgb_params.update(extra)
    random_state = values.get("random_state", 0)
    if random_state is not None:
        random_state = check_int(random_state, "random_state", minimum=0)
    settings = CaSTLeSettings(
        mode=mode,
        preset=preset,
        n_features=check_int(values.get("n_features", 100), "n_features"),
        min_cells=check_int(values.get("min_cells", 10), "min_cells", minimum=0),
        breaks=_check_breaks(values["breaks"]),
        log_base=_check_log_base(values["log_base"]),
        correlation_filter=check_choice(
            values["correlation_filter"], "correlation_filter", ("pearson", "reference")
        ),
        correlation_threshold=check_float(
            values.get("correlation_threshold", 0.9),
            "correlation_threshold",
            minimum=0.0,
            maximum=1.0,
            open_minimum=True,
        ),
        unknown_pattern=pattern,
        unknown_case_sensitive=bool(values["unknown_case_sensitive"]),
        drop_unknown_multiclass=bool(values["drop_unknown_multiclass"]),
        encoding=check_choice(values["encoding"], "encoding", ("onehot", "treatment")),
        two_class_objective=check_choice(
            values["two_class_objective"], "two_class_objective", ("binary:logistic", "reg:squarederror")
        ),
        train_fraction=check_float(
            values["train_fraction"], "train_fraction", minimum=0.0, maximum=1.0, open_minimum=True
        ),
        class_weight=check_choice(values["class_weight"], "class_weight", ("balanced", "none")),
        match_detection=bool(values["match_detection"]),
        threshold=threshold,
        n_rounds=check_int(values.get("n_rounds", N_ROUNDS), "n_rounds"),
        xgb_params=xgb_params,
        self_training=check_int(values.get("self_training", 0), "self_training", minimum=0),
        pseudo_label_threshold=check_float(
            values.get("pseudo_label_threshold", 0.9),
            "pseudo_label_threshold",
            minimum=0.5,
            maximum=1.0,
            open_minimum=True,
        ),
        gene_case=check_choice(values.get("gene_case", "exact"), "gene_case", GENE_CASES),
        random_state=random_state,
        n_jobs=check_n_jobs(values.get("n_jobs")),
    )
    return settings


#: Docstring pieces shared by :class:`~sctransfer.models.CaSTLe` and :func:`~sctransfer.tl.castle`.
CASTLE_DOCS: dict[str, str] = {
    "castle_mode": """mode
        ``"one_vs_rest"`` (default; one binary classifier per source type, each with its own genes, and
        rejection) or ``"multiclass"`` (one multi-class classifier; rejection only with ``threshold``).""",
    "castle_preset": """preset
        ``"faithful"`` reproduces the reference R scripts: the no-op correlation filter, the case-sensitive
        unknown-label pattern, treatment-coded one-hot, bins applied to the values as they are, unweighted
        classes, XGBoost's ``exact`` tree method, and in ``multiclass`` mode a random ~80 % training subset
        and a squared-error objective for two classes. ``"default"`` uses the fixes and additions listed
        in ``docs/differences/castle.md`` (a real Pearson filter, bins moved to the data's log base,
        case-insensitive unknown labels, full one-hot, balanced class weights, matching the source's
        detection rate to a shallower target, all training cells, ``binary:logistic`` for two classes,
        ``hist`` trees). Options left at ``None`` below take the preset's value
        (:data:`~sctransfer.models.castle._settings.PRESETS`). ``reference=True`` is a deprecated spelling
        of ``preset="faithful"``.""",
    "castle_threshold": """threshold
        Rejection threshold. ``one_vs_rest``: a cell whose probabilities are all ``<= threshold`` is
        rejected (``"Not Classified"`` from the model's ``predict``, ``"unknown"`` from
        :func:`~sctransfer.tl.castle`; default ``0.5``, the reference evaluation's rule; ``0`` never
        rejects). ``multiclass``: a cell whose largest class probability is ``<= threshold`` is rejected
        (default ``None``: never, as in the reference).""",
    "castle_n_features": """n_features
        Genes taken from each ranking (mean expression, NMI with the labels); their union (between
        ``n_features`` and ``2 * n_features`` genes) is the candidate feature set.""",
    "castle_log_base": """log_base
        Base of the logarithm in the values, ``log_base(x + 1)``. The bin edges are given on the
        ``log2(x + 1)`` scale of the paper and are moved to this base. ``"auto"`` (default preset) reads
        ``.uns["log1p"]["base"]`` written by :func:`scanpy.pp.log1p` and otherwise assumes the natural log
        (scanpy's and Seurat's ``LogNormalize``); it is detected for each dataset. The faithful preset uses
        ``2``: the edges are applied to the values as they are.""",
    "castle_gene_case": """gene_case
        How gene names are matched between datasets: ``"exact"`` (default, case-sensitive, like
        ``var_names``) or ``"ignore"`` (compared upper-cased; names that then collide within one dataset are
        an error). Gene order never matters.""",
    "castle_n_jobs": """n_jobs
        XGBoost threads; ``None`` uses ``sct.settings.n_jobs``, and by default every core (results do not
        depend on it).""",
    "castle_options": """min_cells
        A gene is used only if it is detected (value ``> 0``) in more than ``min_cells`` cells of the source
        and, when a target is given, of the target (default ``10``).
    breaks
        Bin edges on the ``log2(x + 1)`` scale, right-closed (default ``(-1, 0, 1, 6, inf)``: zero,
        ``(0, 1]``, ``(1, 6]``, above 6).
    correlation_filter
        ``"pearson"`` (default preset): scanning the candidates in order, drop a gene whose ``|r|`` with an
        already kept gene exceeds ``correlation_threshold`` (on the stacked source and target values).
        ``"reference"``: the reference scripts' filter, which keeps every gene.
    correlation_threshold
        Pearson correlation above which a gene is redundant (default ``0.9``).
    unknown_pattern
        Regular expression (searched) for source labels that mean "no type"; those cells are dropped
        before training. Default ``"not applicable|unclassified|contaminated|unknown"``; ``None`` keeps
        every label.
    unknown_case_sensitive
        Whether ``unknown_pattern`` is case-sensitive (faithful preset ``True``, default ``False``).
    drop_unknown_multiclass
        Whether unknown-labelled cells are also dropped in ``multiclass`` mode (faithful preset ``False``:
        they form a class, as in the multiclass script; default ``True``).
    encoding
        ``"onehot"`` (default preset): one indicator per observed bin; ``"treatment"`` (faithful preset): an
        intercept plus one indicator per observed bin except the first (R ``model.matrix``).
    two_class_objective
        Objective of a ``multiclass`` fit with two classes: ``"binary:logistic"`` (default preset) or
        ``"reg:squarederror"`` (faithful preset: R xgboost's default, squared error on the 0/1 codes; a cell then
        gets the class whose code is nearer to the prediction).
    train_fraction
        ``multiclass`` only: each source cell joins the training set with this probability, drawn from
        ``random_state`` (faithful preset ``0.8``, as the script's ``runif(n) < 0.8``; default ``1.0``:
        all cells).
    class_weight
        ``"balanced"`` (default preset): weight the training cells so that every class (in
        ``one_vs_rest``: the type and the rest) carries the same total weight, which lets rare types reach
        the ``min_child_weight`` of the trees; ``"none"`` (faithful preset): every cell weighs 1.
    match_detection
        Default preset ``True``: when the source detects more genes per cell (values ``> 0`` among the
        shared genes) than the target, set each non-zero source value to zero with probability
        ``1 - target / source`` (drawn from ``random_state``) before selecting genes and training, so that
        the classifiers learn from a source as shallow as the target. Nothing changes when the target is
        the deeper one, or without a target. Faithful preset ``False``.
    self_training
        Rounds of self-training on the target (default ``0``: none, as in the paper; needs a target in
        ``fit``). In each round the target cells are classified, the cells claimed with a probability
        above ``pseudo_label_threshold`` by one type while no other type's probability exceeds ``0.5``
        are given that type, and every classifier is refitted (gene ranking by NMI, bins, trees) on the
        source cells plus these target cells. The classifiers then also learn how the types look in the
        target. On the benchmark it improves accuracy in both directions. It also weakens the rejection
        of types absent from the source, because confidently mislabelled target cells reinforce the
        mistake. See ``docs/differences/castle.md``.
    pseudo_label_threshold
        Probability above which a target cell is pseudo-labelled in self-training (default ``0.9``).
    n_rounds
        Boosting rounds (default ``20``).
    xgb_params
        XGBoost parameters that replace the reference values (``eta=0.7``, ``max_depth=5``,
        ``gamma=0.001``, ``min_child_weight=10``, ``base_score=0.5``) or the preset's ``tree_method``
        (``"hist"``, faithful preset ``"exact"``; on one-hot features both find the same splits).""",
}
