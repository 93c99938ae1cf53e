"""The ``sctransfer`` command line: verbs, atomic outputs, summaries, exit codes and error lines."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from sctransfer import cli as cli_mod
from sctransfer._cli._base import THREAD_ENV, galaxy_slots
from sctransfer._cli._files import write_atomic
from sctransfer._cli._options import verb_params

SENTINEL = b"previous content, must survive a failed run\n"


def _h5_keys(path: Path) -> set[str]:
    keys: list[str] = []
    with h5py.File(path, "r") as f:
        f.visit(keys.append)
    return set(keys)


def _assert_one_error_line(result, code: int, *needles: str) -> None:
    assert result.code == code, result.err
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("sctransfer") and "error:" in line, line
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in line, line


def _untouched(path: Path) -> None:
    assert path.read_bytes() == SENTINEL
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".part")]
    assert not leftovers, leftovers


# ------------------------------------------------------------------------------------------- basics
def test_help_lists_every_verb(cli):
    result = cli("--help")
    assert result.code == 0
    for verb in cli_verbs():
        assert verb in result.out


def cli_verbs() -> list[str]:
    return [verb.name for verb in cli_mod.available_verbs()]


def test_version(cli):
    result = cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"sctransfer {cli_mod.package_version()}"


@pytest.mark.parametrize("verb", cli_verbs_static := [v.name for v in cli_mod.VERBS])
def test_subcommand_help(cli, verb):
    if verb not in cli_verbs():
        pytest.skip(f"sctransfer does not provide the function behind {verb!r}")
    argv = [verb, "train"] if verb == "trvae" else [verb]
    result = cli(*argv, "--help")
    assert result.code == 0
    assert "--output" in result.out and "--summary-json" in result.out


def test_console_script(tmp_path):
    """The installed entry point (or ``python -m sctransfer.cli`` in a source tree) answers --help."""
    script = Path(sys.executable).with_name("sctransfer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sctransfer.cli"]
    proc = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "label-transfer" in proc.stdout


def _defaults_match(verb: str, function, *required: str, skip: tuple[str, ...] = ()) -> None:
    parser = cli_mod.build_parser()
    args = parser.parse_args([*verb.split(), *required])
    params = inspect.signature(function).parameters
    checked = 0
    for name, param in params.items():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY or name in skip:
            continue
        assert hasattr(args, name), f"{verb}: no option --{name.replace('_', '-')}"
        if param.default is not inspect.Parameter.empty:
            assert getattr(args, name) == param.default, name
        checked += 1
    assert checked >= 4


def test_options_mirror_python_keywords():
    import sctransfer as sct

    _defaults_match(
        "label-transfer", sct.tl.label_transfer, "--labels-key", "x", "--output", "o", skip=("copy",)
    )
    _defaults_match(
        "gene-activity", sct.pp.gene_activity, "--peaks", "p", "--genome", "GRCh38", "--output", "o",
        skip=("annotation",),
    )  # fmt: skip
    _defaults_match(
        "castle", sct.tl.castle, "--source", "s", "--target", "t", "--labels-key", "x", "--output", "o",
        skip=("copy",),
    )  # fmt: skip


@pytest.mark.skipif(
    not {"bermuda", "metaneighbor", "trvae"} <= set(cli_verbs()), reason="verbs not in this build"
)
def test_options_mirror_python_keywords_of_the_newer_verbs():
    import sctransfer as sct

    _defaults_match(
        "bermuda", sct.tl.bermuda, "--input", "i", "--batch-key", "b", "--output", "o", skip=("copy",)
    )
    _defaults_match(
        "metaneighbor", sct.tl.metaneighbor, "--input", "i", "--batch-key", "b", "--cluster-key", "c", "--output",
        "o", skip=("copy",),
    )  # fmt: skip
    _defaults_match(
        "trvae train", sct.tl.trvae, "--input", "i", "--condition-key", "c", "--output", "o", "--model-file", "m",
        skip=("copy", "enable_progress_bar", "save_model"),
    )  # fmt: skip
    predict = inspect.signature(sct.models.TRVAE.predict).parameters
    args = cli_mod.build_parser().parse_args(
        ["trvae", "predict", "--input", "i", "--output", "o", "--model-file", "m", "--target-condition", "t"]
    )
    for name in ("source_condition", "sample", "batch_size", "random_state"):
        assert getattr(args, name) == predict[name].default, name


# ------------------------------------------------------------------------------------------- verbs
def test_label_transfer_knn(cli, data, tmp_path):
    out, summary = tmp_path / "out.h5ad", tmp_path / "summary.json"
    result = cli(
        "label-transfer", "--rna", data / "rna.h5ad", "--atac", data / "atac.h5ad", "--labels-key", "cell_type",
        "--method", "knn", "--n-comps", "10", "--truth-key", "cell_type", "--output", out,
        "--summary-json", summary,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.err == ""  # quiet off a terminal
    assert {
        "obs/sct_label",
        "obs/sct_label_confidence",
        "obsm/sct_label_proba",
        "obsm/X_sct_label",
        "uns/sct_label/params",
    } <= _h5_keys(out)
    info = json.loads(summary.read_text())
    assert info["command"] == "label-transfer"
    assert info["params"]["method"] == "knn" and info["params"]["n_comps"] == 10
    assert info["recorded_params"]["n_neighbors"] == 30
    assert info["inputs"]["rna"]["n_obs"] == 90 and info["outputs"]["output"]["n_obs"] == 90
    assert info["metrics"]["accuracy"] > 0.5
    assert sum(info["metrics"]["label_counts"].values()) == 90


def test_label_transfer_default_is_the_ensemble(cli, data, tmp_path):
    out, summary = tmp_path / "out.h5ad", tmp_path / "summary.json"
    result = cli(
        "label-transfer", "--rna", data / "rna.h5ad", "--atac", data / "atac.h5ad", "--labels-key", "cell_type",
        "--gene-case", "exact", "--key-added", "pred", "--truth-key", "cell_type", "--output", out,
        "--summary-json", summary,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert {
        "obs/pred",
        "obs/pred_confidence",
        "obsm/pred_proba",
        "obsm/X_pred",
        "uns/pred/params",
    } <= _h5_keys(out)
    info = json.loads(summary.read_text())
    assert info["params"]["method"] == "ensemble" and info["params"]["gene_case"] == "exact"
    assert info["recorded_params"]["method"] == "ensemble" and info["recorded_params"]["gene_case"] == "exact"
    assert info["metrics"]["accuracy"] > 0.5


def test_label_transfer_saves_the_reference_model(cli, data, tmp_path):
    import sctransfer as sct

    model, out, summary = tmp_path / "reference_model", tmp_path / "out.h5ad", tmp_path / "s.json"
    argv = ("label-transfer", "--rna", data / "rna.h5ad", "--atac", data / "atac.h5ad", "--labels-key",
            "cell_type", "--output", out, "--save-model", model, "--summary-json", summary)  # fmt: skip
    result = cli(*argv)
    assert result.code == 0, result.err
    assert json.loads(summary.read_text())["outputs"]["model"]["path"] == str(model)
    saved = {p.name: p.read_bytes() for p in model.iterdir()}
    assert sct.models.EnsembleTransfer.load(model).classes_ == ["type_0", "type_1", "type_2"]
    # a failed run leaves the saved model as it was; a successful one replaces it
    _assert_one_error_line(cli(*argv, "--n-neighbors", "500"), 1, "n_neighbors")
    assert {p.name: p.read_bytes() for p in model.iterdir()} == saved
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert cli(*argv).code == 0
    assert sorted(p.name for p in model.iterdir()) == sorted(saved)
    assert cli(*argv[:-4], "--method", "knn", "--save-model", model).code == 1  # knn keeps no model


def test_label_transfer_mudata_scjoint(cli, data, tmp_path):
    out = tmp_path / "out.h5mu"
    result = cli(
        "label-transfer", "--mudata", data / "multiome.h5mu", "--labels-key", "cell_type", "--method", "scjoint",
        "--max-epochs", "1", "--max-epochs-stage3", "0", "--n-neighbors", "10", "--output", out,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert {"mod/atac/obs/sct_label", "mod/atac/obsm/X_sct_label", "mod/rna/obsm/X_sct_label"} <= _h5_keys(
        out
    )


def test_gene_activity_table_and_bed_agree(cli, data, tmp_path):
    import anndata as ad

    a, b = tmp_path / "a.h5ad", tmp_path / "b.h5ad"
    assert (
        cli(
            "gene-activity", "--peaks", data / "peaks.h5ad", "--annotation", data / "genes.tsv", "--output", a
        ).code
        == 0
    )
    assert (
        cli(
            "gene-activity", "--peaks", data / "peaks.h5ad", "--annotation", data / "genes.bed", "--output", b
        ).code
        == 0
    )
    ga, gb = ad.read_h5ad(a), ad.read_h5ad(b)
    assert ga.n_vars == gb.n_vars == 12
    assert (ga.X != gb.X).nnz == 0
    assert ga.uns["gene_activity"]["params"]["upstream"] == 2000


def test_castle(cli, data, tmp_path):
    out, summary = tmp_path / "out.h5ad", tmp_path / "s.json"
    result = cli(
        "castle", "--source", data / "castle_source.h5ad", "--target", data / "castle_target.h5ad",
        "--labels-key", "cell_type", "--n-features", "10", "--kwarg", "n_rounds=5", "--truth-key", "cell_type",
        "--output", out, "--summary-json", summary,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert {"obs/castle", "obs/castle_confidence", "obsm/castle_proba", "uns/castle/params"} <= _h5_keys(out)
    assert "obs/castle_label" not in _h5_keys(out)
    info = json.loads(summary.read_text())
    assert info["params"]["n_rounds"] == 5 and info["recorded_params"]["n_rounds"] == 5
    assert info["recorded_params"]["method"] == "castle" and info["recorded_params"]["gene_case"] == "auto"
    assert 0 <= info["metrics"]["accuracy"] <= 1


@pytest.mark.skipif("bermuda" not in cli_verbs(), reason="sct.tl.bermuda is not in this build")
def test_bermuda_and_metaneighbor(cli, data, tmp_path):
    out, scores = tmp_path / "aligned.h5ad", tmp_path / "scores.h5ad"
    result = cli(
        "bermuda", "--input", data / "batches.h5ad", "--batch-key", "batch", "--cluster-key", "cell_type",
        "--n-top-genes", "none", "--min-cells", "2", "--max-epochs", "2", "--output", out,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert {"obsm/X_bermuda", "obs/bermuda_cluster", "uns/bermuda/cluster_pairs"} <= _h5_keys(out)
    result = cli(
        "metaneighbor", "--input", data / "batches.h5ad", "--batch-key", "batch", "--cluster-key", "cell_type",
        "--output", scores,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "uns/metaneighbor/similarity" in _h5_keys(scores)


@pytest.mark.skipif("trvae" not in cli_verbs(), reason="sct.tl.trvae is not in this build")
@pytest.mark.parametrize("where", ["--model-dir", "--model-file"])
def test_trvae_train_then_predict(cli, data, tmp_path, where):
    model = tmp_path / ("model" if where == "--model-dir" else "model.pt")
    latent, predicted, summary = tmp_path / "latent.h5ad", tmp_path / "pred.h5ad", tmp_path / "s.json"
    result = cli(
        "trvae", "train", "--input", data / "batches.h5ad", "--condition-key", "batch", "--max-epochs", "2",
        "--kwarg", "n_latent=3", "--kwarg", "encoder_layers=[8]", "--kwarg", "decoder_layers=[8]",
        "--output", latent, where, model, "--summary-json", summary,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "obsm/X_trvae" in _h5_keys(latent)
    assert json.loads(summary.read_text())["command"] == "trvae train"
    assert (model / "model.pt").is_file() if where == "--model-dir" else model.is_file()
    result = cli(
        "trvae", "predict", "--input", data / "batches.h5ad", where, model, "--target-condition", "batch_1",
        "--output", predicted,
    )  # fmt: skip
    assert result.code == 0, result.err
    import anndata as ad

    pred = ad.read_h5ad(predicted)
    assert pred.shape == (120, 40)
    assert set(pred.obs["batch"].astype(str)) == {"batch_1"}
    assert not any(c.startswith("_scvi") for c in pred.obs.columns)


@pytest.mark.skipif("trvae" not in cli_verbs(), reason="sct.tl.trvae is not in this build")
def test_trvae_predict_bad_model(cli, data, tmp_path, sentinel):
    result = cli(
        "trvae", "predict", "--input", data / "batches.h5ad", "--model-file", data / "genes.tsv",
        "--target-condition", "batch_1", "--output", sentinel,
    )  # fmt: skip
    _assert_one_error_line(result, 1, "model")
    _untouched(sentinel)
    assert cli("trvae").code == 2


def test_output_replaced_atomically_and_readable(cli, data, tmp_path):
    out = tmp_path / "out.h5ad"
    out.write_bytes(SENTINEL)
    result = cli(
        "gene-activity", "--peaks", data / "peaks.h5ad", "--annotation", data / "genes.tsv", "--output", out
    )
    assert result.code == 0
    assert "X" in _h5_keys(out)
    assert out.stat().st_mode & 0o600 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]


def test_failed_write_leaves_target_untouched(tmp_path):
    target = tmp_path / "out.h5ad"
    target.write_bytes(SENTINEL)

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, broken)
    _untouched(target)


# ------------------------------------------------------------------------------------------ bad input
@pytest.fixture
def sentinel(tmp_path) -> Path:
    path = tmp_path / "out.h5ad"
    path.write_bytes(SENTINEL)
    return path


def test_missing_file(cli, data, sentinel):
    result = cli(
        "label-transfer", "--rna", sentinel.parent / "nope.h5ad", "--atac", data / "atac.h5ad", "--labels-key",
        "cell_type", "--output", sentinel,
    )  # fmt: skip
    _assert_one_error_line(result, 1, "--rna", "not found", "nope.h5ad")
    _untouched(sentinel)


def test_csv_passed_as_h5ad(cli, data, tmp_path, sentinel):
    csv = tmp_path / "table.h5ad"
    csv.write_text("cell,gene_0,gene_1\nc1,1,2\nc2,3,4\n")
    result = cli(
        "castle", "--source", csv, "--target", data / "castle_target.h5ad", "--labels-key", "cell_type",
        "--output", sentinel,
    )  # fmt: skip
    _assert_one_error_line(result, 1, "--source", "not HDF5", "CSV")
    _untouched(sentinel)


def test_h5mu_passed_as_h5ad(cli, data, sentinel):
    result = cli(
        "label-transfer", "--rna", data / "multiome.h5mu", "--atac", data / "atac.h5ad", "--labels-key",
        "cell_type", "--output", sentinel,
    )  # fmt: skip
    _assert_one_error_line(result, 1, "h5mu")
    _untouched(sentinel)


def test_unknown_option(cli, data, sentinel):
    result = cli(
        "gene-activity", "--peaks", data / "peaks.h5ad", "--annotation", data / "genes.tsv", "--output", sentinel,
        "--frobnicate", "3",
    )  # fmt: skip
    _assert_one_error_line(result, 2, "--frobnicate")
    _untouched(sentinel)


def test_missing_labels_key(cli, data, sentinel):
    result = cli(
        "label-transfer", "--rna", data / "rna.h5ad", "--atac", data / "atac.h5ad", "--labels-key", "celltype",
        "--method", "knn", "--output", sentinel,
    )  # fmt: skip
    _assert_one_error_line(result, 1, "--labels-key", "'celltype'", "cell_type")
    _untouched(sentinel)


def test_data_error_inside_the_verb(cli, data, sentinel):
    """A ValueError of the Python verb (here: more neighbours than labelled cells) is one line, exit 1."""
    result = cli(
        "label-transfer", "--rna", data / "rna.h5ad", "--atac", data / "atac.h5ad", "--labels-key", "cell_type",
        "--method", "knn", "--n-neighbors", "500", "--output", sentinel,
    )  # fmt: skip
    _assert_one_error_line(result, 1, "n_neighbors")
    _untouched(sentinel)


def test_preset_of_a_method_without_presets_is_one_error_line(cli, data, sentinel):
    result = cli(
        "label-transfer", "--rna", data / "rna.h5ad", "--atac", data / "atac.h5ad", "--labels-key", "cell_type",
        "--preset", "faithful", "--output", sentinel,
    )  # fmt: skip
    _assert_one_error_line(result, 1, "no faithful preset", "scjoint")
    _untouched(sentinel)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "choose a command"),
        (["label-transfer", "--labels-key", "x", "--output", "o.h5ad"], "--rna and --atac"),
        (["label-transfer", "--rna", "a", "--mudata", "b", "--labels-key", "x", "--output", "o"], "not both"),
        (["label-transfer", "--rna", "a", "--atac", "b", "--output", "o"], "--labels-key"),
        (
            [
                "label-transfer",
                "--rna",
                "a",
                "--atac",
                "b",
                "--labels-key",
                "x",
                "--metric",
                "cosine",
                "--output",
                "o",
            ],
            "--metric: option of --method knn, not of --method ensemble",
        ),
        (
            [
                "label-transfer",
                "--rna",
                "a",
                "--atac",
                "b",
                "--labels-key",
                "x",
                "--method",
                "scjoint",
                "--n-comps",
                "5",
                "--output",
                "o",
            ],
            "--n-comps: option of --method ensemble or knn",
        ),
        (
            [
                "label-transfer",
                "--rna",
                "a",
                "--atac",
                "b",
                "--labels-key",
                "x",
                "--normalize",
                "--output",
                "o",
            ],
            "--normalize",
        ),
        (
            [
                "label-transfer",
                "--rna",
                "a",
                "--atac",
                "b",
                "--labels-key",
                "x",
                "--gene-case",
                "upper",
                "--output",
                "o",
            ],
            "invalid choice",
        ),
        (
            [
                "castle",
                "--source",
                "a",
                "--target",
                "b",
                "--labels-key",
                "x",
                "--n-features",
                "many",
                "--output",
                "o",
            ],
            "int",
        ),
        (
            ["gene-activity", "--peaks", "p", "--genome", "GRCh38", "--annotation", "a", "--output", "o"],
            "not allowed",
        ),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors(cli, argv, needle):
    _assert_one_error_line(cli(*argv), 2, needle)


def test_unknown_genome_is_a_usage_error(cli, data, sentinel):
    result = cli("gene-activity", "--peaks", data / "peaks.h5ad", "--genome", "hg42", "--output", sentinel)
    _assert_one_error_line(result, 2, "--genome", "hg42")
    _untouched(sentinel)


def test_missing_output_directory(cli, data, tmp_path):
    result = cli(
        "gene-activity", "--peaks", data / "peaks.h5ad", "--annotation", data / "genes.tsv", "--output",
        tmp_path / "no" / "such" / "out.h5ad",
    )  # fmt: skip
    _assert_one_error_line(result, 1, "does not exist")


def test_debug_shows_the_traceback(cli, data, tmp_path):
    with pytest.raises(cli_mod.DataError, match="not found"):
        cli(
            "label-transfer", "--rna", data / "rna.h5ad", "--atac", data / "atac.h5ad", "--labels-key", "x",
            "--method", "knn", "--output", tmp_path / "o.h5ad", "--debug",
        )  # fmt: skip


# ------------------------------------------------------------------------------------- environment
def test_progress_only_on_a_terminal(cli, data, tmp_path, monkeypatch):
    argv = ("gene-activity", "--peaks", data / "peaks.h5ad", "--annotation", data / "genes.tsv")
    quiet = cli(*argv, "--output", tmp_path / "a.h5ad")
    assert quiet.code == 0 and quiet.err == ""
    monkeypatch.setattr(cli_mod, "stderr_is_tty", lambda: True)
    shown = cli(*argv, "--output", tmp_path / "b.h5ad")
    assert shown.code == 0
    assert "sctransfer: sct.pp.gene_activity: done in" in shown.err


def test_galaxy_environment(monkeypatch, tmp_path):
    """GALAXY_SLOTS sets the thread variables; caches move off an unwritable home and package directory."""
    for name in (
        *THREAD_ENV,
        "NUMBA_NUM_THREADS",
        "NUMBA_CACHE_DIR",
        "MPLCONFIGDIR",
        "XDG_CACHE_HOME",
    ):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("GALAXY_SLOTS", "1")
    package_dir = Path(cli_mod.__file__).resolve().parent
    import sctransfer._cli._base as base_mod

    def access(path, mode):  # the home and the installed package are read-only, as on a Galaxy node
        path = Path(path)
        return not (path == package_dir or path == home or home in path.parents)

    monkeypatch.setattr(base_mod.os, "access", access)
    env = base_mod.configure_environment()
    assert env["threads"] == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert "NUMBA_NUM_THREADS" not in os.environ  # numba's pool is limited in-process instead
    for key in ("numba_cache_dir", "mplconfigdir"):
        assert env[key] is not None and home not in Path(env[key]).parents


def test_galaxy_slots_sets_thread_pools(cli, data, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("GALAXY_SLOTS", "1")
    seen = {}
    real = cli_mod._run_gene_activity

    def spy(run):
        seen["torch"] = torch.get_num_threads()
        real(run)

    verbs = [dataclasses.replace(v, run=spy) if v.name == "gene-activity" else v for v in cli_mod.VERBS]
    monkeypatch.setattr(cli_mod, "VERBS", verbs)
    summary = tmp_path / "s.json"
    result = cli(
        "gene-activity", "--peaks", data / "peaks.h5ad", "--annotation", data / "genes.tsv",
        "--output", tmp_path / "o.h5ad", "--summary-json", summary,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert seen["torch"] == 1
    assert json.loads(summary.read_text())["environment"]["threads"] == 1


def test_invalid_galaxy_slots_is_ignored(monkeypatch, capsys):
    monkeypatch.setenv("GALAXY_SLOTS", "many")
    assert galaxy_slots() is None
    assert "GALAXY_SLOTS" in capsys.readouterr().err


def test_help_and_version_import_no_verb():
    code = (
        "import sys, contextlib, io\n"
        "from sctransfer.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    codes = [main(['--help']), main(['--version'])]\n"
        "print(codes, sorted(m for m in ('sctransfer.tl', 'sctransfer.pp', 'anndata', 'torch') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 0] []"


def test_options_and_help_come_from_the_signature_and_docstring():
    parser = cli_mod.build_parser(only="castle")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["castle"]
    actions = {a.dest: a for a in sub._actions}
    assert actions["mode"].choices == ["one_vs_rest", "multiclass"]
    assert actions["labels_key"].required
    assert "Rejection threshold" in actions["threshold"].help
    args = parser.parse_args(["castle", "--source", "s", "--target", "t", "--labels-key", "x", "--output", "o",
                              "--threshold", "none", "--log-base", "e", "--random-state", "none"])  # fmt: skip
    assert (args.threshold, args.log_base, args.random_state) == (None, "e", None)
    assert verb_params(args)["labels_key"] == "x"
    with pytest.raises(cli_mod.UsageError, match="expected none or auto or e or float, got 'ten'"):
        parser.parse_args(["castle", "--source", "s", "--target", "t", "--labels-key", "x", "--output", "o",
                           "--log-base", "ten"])  # fmt: skip


def test_every_label_transfer_method_has_its_options():
    from sctransfer.tl._label_transfer import METHODS

    assert set(cli_mod._METHOD_OPTIONS) == set(METHODS)
    parser = cli_mod.build_parser(only="label-transfer")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "label-transfer"
    ]
    owners = sub.get_default("_method_owners")
    assert owners["smooth_steps"] == ("ensemble",) and owners["n_comps"] == ("ensemble", "knn")
    assert owners["max_epochs"] == ("scjoint",) and owners["n_features"] == ("castle",)
    args = parser.parse_args(["label-transfer", "--labels-key", "x", "--output", "o", "--no-mapping"])
    assert args.mapping is False and args.smooth_steps is None
