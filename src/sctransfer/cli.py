"""The ``sctransfer`` command line: one subcommand per verb, reading and writing h5ad/h5mu files.

Every subcommand reads its inputs, calls the Python verb with the options given and writes the result
atomically: to a temporary file beside the target, renamed over it only when complete, so a failed run
never leaves a partial or clobbered output. The options are generated from the verb (names, types,
defaults, choices and help come from its signature and docstring), and the results are read back through
the verb's result contract (``.uns[key_added]``). ``--summary-json`` writes the options and a few metrics.

Exit codes: 0 on success, 2 for a usage error (unknown option, missing or conflicting options), 1 for a
data error (missing or unreadable file, missing key, invalid values). Each error is one line on stderr;
``--debug`` shows the traceback instead.

Environment (what Galaxy sets): ``GALAXY_SLOTS`` sets the threads of numba, torch and the BLAS/OpenMP
libraries. When ``NUMBA_CACHE_DIR`` or ``MPLCONFIGDIR`` is unset and the default location is not
writable, a writable cache directory is used instead.

``sctransfer --help`` and ``--version`` import none of the verbs, so they answer at once; each verb
loads what it needs when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._cli._base import (
    EXIT_DATA_ERROR,
    EXIT_OK,
    EXIT_USAGE_ERROR,
    PROG,
    CLIError,
    DataError,
    Parser,
    Progress,
    UsageError,
    apply_threads,
    configure_environment,
    console,
    exception_message,
    one_line,
    package_version,
    stderr_is_tty,
)
from ._cli._files import (
    check_model_target,
    check_output_path,
    model_read_from,
    model_written_to,
    read_data,
    write_data,
    write_json,
)
from ._cli._options import (
    add_method_options,
    add_run_options,
    add_verb_options,
    method_params,
    resolve,
    verb_params,
)

__all__ = ["EXIT_DATA_ERROR", "EXIT_OK", "EXIT_USAGE_ERROR", "main"]


# ----------------------------------------------------------------------------------------------- run
@dataclass
class Run:
    """One run of a subcommand: its options, and what the summary reports."""

    verb: Verb
    args: argparse.Namespace
    progress: Progress
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    recorded_params: dict[str, Any] = field(default_factory=dict)

    def read(self, option: str, *, mudata: bool = False) -> Any:
        """Read the file given to ``option`` and record its path and shape."""
        value = getattr(self.args, option.lstrip("-").replace("-", "_"))
        with self.progress.step(f"reading {value}"):
            data = read_data(value, option, mudata=mudata)
        self.inputs[option.lstrip("-")] = {"path": str(value), "n_obs": data.n_obs, "n_vars": data.n_vars}
        return data

    def check_columns(self, adata: Any, where: str, names: Sequence[str]) -> None:
        """Every option among ``names`` that names an ``.obs`` column (``*_key``) names one of ``adata``."""
        for name in names:
            key = getattr(self.args, name, None)
            if name.endswith("_key") and isinstance(key, str) and key not in adata.obs.columns:
                flag = "--" + name.replace("_", "-")
                raise DataError(
                    f"{flag}: column {key!r} not found in {where}.obs (columns: {list(adata.obs)})"
                )

    @contextlib.contextmanager
    def model_saved(self, params: dict[str, Any], *, one_file: bool = False) -> Iterator[None]:
        """The verb saves its model to ``save_model``; an existing model there is kept if the run fails."""
        if params.get("save_model") is None:
            yield
            return
        option = "--model-file" if one_file else "--save-model"
        target = check_model_target(params["save_model"], option, one_file=one_file)
        with model_written_to(target, one_file=one_file):
            yield
        self.outputs["model"] = {"path": str(target)}

    def call(self, *data: Any) -> None:
        """Run the verb on ``data`` with the options in :attr:`params`."""
        with self.progress.step(f"sct.{self.verb.function}"):
            resolve(self.verb.function)(*data, **self.params)

    def finish(self, data: Any, written: Any, key: str) -> None:
        """Read the run's record (``.uns[key]``) and metrics from the result, then write ``written``."""
        uns = data.uns[key]
        self.recorded_params = dict(uns.get("params", {}))
        if self.verb.metrics is not None:
            self.metrics = self.verb.metrics(self, data, uns)
        self.write(written)

    def write(self, data: Any) -> None:
        """Write ``data`` to ``--output`` and record its shape."""
        with self.progress.step(f"writing {self.args.output}"):
            write_data(data, Path(self.args.output))
        self.outputs["output"] = {"path": str(self.args.output), "n_obs": data.n_obs, "n_vars": data.n_vars}


