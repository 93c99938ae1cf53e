"""Sphinx configuration of the sctransfer documentation (``make docs`` builds it with ``-W``)."""

from __future__ import annotations

from datetime import date
from importlib.metadata import version as _version
from pathlib import Path

HERE = Path(__file__).resolve().parent

project = "sctransfer"
author = "sctransfer developers"
copyright = f"{date.today().year}, {author}"
release = _version("sctransfer-learn")
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_inv", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "_static/*.py", "_static/*.md"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
default_role = "literal"

# --- API reference ------------------------------------------------------------------------------
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_use_ivar = True
# Our "Returns" sections are prose (types come from the annotations): render them as written.
napoleon_custom_sections = [("Returns", "returns_as_prose")]

# --- notebooks: executed by `make tutorials` (tutorials/run.py), rendered here as they are ----------
nb_execution_mode = "off"
nb_merge_streams = True
nb_output_stderr = "remove"  # progress bars and library notices; warnings stay in the raw notebooks
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# --- intersphinx: offline, from the inventories in _inv/ (see _inv/make_inventories.py) -----------
intersphinx_mapping = {
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", str(HERE / "_inv" / "scanpy.inv")),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", str(HERE / "_inv" / "anndata.inv")),
    "scvi-tools": ("https://docs.scvi-tools.org/en/stable/", str(HERE / "_inv" / "scvi-tools.inv")),
}

# --- HTML ---------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = f"sctransfer {release}"
html_static_path = ["_static"]
html_theme_options = {
    "repository_url": "https://github.com/sctransfer/sctransfer",
    "use_repository_button": True,
    "path_to_docs": "docs",
    "show_toc_level": 2,
}
html_show_sourcelink = False


# --- API pages, generated from each subpackage's __all__ so that every public name is listed ----------
API_MODULES = {
    "pp": "Preprocessing",
    "tl": "Tools",
    "pl": "Plotting",
    "models": "Models",
    "metrics": "Metrics",
    "datasets": "Datasets",
    "kernels": "Kernels",
}
OPTIONAL_MODULES = {"cli": "Command line"}


def _cli_usage(cli) -> list[str]:
    """``--help`` of the ``sctransfer`` command and of each subcommand, as MyST sections."""
    import argparse
    import os

    build = getattr(cli, "build_parser", None)
    if build is None:
        return []
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parser = build()
        parser.prog = "sctransfer"
        out = ["## Usage", "", "```text", parser.format_help().rstrip(), "```", ""]

        def sections(parser, words: list[str]) -> None:  # every subcommand and action (trvae train), in order
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, sub in action.choices.items():
                        title = " ".join(["sctransfer", *words, name])
                        out.extend([f"### `{title}`", "", "```text", sub.format_help().rstrip(), "```", ""])
                        sections(sub, [*words, name])

        sections(parser, [])
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    return out


def _write_api_pages() -> None:
    import importlib

    out = HERE / "api"
    out.mkdir(exist_ok=True)
    pages = []
    for sub, title in {**API_MODULES, **OPTIONAL_MODULES}.items():
        try:
            module = importlib.import_module(f"sctransfer.{sub}")
        except ModuleNotFoundError:
            if sub in OPTIONAL_MODULES:
                continue
            raise
        names = sorted(getattr(module, "__all__", []), key=str.lower)
        if sub == "cli":  # the console entry point: the module, then the help of every subcommand
            lines = [f"# {title}: `sctransfer`", "", "```{eval-rst}", ".. automodule:: sctransfer.cli",
                     "   :members:", "```", "", *_cli_usage(module)]  # fmt: skip
        else:
            lines = [f"# {title}: `sct.{sub}`", "", "```{eval-rst}", f".. automodule:: sctransfer.{sub}",
                     "   :no-members:", "", ".. currentmodule:: sctransfer", "", ".. autosummary::",
                     "   :toctree: ../generated", "", *[f"   {sub}.{n}" for n in names], "```", ""]  # fmt: skip
        text = "\n".join(lines)
        # stubs of names no longer public (left by an earlier build) would fail the -W build as orphans
        for stub in (HERE / "generated").glob(f"sctransfer.{sub}.*.rst"):
            if stub.name[len(f"sctransfer.{sub}.") :].split(".")[0] not in names:
                stub.unlink()
        path = out / f"{sub}.md"
        if not path.is_file() or path.read_text() != text:  # unchanged files keep Sphinx's cache valid
            path.write_text(text)
        pages.append(sub)
    settings = "\n".join(["# Settings: `sct.settings`", "", "```{eval-rst}",
                          ".. autoclass:: sctransfer._utils._settings.SctransferSettings",
                          "   :members:", "```", ""])  # fmt: skip
    path = out / "settings.md"
    if not path.is_file() or path.read_text() != settings:
        path.write_text(settings)
    pages.append("settings")
    index = "\n".join(["```{toctree}", ":maxdepth: 1", "", *pages, "```", ""])
    path = out / "index.md"
    if not path.is_file() or path.read_text() != index:
        path.write_text(index)


_write_api_pages()
