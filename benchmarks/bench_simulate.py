"""Simulation-study throughput: `marrow simulate` on the bundled design beside brms refitting a compiled
model with `update()` (benchmarks/bench_brms_refit.R), measured in the same run.

    .venv/bin/python benchmarks/bench_simulate.py --replicates 500 --workers 2,1 --brms 20 \
        --json benchmarks/results/simulate.jsonl

Cases: the bundled design without its interim (one fit per trial) and with it (two fits per trial),
each on a local Dask cluster of K workers (end to end: process start, cluster, compiles, fits, tables).
`--marginal N0` also runs each case at N0 replicates per scenario and reports the marginal throughput
(the extra trials over the extra seconds), which leaves out what every run pays once (process start,
cluster, each worker's compile), and its ratio between 2 workers and 1.
Peak memory is the largest resident set of any process of the run's tree (a worker), sampled every
0.2 s. brms is timed on a few refits and extrapolated: its compile plus fits x median refit / cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "marrow" / "datasets" / "design.toml"
PATIENTS = ROOT / "marrow" / "datasets" / "patients.csv"
MARROW = Path(sys.executable).with_name("marrow")
CORES = 2


def design_without_interim(folder: Path) -> Path:
    """The bundled design with its [[interims]] tables removed (one analysis per trial)."""
    text = re.sub(r"\n\[\[interims\]\]\n(?:[^\[\n][^\n]*\n|\n(?!\[))*", "\n", DESIGN.read_text())
    path = folder / "no-interim.toml"
    path.write_text(text)
    return path


def run_measured(cmd: list[str], env: dict) -> dict:
    """Wall time and the peak resident set of the largest process in the command's tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"rss": 0}
    done = threading.Event()

    def watch() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        peak["rss"] = max(peak["rss"], p.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    stdout, stderr = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-3000:]}")
    return {"wall_s": time.perf_counter() - start, "peak_rss_mb": peak["rss"] / 2**20, "stdout": stdout}


def marrow_case(design: Path, label: str, replicates: int, workers: int, tmp: Path) -> dict:
    out = tmp / f"{label}-{workers}"
    env = dict(os.environ, MARROW_WORKER="off")
    cmd = [str(MARROW), "simulate", str(design), "--out", str(out), "--replicates", str(replicates)]
    cmd += ["--workers", str(workers), "--quiet", "--force"]
    result = run_measured(cmd, env)
    import pandas as pd

    records = pd.read_parquet(out / "records.parquet")
    fits = int(sum(records[c].notna().sum() for c in records.columns if re.fullmatch(r"a\d+:n", c)))
    return {
        "tool": "marrow",
        "case": label,
        "workers": workers,
        "trials": len(records),
        "fits": fits,
        "wall_s": round(result["wall_s"], 2),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "trials_per_s": round(len(records) / result["wall_s"], 3),
    }


def brms_case(n_refits: int, tmp: Path) -> dict | None:
    if shutil.which("Rscript") is None:
        print("brms: Rscript not found (shared/ANCHORS.md says how to install brms)", file=sys.stderr)
        return None
    out = tmp / "brms.json"
    result = run_measured(
        ["Rscript", str(ROOT / "benchmarks" / "bench_brms_refit.R"), str(PATIENTS), str(n_refits), str(out)],
        dict(os.environ),
    )
    record = json.loads(out.read_text())
    record["wall_s"] = round(result["wall_s"], 2)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=500, help="simulated trials per scenario (2 scenarios)")
    parser.add_argument("--workers", default="2,1", help="local cluster sizes to run, comma-separated")
    parser.add_argument("--cases", default="no-interim,interim", help="no-interim and/or interim")
    parser.add_argument("--brms", type=int, default=20, help="brms refits to time (0: none)")
    parser.add_argument("--marginal", type=int, default=0, help="also run N0 replicates per scenario (0: no)")
    parser.add_argument("--json", type=Path, help="append the records to this JSON-lines file")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    records: list[dict] = []
    small: list[dict] = []  # the --marginal runs
    with tempfile.TemporaryDirectory(prefix="marrow-bench-sim-") as folder:
        tmp = Path(folder)
        designs = {"no-interim": design_without_interim(tmp), "interim": DESIGN}
        if args.brms:
            brms = brms_case(args.brms, tmp)
            if brms:
                records.append(brms)
        sizes = [args.replicates, args.marginal] if args.marginal else [args.replicates]
        for label in args.cases.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                for size in sizes:
                    record = marrow_case(designs[label], label, size, workers, tmp)
                    (records if size == args.replicates else small).append(record)
                    print(json.dumps(record), flush=True)
    brms = next((r for r in records if r["tool"] == "brms"), None)
    stamp = {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_before": round(load, 2)}
    for r in records:
        r.update(stamp)
        if brms and r["tool"] == "marrow":
            # brms's study of the same fits: one compile, then every fit by update() on CORES cores.
            r["brms_extrapolated_s"] = round(brms["first_fit_s"] + r["fits"] * brms["median_refit_s"] / CORES, 1)
            r["ratio_vs_brms"] = round(r["brms_extrapolated_s"] / r["wall_s"], 2)
    by_case = {(r["case"], r["workers"]): r for r in records if r["tool"] == "marrow"}
    for r0 in small:
        r = by_case[(r0["case"], r0["workers"])]
        r["marginal_from_trials"] = r0["trials"]
        r["marginal_trials_per_s"] = round((r["trials"] - r0["trials"]) / (r["wall_s"] - r0["wall_s"]), 3)
        r["fixed_cost_s"] = round(r0["wall_s"] - r0["trials"] / r["marginal_trials_per_s"], 1)
    for label in args.cases.split(","):
        one, two = by_case.get((label, 1)), by_case.get((label, 2))
        if one and two:
            two["speedup_2_vs_1_workers"] = round(two["trials_per_s"] / one["trials_per_s"], 2)
            if "marginal_trials_per_s" in one and "marginal_trials_per_s" in two:
                two["marginal_speedup_2_vs_1_workers"] = round(
                    two["marginal_trials_per_s"] / one["marginal_trials_per_s"], 2
                )
    for r in records:
        print(json.dumps(r))
    if args.json:
        with open(args.json, "a") as handle:
            for r in records:
                handle.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
