"""Start-up time: ``import sctransfer`` next to ``import scanpy``, and the command line's ``--help``.

Each command runs in a fresh interpreter, the commands taking turns round after round so that a busy
machine slows them alike; the figure is the median wall time per command. Ratios are to
``import scanpy`` in the same run.

- ``import sctransfer``: the package (the subpackages load on first access);
- ``import sctransfer; sct.tl``: what a session that calls a verb loads (scanpy and the tools, no torch);
- ``import sctransfer; sct.models.SCJoint``: a neural model (torch, Lightning, scvi-tools);
- ``sctransfer --help`` and ``sctransfer --version``.

    python benchmarks/import_time.py     # writes benchmarks/results/import_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "import_time.json"


def commands() -> dict[str, list[str]]:
    python = sys.executable
    cli = shutil.which("sctransfer", path=str(Path(python).parent)) or "sctransfer"
    return {
        "import scanpy": [python, "-c", "import scanpy"],
        "import sctransfer": [python, "-c", "import sctransfer"],
        "import sctransfer; sct.tl": [python, "-c", "import sctransfer as sct; sct.tl"],
        "import sctransfer; sct.models.SCJoint": [
            python,
            "-c",
            "import sctransfer as sct; sct.models.SCJoint",
        ],
        "sctransfer --help": [cli, "--help"],
        "sctransfer --version": [cli, "--version"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    cmds = commands()
    times: dict[str, list[float]] = {name: [] for name in cmds}
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    for cmd in cmds.values():  # warm the file cache and the bytecode once
        subprocess.run(cmd, check=True, capture_output=True, env=env)
    for _ in range(args.rounds):
        for name, cmd in cmds.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            times[name].append(time.perf_counter() - start)

    base = statistics.median(times["import scanpy"])
    rows = {}
    print(f"{'command':<40} {'median s':>9} {'min s':>7} {'x scanpy':>9}")
    for name, values in times.items():
        median = statistics.median(values)
        rows[name] = {
            "median_s": median,
            "min_s": min(values),
            "ratio_to_scanpy": median / base,
            "runs": values,
        }
        print(f"{name:<40} {median:9.2f} {min(values):7.2f} {median / base:9.2f}")
    targets = {
        "import sctransfer <= 1.2x import scanpy": rows["import sctransfer"]["ratio_to_scanpy"] <= 1.2,
        "sctransfer --help <= 2 s": rows["sctransfer --help"]["median_s"] <= 2.0,
        "sctransfer --version <= 2 s": rows["sctransfer --version"]["median_s"] <= 2.0,
    }
    for name, met in targets.items():
        print(f"{'met' if met else 'MISSED':>6}  {name}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "rounds": args.rounds,
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version},
                "results": rows,
                "targets": targets,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