# ---------------------------------------------------------------------------------------------- verbs
@dataclass(frozen=True)
class Verb:
    """A subcommand: the verb it runs, its input files and how its results are summarised."""

    name: str
    function: str  # ``sctransfer.<function>``, whose keywords are the options
    help: str
    inputs: tuple[tuple[str, str], ...] = ()  # (option, help) of each h5ad file, in the verb's order
    output: str = ""  # help of --output
    skip: tuple[str, ...] = ("copy",)  # keywords that are not options
    metrics: Callable[[Run, Any, dict], dict[str, Any]] | None = None
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None  # further options
    run: Callable[[Run], None] | None = None  # the runner, when the default one does not fit
    actions: tuple[Verb, ...] = ()  # sub-actions (``trvae train|predict``)

    def build(self, parser: argparse.ArgumentParser) -> None:
        if self.actions:
            sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
            for action in self.actions:
                p = sub.add_parser(action.name, help=action.help, description=action.help, allow_abbrev=False)
                p.set_defaults(_action=action)
                action.build(p)
            return
        io = parser.add_argument_group("input and output")
        for option, text in self.inputs:
            io.add_argument(option, metavar="H5AD", help=text, required=True)
        io.add_argument("--output", required=True, metavar="PATH", help=self.output)
        add_verb_options(parser, self.function, skip=self.skip)
        if self.add_arguments is not None:
            self.add_arguments(parser)
        add_run_options(parser)


def run_verb(run: Run) -> None:
    """The default runner: read the inputs, call the verb in place on them, write the last one."""
    check_output_path(run.args.output)
    run.params = verb_params(run.args)
    data = [run.read(option) for option, _ in run.verb.inputs]
    run.check_columns(data[0], f"the input ({run.verb.inputs[0][0]})", list(run.params))
    run.check_columns(data[-1], f"the input ({run.verb.inputs[-1][0]})", ["truth_key"])
    with run.model_saved(run.params):
        run.call(*data)
    run.finish(data[-1], data[-1], run.params["key_added"])


def label_metrics(run: Run, query: Any, uns: dict) -> dict[str, Any]:
    """Counts of the transferred labels, the mean confidence and, with ``--truth-key``, the scores."""
    import numpy as np

    from ._utils._keys import REJECTION_LABELS, LabelTransferKeys
    from .metrics import label_transfer_report

    keys = LabelTransferKeys(uns["params"]["key_added"])
    labels = query.obs[keys.label].astype(str)
    confidence = query.obs[keys.confidence].to_numpy(dtype=float)
    metrics: dict[str, Any] = {
        "n_cells": int(labels.size),
        "n_rejected": int(labels.isin(list(REJECTION_LABELS)).sum()),
        "mean_confidence": float(np.nanmean(confidence)) if labels.size else None,
        "label_counts": {str(k): int(v) for k, v in labels.value_counts().sort_index().items()},
    }
    truth = run.args.truth_key
    if truth is not None:
        report = label_transfer_report(
            query.obs[truth], query.obs[keys.label], reference_labels=uns["classes"]
        )
        metrics.update(
            truth_key=truth, accuracy=report.accuracy, macro_f1=report.macro_f1,
            balanced_accuracy=report.balanced_accuracy, n_evaluated=report.n_evaluated,
            n_excluded=report.n_excluded,
        )  # fmt: skip
    return metrics


def _add_truth_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument_group("scoring").add_argument(
        "--truth-key",
        default=None,
        help="query .obs column with known labels: the summary then reports accuracy, macro-F1 and balanced accuracy",
    )


