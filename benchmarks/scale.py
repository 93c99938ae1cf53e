"""Scale benchmark: every verb on simulated atlases of 10k to 1M cells, read from backed h5ad files.

Data: :func:`sctransfer.datasets.simulate_atlas` writes a reference (8 batches) and a query (the same
20 cell types, half the depth, a per-gene technology effect) of ``n`` cells x 2,000 genes each, chunk by
chunk; they are written once per size into ``--data-dir`` and reused. Each (verb, size) runs in a fresh
Python process that opens both files with ``anndata.read_h5ad(path, backed="r")``. Where a verb refuses
backed input, the process loads the files with ``.to_memory()`` and the result says ``"input": "loaded"``
(with the error that backed input gave).

Verbs (``--verbs``): ``ensemble`` (the default ``label_transfer``), ``knn`` (``method="knn"``), ``castle``,
``metaneighbor`` (``fast=True``, on the reference's 8 batches x 20 types), ``bermuda`` (on the reference,
8 batches, its own per-batch clustering) and ``scjoint_epoch`` (``label_transfer(method="scjoint")`` with
one stage-1 epoch and no stage 3; the epoch itself is timed with a Lightning callback).

Measured per run: wall seconds, CPU seconds (user + system of the child, from ``os.wait4``), peak RSS
in GiB (the worker's own ``VmHWM``; the child's ``ru_maxrss`` for a run that did not finish), accuracy
against the query's ``cell_type`` where the verb predicts labels,
and the log-log slope of wall, CPU and peak RSS between consecutive sizes that both finished. A run that
exceeds ``--timeout`` is killed and recorded as ``"timeout"``; one that fails under the address-space cap
(``--mem-cap-gb``, ``RLIMIT_AS``) as ``"memory"``; any other failure as ``"error"``.

    python benchmarks/scale.py                                   # 10k, 100k, 300k, 1M; every verb
    python benchmarks/scale.py --sizes 10000 100000 --verbs knn metaneighbor --timeout 600
    python benchmarks/scale.py --sizes 300000 --verbs knn --merge     # add to the results already there
    python benchmarks/scale.py --plot-only                            # redraw the docs' plot
    python benchmarks/scale.py --sizes 300000 --verbs ensemble --log-dir logs  # keep each run's INFO log
    # writes benchmarks/results/scale.json and docs/_static/scale.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "scale.json"
#: the plot that docs/scaling.md shows, drawn from the results at every run (--plot-only redraws it)
PLOT = Path(__file__).parent.parent / "docs" / "_static" / "scale.png"
VERBS = ("ensemble", "knn", "castle", "metaneighbor", "bermuda", "scjoint_epoch")
LABEL_VERBS = {"ensemble": "sct_label", "knn": "sct_label", "castle": "castle", "scjoint_epoch": "sct_label"}
N_GENES, N_TYPES, N_BATCHES = 2000, 20, 8


# ----------------------------------------------------------------------------------------------- worker
def _open(path: Path, loaded: bool):
    import anndata as ad

    adata = ad.read_h5ad(path, backed="r")
    return adata.to_memory() if loaded else adata


def _run_verb(verb: str, ref, query) -> dict:
    import sctransfer as sct

    info: dict = {}
    if verb in ("ensemble", "knn"):
        sct.tl.label_transfer(ref, query, labels_key="cell_type", method=verb)
    elif verb == "castle":
        sct.tl.castle(ref, query, labels_key="cell_type")
    elif verb == "metaneighbor":
        sct.tl.metaneighbor(ref, batch_key="batch", cluster_key="cell_type", fast=True)
    elif verb == "bermuda":
        sct.tl.bermuda(ref, batch_key="batch")
    elif verb == "scjoint_epoch":
        from _epochs import EpochTimer

        timer = EpochTimer()
        sct.tl.label_transfer(
            ref, query, labels_key="cell_type", method="scjoint", max_epochs=1, max_epochs_stage3=0,
            enable_progress_bar=False, trainer_kwargs={"callbacks": [timer]},
        )  # fmt: skip
        info["epoch_seconds"] = timer.seconds
    else:  # pragma: no cover - argparse restricts the choices
        raise ValueError(verb)
    return info


def worker(verb: str, ref_path: Path, query_path: Path, out: Path, log: bool = False) -> None:
    """One verb on one size, in this (fresh) process; writes its findings to ``out``.

    ``log``: sctransfer's INFO messages go to stderr with a timestamp (where each step's time goes).
    """
    import logging

    import numpy as np

    if log:  # the package's own handler replaced by one that stamps the time
        import sctransfer  # noqa: F401  (installs the package's handler first)

        logger = logging.getLogger("sctransfer")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    result: dict = {"input": "backed"}
    t0 = time.perf_counter()
    try:
        ref, query = _open(ref_path, False), _open(query_path, False)
        info = _run_verb(verb, ref, query)
    except MemoryError:
        raise
    except Exception as err:  # backed input refused: load both files and try again
        result = {"input": "loaded", "backed_error": f"{type(err).__name__}: {err}"[:500]}
        result["backed_attempt_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref, query = _open(ref_path, True), _open(query_path, True)
        info = _run_verb(verb, ref, query)
    result["verb_seconds"] = time.perf_counter() - t0
    result.update(info)
    from _process import peak_rss_bytes

    result["peak_rss_gb"] = peak_rss_bytes() / 1024**3  # this process's own peak (GiB, as ru_maxrss below)
    key = LABEL_VERBS.get(verb)
    if key is not None:
        predicted = query.obs[key].astype(str).to_numpy()
        truth = query.obs["cell_type"].astype(str).to_numpy()
        result["accuracy"] = float(np.mean(predicted == truth))
        result["unknown_fraction"] = float(np.mean(predicted == "unknown"))
    out.write_text(json.dumps(result))


# ----------------------------------------------------------------------------------------------- driver
def _limits(mem_cap_gb: float):
    cap = int(mem_cap_gb * 1024**3)

    def apply() -> None:
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    return apply


def run_one(
    verb: str,
    ref_path: Path,
    query_path: Path,
    timeout: float,
    mem_cap_gb: float,
    keep_log: Path | None = None,
) -> dict:
    """Run ``verb`` in a fresh process under a time limit and an address-space cap; measure it.

    With ``keep_log`` the process logs sctransfer's INFO messages and its output is copied there.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out, log = Path(tmp) / "result.json", Path(tmp) / "log.txt"
        cmd = [sys.executable, __file__, "--worker", verb, str(ref_path), str(query_path), str(out)]
        if keep_log is not None:
            cmd.append("--log")
        t0 = time.perf_counter()
        with open(log, "w") as log_file:
            proc = subprocess.Popen(
                cmd, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_limits(mem_cap_gb)
            )
            timed_out = False
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - t0 > timeout:
                    timed_out = True
                    os.killpg(proc.pid, signal.SIGKILL)
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.2)
            proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        row = {
            "wall_seconds": wall,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            # replaced by the worker's own VmHWM when it finishes; ru_maxrss (KiB on Linux) also counts the
            # RSS this driver had when it forked the worker
            "peak_rss_gb": usage.ru_maxrss / 1024**2,
        }
        text = log.read_text(errors="replace")
        if keep_log is not None:
            keep_log.write_text(text)
        tail = text[-1500:]
        if timed_out:
            row["status"] = "timeout"
        elif proc.returncode == 0 and out.exists():
            row["status"] = "ok"
            row.update(json.loads(out.read_text()))
        else:
            memory = "MemoryError" in tail or "Unable to allocate" in tail or "std::bad_alloc" in tail
            row["status"] = "memory" if memory or proc.returncode == -signal.SIGKILL else "error"
            row["returncode"] = proc.returncode
            row["log_tail"] = tail
    return row


