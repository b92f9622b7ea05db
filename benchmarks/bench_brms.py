"""Run benchmarks/bench_brms.R as a subprocess: end-to-end wall time, peak memory, phase times.

Skips with a clear message when R, rstan or brms are not installed. The R script writes its own
phase times and diagnostics to JSON; here the process is timed from spawn to exit (R start-up,
library load, compile, sampling, saving the fit) and its peak RSS taken from os.wait4.

    python benchmarks/bench_brms.py --model response --data bundled --runs 3
    python benchmarks/bench_brms.py --model response --variant per-patient --data /tmp/trial-20000-200
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "bench_brms.R"


def bundled_paths() -> tuple[Path, Path]:
    from marrow import datasets

    return datasets.PATIENTS_CSV, datasets.RECOVERY_CSV


def data_paths(data) -> tuple[Path, Path]:
    if data in (None, "bundled"):
        return bundled_paths()
    return Path(data) / "patients.csv", Path(data) / "recovery.csv"


def availability() -> str | None:
    """None when brms can run here, else the reason it cannot."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return (
            "R is not installed (no Rscript on PATH); install it with: apt-get install -y "
            "--no-install-recommends r-base-core r-cran-brms r-cran-rstan r-cran-survival r-cran-lme4"
        )
    probe = subprocess.run(
        [
            rscript,
            "-e",
            "for (p in c('brms', 'rstan', 'posterior', 'jsonlite')) "
            "if (!requireNamespace(p, quietly = TRUE)) { cat(p); quit(status = 1) }",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return (
            f"the R package '{probe.stdout.strip() or '?'}' is not installed (apt-get install r-cran-brms r-cran-rstan)"
        )
    return None


# Variants of the response model: the R script's model name for each. "cells" fits binomial counts per
# (center, covariate pattern) cell, the aggregation marrow itself uses; "per patient" fits one
# Bernoulli row per patient, which is what a brms user writes (and what the 165 s is).
RESPONSE_VARIANTS = {"cells": "response", "per patient": "response-bernoulli"}


def variant_name(variant: str) -> str:
    """'per-patient' / 'per_patient' / 'per patient' -> 'per patient' (the recorded spelling)."""
    name = variant.strip().replace("-", " ").replace("_", " ")
    if name not in RESPONSE_VARIANTS:
        raise ValueError(f"unknown brms variant {variant!r}; expected one of: cells, per-patient")
    return name


def run(model: str, data=None, runs: int = 1, seed: int = 2017, variant: str | None = None, log=print) -> list[dict]:
    """`runs` end-to-end brms fits; [] (after saying why) when brms is unavailable.

    `variant` (response only): "cells" (default) or "per patient"; recorded in the `variant` field,
    with `model` kept as "response". Recovery has one variant (None)."""
    from bench_marrow import run_checked  # same timing and memory accounting as for marrow

    if model == "response":
        variant = variant_name(variant or "cells")
        script_model = RESPONSE_VARIANTS[variant]
    elif variant is not None:
        raise ValueError(f"brms variants exist for the response model only, not {model}")
    else:
        script_model = model
    reason = availability()
    if reason:
        log(f"  brms skipped: {reason}")
        return []
    patients, recovery = data_paths(data)
    results = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="brms-bench-") as work:
            out_json = Path(work) / "result.json"
            cmd = [
                "Rscript",
                str(SCRIPT),
                script_model,
                str(patients),
                str(recovery),
                str(Path(work) / "fit.rds"),
                str(out_json),
                str(seed),
            ]
            result = run_checked(cmd, env=None, cwd=Path(work), what="brms run", check=out_json.exists)
            record = json.loads(out_json.read_text())
        record.update(
            {
                "model": model,
                "sampler": "stan",
                "cache": "-",
                "wall_s": result["wall_s"],
                "maxrss_mb": result["maxrss_mb"],
                "maxrss_how": result.get("maxrss_how"),
                "load_before": result["load_before"],
                "sampling_s": record["sample_s"],
            }
        )
        if variant is not None:
            record["variant"] = variant
        record["startup_s"] = record["wall_s"] - record["in_process_s"]
        record["ess_per_s"] = record["ess_bulk_min"] / record["wall_s"]
        record["ess_per_sampling_s"] = record["ess_bulk_min"] / record["sample_s"]
        log(
            f"  brms   {model:8s} {variant or '':11s} run {i + 1}/{runs}: {record['wall_s']:.1f} s "
            f"(compile {record['compile_s']:.1f}, sampling {record['sample_s']:.1f}), "
            f"min ESS {record['ess_bulk_min']:.0f}, {record['divergences']} divergences, "
            f"{record['maxrss_mb']:.0f} MB, load {record['load_before']:.1f}"
        )
        results.append(record)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["response", "recovery"], default="response")
    parser.add_argument("--data", default="bundled", help="'bundled' or a folder from benchmarks/generate.py")
    parser.add_argument(
        "--variant",
        default=None,
        help="response only: cells (default; binomial counts per cell) or per-patient (one Bernoulli row per patient)",
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", type=Path, help="append the records to this JSON-lines file")
    args = parser.parse_args(argv)
    records = run(args.model, args.data, args.runs, variant=args.variant)
    if args.json:
        from bench_marrow import append_jsonl

        append_jsonl(args.json, records)


if __name__ == "__main__":
    main()