# ----------------------------------------------------------------------------------- label-transfer
#: where each label-transfer method declares and documents its options (the rest go through --kwarg)
_METHOD_OPTIONS = {
    "ensemble": ("models.ensemble.EnsembleSettings", "models.EnsembleTransfer"),
    "knn": ("tl._label_transfer._run_knn", "tl._label_transfer._run_knn"),
    "scjoint": ("tl._label_transfer._run_scjoint", "tl._label_transfer._run_scjoint"),
    "castle": ("tl.castle", "tl.castle"),
}


def _add_label_transfer(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("reference and query (two h5ad files, or one h5mu file)")
    io.add_argument("--rna", metavar="H5AD", help="reference AnnData (labelled, for example scRNA-seq)")
    io.add_argument("--atac", metavar="H5AD", help="query AnnData (scATAC-seq gene activity, or RNA)")
    io.add_argument(
        "--mudata", metavar="H5MU", help="MuData holding both modalities (instead of --rna/--atac)"
    )
    import inspect

    verb_keywords = set(inspect.signature(resolve("tl.label_transfer")).parameters)
    skip = verb_keywords | {"enable_progress_bar", "source_layer", "target_layer"}
    owners = add_method_options(parser, _METHOD_OPTIONS, skip=skip)
    parser.set_defaults(_method_owners=owners)
    _add_truth_key(parser)


def _run_label_transfer(run: Run) -> None:
    args = run.args
    if args.mudata is not None and (args.rna is not None or args.atac is not None):
        raise UsageError("give either --mudata, or --rna and --atac, not both")
    if args.mudata is None and (args.rna is None or args.atac is None):
        raise UsageError("give --rna and --atac (two h5ad files), or --mudata (one h5mu file)")
    run.params = method_params(args, args._method_owners, verb_params(args))
    check_output_path(args.output)
    if args.mudata is not None:
        mdata = run.read("--mudata", mudata=True)
        for option, mod in (("--rna-mod", args.rna_mod), ("--atac-mod", args.atac_mod)):
            if mod not in mdata.mod:
                raise DataError(
                    f"{option}: modality {mod!r} not in the MuData (modalities: {list(mdata.mod)})"
                )
        reference, query, data = mdata.mod[args.rna_mod], mdata.mod[args.atac_mod], (mdata,)
        where = (f"the MuData's {args.rna_mod!r} modality", f"the MuData's {args.atac_mod!r} modality")
        written = mdata
    else:
        reference, query = run.read("--rna"), run.read("--atac")
        data, where, written = (reference, query), ("the reference (--rna)", "the query (--atac)"), query
    run.check_columns(reference, where[0], ["labels_key"])
    run.check_columns(query, where[1], ["truth_key"])
    with run.model_saved(run.params):
        run.call(*data)
    run.finish(query, written, args.key_added)


# ------------------------------------------------------------------------------------ gene-activity
def _add_gene_annotation(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("gene annotation").add_mutually_exclusive_group(required=True)
    source.add_argument("--genome", help="built-in gene table: GRCh38 (hg38), GRCm38 (mm10) or hg19 (GRCh37)")
    source.add_argument(
        "--annotation",
        metavar="TABLE",
        help="gene table file instead of --genome: tab-separated with a header naming chrom, start, end "
        "(1-based inclusive), strand and the --gene-key column, or a BED6 file (0-based; name = gene)",
    )
    add_verb_options(parser, "datasets.gene_annotation", skip=("genome",), record=False)


def _run_gene_activity(run: Run) -> None:
    from . import datasets, pp
    from ._cli._files import input_path
    from ._utils._keys import GENE_ACTIVITY_KEY
    from .datasets._annotation import _canonical

    args = run.args
    check_output_path(args.output)
    params = verb_params(args)
    run.params = {"genome": args.genome, "annotation": args.annotation, **params}
    if args.genome is not None:
        try:
            _canonical(args.genome)
        except ValueError as err:
            raise UsageError(f"--genome: {exception_message(err)}") from None
    peaks = run.read("--peaks")
    with run.progress.step("reading the gene annotation"):
        if args.genome is not None:
            annotation = datasets.gene_annotation(args.genome, data_dir=args.data_dir, download=args.download)
        else:
            annotation = datasets.read_gene_table(input_path(args.annotation, "--annotation"))
    with run.progress.step(f"sct.{run.verb.function}"):
        result = pp.gene_activity(peaks, annotation=annotation, **params)
    run.finish(result, result, GENE_ACTIVITY_KEY)


def _gene_activity_metrics(run: Run, result: Any, uns: dict) -> dict[str, Any]:
    import numpy as np

    per_cell = np.asarray((result.X != 0).sum(axis=1)).ravel()
    recorded = uns["params"]
    return {
        "n_cells": result.n_obs,
        "n_genes": result.n_vars,
        **{k: recorded.get(k) for k in ("n_peaks_total", "n_peaks_used", "n_peaks_unmatched_chrom")},
        "median_active_genes_per_cell": float(np.median(per_cell)) if per_cell.size else None,
    }


# ------------------------------------------------------------------------------- bermuda, metaneighbor
def _bermuda_metrics(run: Run, adata: Any, uns: dict) -> dict[str, Any]:
    return {
        "n_cells": adata.n_obs,
        "n_batches": int(adata.obs[run.args.batch_key].nunique()),
        "n_genes_used": len(uns.get("genes", [])),
        "n_cluster_pairs": len(uns.get("cluster_pairs", [])),
        "epochs_trained": uns.get("epochs_trained"),
        "embedding_shape": list(adata.obsm[uns["keys"]["obsm"][0]].shape),
    }


def _metaneighbor_metrics(run: Run, adata: Any, uns: dict) -> dict[str, Any]:
    import numpy as np

    sim = np.asarray(uns["similarity"], dtype=float)
    batches = np.asarray(uns["cluster_batches"])
    across = batches[:, None] != batches[None, :]
    return {
        "n_clusters": len(uns["clusters"]),
        "max_similarity_across_batches": float(sim[across].max()) if across.any() else None,
        "n_pairs_above_0.85": int(((sim >= 0.85) & across).sum() // 2),
    }


# ------------------------------------------------------------------------------------------- trvae
def _add_model_location(parser: argparse.ArgumentParser, written: bool) -> None:
    where = parser.add_argument_group("model").add_mutually_exclusive_group(required=True)
    verb = "written by sct.tl.trvae(save_model=...)" if written else "read by sct.models.TRVAE.load"
    where.add_argument("--model-dir", metavar="DIR", help=f"model directory ({verb})")
    where.add_argument(
        "--model-file", metavar="FILE", help="the model as one file (the directory's model.pt)"
    )


def _run_trvae_train(run: Run) -> None:
    args = run.args
    check_output_path(args.output)
    run.params = verb_params(args)
    adata = run.read("--input")
    run.check_columns(adata, "the input (--input)", ["condition_key"])
    run.params["save_model"] = args.model_dir or args.model_file
    with run.model_saved(run.params, one_file=args.model_file is not None):
        run.call(adata)
    from ._utils._keys import embedding_uns_key

    run.finish(adata, adata, embedding_uns_key(args.key_added))


def _trvae_metrics(run: Run, adata: Any, uns: dict) -> dict[str, Any]:
    return {
        "n_cells": adata.n_obs,
        "conditions": list(uns.get("conditions", [])),
        "latent_shape": list(adata.obsm[uns["keys"]["obsm"][0]].shape),
        "training": dict(uns.get("training", {})),
    }


def _run_trvae_predict(run: Run) -> None:
    import numpy as np
    import pandas as pd
    import torch
    from anndata import AnnData

    from ._cli._files import MODEL_FILE
    from ._utils._transfer import check_unique_names
    from ._utils._validation import get_matrix, take_columns
    from .models import TRVAE

    args = run.args
    check_output_path(args.output)
    run.params = verb_params(args)
    adata = run.read("--input")
    with model_read_from(args.model_dir, args.model_file) as model_dir:
        try:
            registry = TRVAE.load_registry(str(model_dir))
            saved = torch.load(model_dir / MODEL_FILE, map_location="cpu", weights_only=False)
        except Exception as err:  # torch and scvi raise many types for a file that is not a model
            raise DataError(f"cannot read the trVAE model: {exception_message(err)}") from None
        setup = registry.get("setup_args", {})
        condition_key, layer = setup.get("condition_key"), setup.get("layer")
        genes = [str(g) for g in np.asarray(saved.get("var_names", []))]
        missing = [g for g in genes if g not in adata.var_names]
        if missing:
            raise DataError(
                f"--input lacks {len(missing)} of the model's {len(genes)} genes (for example {missing[:3]})"
            )
        obs = adata.obs.copy()
        if condition_key not in obs.columns:
            if args.source_condition is None:
                raise DataError(
                    f"--input has no .obs column {condition_key!r} (the model's condition key); add it or "
                    "pass --source-condition"
                )
            obs[condition_key] = args.source_condition
        check_unique_names(adata, "--input")
        X = take_columns(get_matrix(adata, layer, "the input"), adata.var_names.get_indexer(genes))
        work = AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(genes)))
        with run.progress.step(f"sct.{run.verb.function}"):
            model = TRVAE.load(str(model_dir), adata=work, accelerator="cpu")
            result = model.predict(work, **run.params)
    result.obs = result.obs.drop(columns=[c for c in result.obs.columns if c.startswith("_scvi")])
    run.recorded_params = {
        "condition_key": condition_key,
        "layer": layer,
        "conditions": list(model.conditions_),
    }
    run.metrics = {
        "n_cells": result.n_obs,
        "n_genes": result.n_vars,
        "source_counts": {str(k): int(v) for k, v in result.obs["source_condition"].value_counts().items()},
    }
    run.write(result)


# ------------------------------------------------------------------------------------------ registry
_BATCHES = (("--input", "cells x genes of all batches (h5ad)"),)

VERBS: list[Verb] = [
    Verb(
        "label-transfer",
        "tl.label_transfer",
        "transfer cell-type labels from a reference (RNA) to a query (ATAC gene activity, or RNA): "
        "sct.tl.label_transfer",
        output="annotated query (h5ad), or the annotated MuData (h5mu) with --mudata",
        metrics=label_metrics,
        add_arguments=_add_label_transfer,
        run=_run_label_transfer,
    ),
    Verb(
        "gene-activity",
        "pp.gene_activity",
        "sum peak accessibility over gene regions (peaks -> genes): sct.pp.gene_activity",
        inputs=(("--peaks", "cells x peaks accessibility (h5ad)"),),
        output="cells x genes gene activity (h5ad)",
        skip=("annotation",),
        metrics=_gene_activity_metrics,
        add_arguments=_add_gene_annotation,
        run=_run_gene_activity,
    ),
    Verb(
        "castle",
        "tl.castle",
        "classify target cells with CaSTLe trained on a labelled source: sct.tl.castle",
        inputs=(
            ("--source", "labelled cells (counts or log-normalised, h5ad)"),
            ("--target", "cells to classify"),
        ),
        output="annotated target (h5ad)",
        metrics=label_metrics,
        add_arguments=_add_truth_key,
    ),
    Verb(
        "bermuda",
        "tl.bermuda",
        "align batches with BERMUDA and store the aligned embedding: sct.tl.bermuda",
        inputs=_BATCHES,
        output="the input with the aligned embedding (h5ad)",
        metrics=_bermuda_metrics,
    ),
    Verb(
        "metaneighbor",
        "tl.metaneighbor",
        "score cluster similarity across batches with MetaNeighbor: sct.tl.metaneighbor",
        inputs=_BATCHES,
        output="the input with the MetaNeighbor scores in .uns (h5ad)",
        metrics=_metaneighbor_metrics,
    ),
    Verb(
        "trvae",
        "tl.trvae",
        "train trVAE across conditions (train), or predict cells under another condition (predict)",
        actions=(
            Verb(
                "train",
                "tl.trvae",
                "train trVAE (sct.tl.trvae) across the conditions of one AnnData; write its latent "
                "representation and the model",
                inputs=(("--input", "cells x genes, log-normalised (h5ad)"),),
                output="the input with the latent representation",
                skip=("copy", "enable_progress_bar", "save_model"),
                metrics=_trvae_metrics,
                add_arguments=lambda p: _add_model_location(p, written=True),
                run=_run_trvae_train,
            ),
            Verb(
                "predict",
                "models.TRVAE.predict",
                "predict cells under another condition with a trained trVAE model (sct.models.TRVAE.predict)",
                inputs=(("--input", "cells to transfer, with the model's genes"),),
                output="the predicted cells (h5ad)",
                add_arguments=lambda p: _add_model_location(p, written=False),
                run=_run_trvae_predict,
            ),
        ),
    ),
]


def available_verbs() -> list[Verb]:
    """The subcommands (building them imports no part of the package beyond this module)."""
    return list(VERBS)


def build_parser(verbs: Sequence[Verb] | None = None, *, only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with one subcommand per verb.

    With ``only``, just that subcommand gets its options (read from the verb's signature, which imports
    the verb), so that ``sctransfer --help`` and ``--version`` import nothing.
    """
    verbs = available_verbs() if verbs is None else verbs
    parser = Parser(
        prog=PROG,
        description="Transfer learning across single-cell datasets and modalities, on h5ad/h5mu files. "
        "Each command reads its inputs, runs the sctransfer verb of the same name and writes the result "
        "atomically. Exit status: 0 success, 1 data error, 2 usage error.",
        epilog="Run 'sctransfer COMMAND --help' for the options of a command. GALAXY_SLOTS sets the threads.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for verb in verbs:
        p = sub.add_parser(verb.name, help=verb.help, description=verb.help, allow_abbrev=False)
        p.set_defaults(_verb=verb)
        if only is None or verb.name == only:
            verb.build(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sctransfer`` command line.

    Parameters
    ----------
    argv
        The arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    The exit status: :data:`EXIT_OK`, :data:`EXIT_DATA_ERROR` or :data:`EXIT_USAGE_ERROR`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # answered before the parser (and its check of the verbs) is built
        print(f"{PROG} {package_version()}")
        return EXIT_OK
    debug = "--debug" in argv
    prog = PROG
    try:
        environment = configure_environment()
        command = next((a for a in argv if not a.startswith("-")), None)
        parser = build_parser(only=command if command in {v.name for v in VERBS} else "")
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return int(exc.code or 0)
        verb: Verb | None = getattr(args, "_verb", None)
        if verb is None:
            names = ", ".join(v.name for v in available_verbs())
            raise UsageError(f"choose a command: {names} (see '{PROG} --help')")
        prog = f"{PROG} {verb.name}"
        if verb.actions:
            if getattr(args, "_action", None) is None:
                raise UsageError(
                    f"choose an action: {' or '.join(a.name for a in verb.actions)} (see '{prog} --help')"
                )
            verb = args._action
            prog = f"{prog} {verb.name}"
        debug = args.debug
        summary_path = (
            None if args.summary_json is None else check_output_path(args.summary_json, "--summary-json")
        )
        tty = stderr_is_tty()  # progress bars only on a terminal (sct.settings.progress_bar)
        run = Run(verb=verb, args=args, progress=Progress(tty))
        start = time.perf_counter()
        with console(args.verbose, progress_bar=tty), apply_threads(environment["threads"]):
            (verb.run or run_verb)(run)
            if summary_path is not None:
                summary = {
                    "sctransfer_version": package_version(), "command": prog.removeprefix(f"{PROG} "),
                    "argv": argv, "params": run.params, "recorded_params": run.recorded_params,
                    "inputs": run.inputs, "outputs": run.outputs, "metrics": run.metrics,
                    "seconds": time.perf_counter() - start, "environment": environment,
                }  # fmt: skip
                write_json(summary_path, summary)
        return EXIT_OK
    except CLIError as err:
        if debug:
            raise
        print(f"{prog}: error: {one_line(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, LookupError, OSError) as err:
        if debug:
            raise
        print(f"{prog}: error: {exception_message(err)}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except Exception as err:
        if debug:
            raise
        print(
            f"{prog}: error: unexpected {type(err).__name__}: {exception_message(err)} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_DATA_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