def make_data(n: int, data_dir: Path) -> tuple[Path, Path, dict]:
    import sctransfer as sct

    ref, query = data_dir / f"atlas_ref_{n}.h5ad", data_dir / f"atlas_query_{n}.h5ad"
    timing = {}
    for path, role, n_batches in ((ref, "reference", N_BATCHES), (query, "query", 1)):
        if path.exists():
            continue
        t0 = time.perf_counter()
        sct.datasets.simulate_atlas(
            path, n_cells=n, n_genes=N_GENES, n_types=N_TYPES, role=role, n_batches=n_batches, random_state=0
        )
        timing[role] = time.perf_counter() - t0
        print(f"  wrote {path.name} ({path.stat().st_size / 1e9:.2f} GB) in {timing[role]:.1f} s", flush=True)
    return ref, query, timing


def slopes(rows: list[dict]) -> None:
    """Log-log slope of wall, CPU and peak RSS against n between consecutive finished sizes of a verb."""
    for verb in {r["verb"] for r in rows}:
        done = sorted(
            (r for r in rows if r["verb"] == verb and r["status"] == "ok"), key=lambda r: r["n_cells"]
        )
        for a, b in itertools.pairwise(done):
            dn = math.log(b["n_cells"] / a["n_cells"])
            b["slope_from"] = a["n_cells"]
            for key in ("wall_seconds", "cpu_seconds", "peak_rss_gb"):
                b[f"slope_{key.split('_')[0]}"] = math.log(b[key] / a[key]) / dn


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'verb':<14}{'cells':>9}{'status':>9}{'input':>8}{'wall s':>9}{'CPU s':>9}{'RSS GB':>8}"
        f"{'acc':>7}{'slope t':>9}{'slope mem':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        acc = f"{r['accuracy']:.3f}" if "accuracy" in r else "-"
        st = f"{r['slope_wall']:.2f}" if "slope_wall" in r else "-"
        sm = f"{r['slope_peak']:.2f}" if "slope_peak" in r else "-"
        print(
            f"{r['verb']:<14}{r['n_cells']:>9}{r['status']:>9}{r.get('input', '-'):>8}{r['wall_seconds']:>9.1f}"
            f"{r['cpu_seconds']:>9.1f}{r['peak_rss_gb']:>8.2f}{acc:>7}{st:>9}{sm:>10}"
        )
        if "epoch_seconds" in r:
            print(f"{'':<14}scJoint epoch seconds: {', '.join(f'{s:.1f}' for s in r['epoch_seconds'])}")


