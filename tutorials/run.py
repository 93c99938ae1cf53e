"""Execute the tutorials (MyST markdown notebooks) on the real data, within a time budget.

Each ``tutorials/<name>.md`` is read with jupytext, executed with nbclient in a fresh kernel whose
working directory is ``tutorials/``, and written with its outputs to ``docs/tutorials/<name>.ipynb``, where
the Sphinx build renders it without executing it again. ``make tutorials`` runs all of them; ``make docs``
runs only those whose output is missing or older than the source (``--missing-only``).

A notebook fails when a cell raises, when one cell runs longer than what is left of the notebook's
``--timeout``, or when all of them together exceed ``--budget`` seconds. The wall time of each notebook
is printed and written to ``docs/tutorials/timings.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "tutorials"


def _execute(src: Path, dest: Path, timeout: float) -> float:
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    start = time.monotonic()
    deadline = start + timeout
    client = NotebookClient(
        nb,
        kernel_name="python3",
        resources={"metadata": {"path": str(HERE)}},
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        startup_timeout=120,
    )
    client.execute()
    seconds = time.monotonic() - start
    nb.metadata.setdefault("sctransfer", {})["execution_seconds"] = round(seconds, 1)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(dest)
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Execute the tutorials named on the command line (all by default)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="tutorial names (default: every tutorials/*.md)")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds for all notebooks together")
    parser.add_argument("--timeout", type=float, default=360.0, help="seconds for one notebook")
    parser.add_argument("--missing-only", action="store_true", help="skip notebooks whose output is current")
    args = parser.parse_args(argv)

    sources = sorted(p for p in HERE.glob("*.md") if p.name.lower() != "readme.md")
    if args.names:
        sources = [HERE / f"{Path(n).stem}.md" for n in args.names]
    # plots go inline in the notebooks: a non-interactive MPLBACKEND (Agg, from the Makefile) would hide them
    os.environ.pop("MPLBACKEND", None)
    # the kernels run in tutorials/: a relative data directory must not change meaning
    if os.environ.get("SCTRANSFER_DATA_DIR"):
        os.environ["SCTRANSFER_DATA_DIR"] = str(Path(os.environ["SCTRANSFER_DATA_DIR"]).resolve())
    timings_path = OUT / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    total, failed = 0.0, []
    for src in sources:
        dest = OUT / f"{src.stem}.ipynb"
        if args.missing_only and dest.is_file() and dest.stat().st_mtime >= src.stat().st_mtime:
            print(f"{src.stem}: up to date ({dest.relative_to(HERE.parent)})")
            continue
        remaining = args.budget - total
        if remaining <= 0:
            failed.append(f"{src.stem}: not run, the budget of {args.budget:.0f} s is spent")
            continue
        print(f"{src.stem}: executing ...", flush=True)
        start = time.monotonic()
        try:
            seconds = _execute(src, dest, min(args.timeout, remaining))
        except Exception as err:  # a cell error or a timeout: report it and go on with the others
            seconds = time.monotonic() - start
            message = re.sub(r"\x1b\[[0-9;]*m", "", str(err))[-3000:]
            failed.append(f"{src.stem}: {type(err).__name__} after {seconds:.0f} s\n{message}")
        else:
            timings[src.stem] = round(seconds, 1)
            print(f"{src.stem}: {seconds:.1f} s", flush=True)
        total += seconds
    OUT.mkdir(parents=True, exist_ok=True)
    timings_path.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")
    print(f"tutorials: {total:.1f} s in all (budget {args.budget:.0f} s)")
    if failed:
        print("\nFAILED:\n" + "\n\n".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
