"""Which source a benchmark measured: recorded with every result, so a row can be traced to its commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import sctransfer


def source_commit() -> str:
    """The commit of the imported ``sctransfer`` source, with ``+changes`` when its files differ from it.

    ``"unknown"`` outside a git checkout (an installed wheel).
    """
    source = Path(sctransfer.__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(source), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        changed = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if changed else "")