def plot(rows: list[dict], path: Path) -> None:
    """CPU seconds and peak RSS against cells, log-log, one line per verb; a run that did not finish is a
    cross at the figures it had reached when it was stopped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for verb in VERBS:
        runs = sorted((r for r in rows if r["verb"] == verb), key=lambda r: r["n_cells"])
        if not runs:
            continue
        for ax, key in zip(axes, ("cpu_seconds", "peak_rss_gb"), strict=True):
            done = [r for r in runs if r["status"] == "ok"]
            (line,) = ax.plot([r["n_cells"] for r in done], [r[key] for r in done], marker="o", label=verb)
            stopped = [r for r in runs if r["status"] != "ok" and r.get(key)]
            ax.scatter([r["n_cells"] for r in stopped], [r[key] for r in stopped], marker="x", s=60,
                       color=line.get_color())  # fmt: skip
    for ax, label in zip(axes, ("CPU seconds", "peak RSS (GB)"), strict=True):
        ax.set(xscale="log", yscale="log", xlabel="cells (reference = query)", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "sctransfer on simulated atlases read from backed h5ad (x: stopped at the limit)", fontsize=10
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        verb, ref, query, out = sys.argv[2:6]
        worker(verb, Path(ref), Path(query), Path(out), log="--log" in sys.argv[6:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000, 1_000_000])
    parser.add_argument("--verbs", nargs="+", choices=VERBS, default=list(VERBS))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run (wall)")
    parser.add_argument("--mem-cap-gb", type=float, default=12.0, help="address-space cap per run")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "sctransfer_scale")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--merge", action="store_true", help="keep the other (verb, size) results already in --output"
    )
    parser.add_argument("--plot-only", action="store_true", help=f"redraw {PLOT.name} from --output")
    parser.add_argument(
        "--log-dir", type=Path, default=None,
        help="keep every run's output, with sctransfer's INFO log, as <verb>_<cells>.log in this folder",
    )  # fmt: skip
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(args.output.read_text())["results"], PLOT)
        print(f"wrote {PLOT}")
        return
    args.data_dir.mkdir(parents=True, exist_ok=True)
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)

    import sctransfer as sct
    from _provenance import source_commit

    load_before = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average {load_before[0]:.2f}; cap {args.mem_cap_gb} GB, "
          f"timeout {args.timeout:.0f} s", flush=True)  # fmt: skip
    rows, data = [], {}
    commit = source_commit()
    for n in sorted(args.sizes):
        print(f"{n} cells:", flush=True)
        ref, query, timing = make_data(n, args.data_dir)
        data[n] = {"write_seconds": timing, "reference_gb": ref.stat().st_size / 1e9,
                   "query_gb": query.stat().st_size / 1e9}  # fmt: skip
        for verb in args.verbs:
            load = round(os.getloadavg()[0], 2)
            keep_log = None if args.log_dir is None else args.log_dir / f"{verb}_{n}.log"
            row = {
                "verb": verb,
                "n_cells": n,
                **run_one(verb, ref, query, args.timeout, args.mem_cap_gb, keep_log),
            }
            row.update(load_average_before=load, timeout_seconds=args.timeout, mem_cap_gb=args.mem_cap_gb,
                       commit=commit)  # fmt: skip
            print(f"  {verb}: {row['status']}, {row['wall_seconds']:.1f} s wall, {row['cpu_seconds']:.1f} CPU-s, "
                  f"{row['peak_rss_gb']:.2f} GB", flush=True)  # fmt: skip
            rows.append(row)
    command = "python benchmarks/scale.py " + " ".join(sys.argv[1:])
    commands, files = [command], {str(n): v for n, v in data.items()}
    if args.merge and args.output.exists():  # keep the earlier runs of other (verb, size) pairs
        earlier = json.loads(args.output.read_text())
        done = {(r["verb"], r["n_cells"]) for r in rows}
        kept = [r for r in earlier["results"] if (r["verb"], r["n_cells"]) not in done]
        for r in kept:
            for key in [k for k in r if k.startswith("slope")]:
                del r[key]
        rows = sorted(kept + rows, key=lambda r: (r["n_cells"], VERBS.index(r["verb"])))
        commands = earlier.get("commands", [earlier.get("command", "?")]) + commands
        files = {**earlier.get("files", {}), **files}
    slopes(rows)
    print()
    print_table(rows)
    payload = {
        "benchmark": "scale",
        "commands": commands,
        "data": (
            f"sctransfer.datasets.simulate_atlas: reference (n cells, {N_BATCHES} batches) and query (n cells, "
            f"role='query'), {N_GENES} genes, {N_TYPES} types, random_state=0, float32 CSR counts"
        ),
        "files": files,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sctransfer": sct.__version__,
        },
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    if args.output == RESULTS:
        plot(rows, PLOT)
        print(f"wrote {PLOT}")


if __name__ == "__main__":
    main()
