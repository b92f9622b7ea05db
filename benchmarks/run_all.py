"""Run every benchmark of marrow against brms and print one table (see docs/performance.md).

    python benchmarks/run_all.py --quick        # bundled trial only, 1 run each, PyMC + nutpie + brms
    python benchmarks/run_all.py                # full: bundled (3 runs, warm + cold + worker), 2,000/40
                                                # and 20,000/200 (1 run, warm + worker), all samplers,
                                                # both brms variants of the response model, levers, CLI start-up
    python benchmarks/run_all.py --table benchmarks/results/latest.jsonl   # re-print a saved table

Records are appended as JSON lines to --results (default benchmarks/results/<UTC time>.jsonl) as
they are measured, so a long run interrupted half-way keeps what it measured; the Markdown table is
written beside it. Pass --only to run a subset, e.g. --only e2e:large, --only startup,brms or --only newprocess
(every model's `marrow fit` beside its hand-written script, benchmarks/scripts; --caches warm,cold, --runs N).
--reference-brms FILE.jsonl copies the brms records of an earlier results file into this one (marked
as such in the table) instead of fitting those brms cases again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_brms  # noqa: E402
import bench_marrow  # noqa: E402
import generate  # noqa: E402

DEBIAN_OPENBLAS = "-L/usr/lib/x86_64-linux-gnu -l:libopenblas.so.0"  # apt-get install libopenblas0-pthread
SIZE_LABELS = {
    "bundled": "bundled (74 pts, 7 centers)",
    "medium": "2,000 pts, 40 centers",
    "large": "20,000 pts, 200 centers",
}


class Recorder:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, kind: str, size: str, records: list[dict] | dict) -> None:
        records = records if isinstance(records, list) else [records]
        now = dt.datetime.now(dt.UTC)
        stamp = {"utc": now.strftime("%H:%M:%S"), "date": now.strftime("%Y-%m-%d")}
        with open(self.path, "a") as handle:
            for record in records:
                handle.write(json.dumps({"kind": kind, "size": size, **stamp, **record}) + "\n")

    def reuse(self, records: list[dict], source: Path) -> None:
        """Copy records of an earlier results file as they are (their own time), marked reused_from."""
        with open(self.path, "a") as handle:
            for record in records:
                handle.write(
                    json.dumps({**record, "reused_from": record.get("reused_from") or Path(source).name}) + "\n"
                )


def brms_variant(record: dict) -> str | None:
    """A brms record's variant; records from before variants existed fitted the response model on
    binomial cell counts."""
    if record.get("variant"):
        return record["variant"]
    return "cells" if record.get("tool") == "brms" and record.get("model") == "response" else None


def reference_brms(path: Path, sizes: list[str], models: list[str], variants: list[str]) -> list[dict]:
    """The brms end-to-end records of an earlier results file for these sizes, models and variants
    (for a case that file measured itself, not the ones it reused in turn)."""
    found: dict[tuple, list[dict]] = {}
    for r in load(path):
        if r.get("kind") != "e2e" or r.get("tool") != "brms":
            continue
        if r.get("size") in sizes and r.get("model") in models:
            variant = brms_variant(r)
            if r["model"] != "response" or variant in variants:
                found.setdefault((r["size"], r["model"], variant), []).append(
                    {**r, "variant": variant} if variant else r
                )
    keep = []
    for rs in found.values():
        fresh = [r for r in rs if not r.get("reused_from")]
        keep += fresh or rs
    return keep


def data_dir(size: str, root: Path) -> str | None:
    """The generated trial for `size` (made once, seeded), or None for the bundled one."""
    if size == "bundled":
        return None
    patients, centers = generate.SIZES[size]
    folder = root / f"trial-{patients}-{centers}"
    if not (folder / "recovery.csv").exists():
        generate.write(folder, n_patients=patients, n_centers=centers, n_lineages=3, n_covariates=2, seed=7)
    return str(folder)


def report_command_exists() -> bool:
    probe = subprocess.run([bench_marrow.MARROW, "report", "--help"], capture_output=True, text=True)
    return probe.returncode == 0


def time_report(rec: Recorder, log) -> None:
    """Full `marrow report` on the bundled trial, warm cache, 1 run."""
    if not report_command_exists():
        log("  marrow report: command not available yet; skipped")
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="marrow-report-") as work:
        env, _ = bench_marrow.cache_env("warm")
        cmd = [bench_marrow.MARROW, "report", "--out", str(Path(work) / "report"), "--force"]
        result = bench_marrow.run_measured(cmd, env, cwd=Path(work))
        record = {
            "command": "marrow report",
            "wall_s": result["wall_s"],
            "maxrss_mb": result["maxrss_mb"],
            "returncode": result["returncode"],
            "load_before": result["load_before"],
            "stderr_tail": result["stderr"][-500:],
        }
    log(f"  marrow report: {record['wall_s']:.1f} s, exit {record['returncode']}, {record['maxrss_mb']:.0f} MB")
    rec.add("report", "bundled", record)


def run(args, log=print) -> Path:
    results = args.results or HERE / "results" / (dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + ".jsonl")
    rec = Recorder(results)
    only = set(args.only.split(",")) if args.only else None

    def wanted(*keys: str) -> bool:
        return only is None or any(k in only for k in keys)

    log(f"results -> {results}")
    rec.add(
        "machine",
        "-",
        {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load": os.getloadavg()[0],
            "quick": args.quick,
        },
    )
    data_root = args.data_root
    sizes = ["bundled"] if args.quick else args.sizes.split(",")
    samplers = args.samplers.split(",")
    models = args.models.split(",")
    caches = [c.strip() for c in args.caches.split(",") if c.strip()]
    variants = [bench_brms.variant_name(v) for v in args.brms_variants.split(",") if v.strip()]
    runs_small = 1 if args.quick else args.runs
    reused: set[tuple] = set()
    if args.reference_brms:
        earlier = reference_brms(args.reference_brms, sizes, models, variants)
        rec.reuse(earlier, args.reference_brms)
        reused = {(r["size"], r["model"], r.get("variant")) for r in earlier}
        log(
            f"brms records reused from {args.reference_brms}: "
            + (", ".join(f"{s} {m}{' ' + v if v else ''}" for s, m, v in sorted(reused, key=str)) or "none matching")
        )

    if wanted("startup"):
        log("CLI start-up")
        rec.add("startup", "-", bench_marrow.startup(runs=5 if args.quick else 20, log=log))

    for size in sizes:
        data = data_dir(size, data_root)
        runs = runs_small if size == "bundled" else args.large_runs
        for model in models:
            log(f"{SIZE_LABELS[size]}: {model}")
            if wanted("brms", f"brms:{size}") and not args.skip_brms:
                for variant in variants if model == "response" else [None]:
                    if (size, model, variant) in reused:
                        log(f"  brms   {model:8s} {variant or '':11s} reused from {args.reference_brms}")
                        continue
                    rec.add("e2e", size, bench_brms.run(model, data, runs=runs, variant=variant, log=log))
            if wanted("e2e", f"e2e:{size}"):
                for sampler in samplers:
                    for cache in caches:
                        if cache == "cold" and not (size == "bundled" or args.cold_large):
                            continue
                        n = runs
                        if cache == "cold" and args.cold_runs and size == "bundled" and not args.quick:
                            n = args.cold_runs
                        rec.add("e2e", size, bench_marrow.e2e(model, data, sampler, cache, n, log=log))
            if wanted("phases", f"phases:{size}") and not args.quick:
                for sampler in samplers:
                    rec.add("phases", size, bench_marrow.phases(model, data, sampler, "warm", log=log))

    if wanted("newprocess"):
        log("New process: each model's `marrow fit` beside its hand-written PyMC + nutpie script, bundled trial")
        models_np = list(bench_marrow.NEWPROCESS)
        for cache in [c for c in caches if c in ("warm", "cold")]:
            rec.add("newprocess", "bundled", bench_marrow.newprocess(models_np, cache, runs_small, log=log))
        if not args.quick:  # where marrow's time goes, each model's defaults (sampler auto)
            for model in models_np:
                case = bench_marrow.NEWPROCESS[model][0]
                rec.add("phases", "bundled", bench_marrow.phases(case, None, "auto", "warm", log=log))

    if not args.quick and wanted("levers"):
        log("Lever: PyTensor BLAS flags set explicitly (no BLAS probe in every process), bundled trial")
        for model in ("response", "recovery"):
            for sampler in [s for s in samplers if s in ("pymc", "nutpie")]:
                rec.add(
                    "lever-blas",
                    "bundled",
                    bench_marrow.e2e(model, None, sampler, "warm", runs_small, blas="", log=log),
                )
        log("Lever: BLAS for PyTensor's C code, time of one logp + gradient evaluation")
        blas_options = [None, ""] + (
            [DEBIAN_OPENBLAS] if Path("/usr/lib/x86_64-linux-gnu/libopenblas.so.0").exists() else []
        )
        for size, model in (("bundled", "response"), ("medium", "recovery")):
            for blas in blas_options:
                rec.add(
                    "gradient", size, bench_marrow.gradient(model, data_dir(size, data_root), blas, repeats=2, log=log)
                )
        if "numpyro" in samplers:
            log("Lever: NumPyro chains in parallel on both cores (XLA host device count 2)")
            xla = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
            for size in sizes:
                if size == "large":
                    continue
                for model in ("response", "recovery"):
                    rec.add(
                        "lever-xla",
                        size,
                        bench_marrow.e2e(
                            model,
                            data_dir(size, data_root),
                            "numpyro",
                            "warm",
                            runs_small if size == "bundled" else 1,
                            env_extra=xla,
                            log=log,
                        ),
                    )

    if wanted("report"):
        log("Full report")
        time_report(rec, log)

    table = render(load(results))
    results.with_suffix(".md").write_text(table)
    log("")
    log(table)
    return results


# --- the table -------------------------------------------------------------------------------------


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summarise(records: list[dict]) -> list[dict]:
    """Median over runs per (kind, size, model, tool, sampler, cache, blas, brms variant, reused from)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r.get("kind") not in ("e2e", "lever-blas", "lever-xla"):
            continue
        key = (
            r["kind"],
            r["size"],
            r["model"],
            r.get("tool", "marrow"),
            r.get("sampler"),
            r.get("cache"),
            r.get("blas", "detect"),
            brms_variant(r),
            r.get("reused_from"),
        )
        groups.setdefault(key, []).append(r)
    rows = []
    for key, rs in groups.items():
        kind, size, model, tool, sampler, cache, blas, variant, reused_from = key
        rows.append(
            {
                "kind": kind,
                "size": size,
                "model": model,
                "tool": tool,
                "sampler": sampler,
                "cache": cache,
                "blas": blas,
                "variant": variant,
                "reused_from": reused_from,
                "runs": len(rs),
                "wall_s": _median([r["wall_s"] for r in rs]),
                "compile_s": _median([r.get("compile_s") for r in rs]),
                "sampling_s": _median([r.get("sampling_s") for r in rs]),
                "ess_bulk_min": _median([r.get("ess_bulk_min") for r in rs]),
                "ess_per_s": _median([r.get("ess_per_s") for r in rs]),
                "ess_per_sampling_s": _median([r.get("ess_per_sampling_s") for r in rs]),
                "divergences": max(int(r.get("divergences", 0)) for r in rs),
                "rhat_max": max(float(r.get("rhat_max", float("nan"))) for r in rs),
                "maxrss_mb": max(float(r.get("maxrss_mb") or 0) for r in rs),
                "client_maxrss_mb": _median([r.get("client_maxrss_mb") for r in rs]),
                "load": _median([r.get("load_before") for r in rs]),
                "utc": rs[0].get("utc"),
                "date": rs[0].get("date"),
            }
        )
    return rows


BRMS_LABELS = {
    "cells": "brms (Stan), binomial cells",
    "per patient": "brms (Stan), one row per patient",
    None: "brms (Stan)",
}
# The brms row each ratio column compares with: "cells" for the response model, the only one for
# recovery (variant None); then the per-patient response model.
PRIMARY = {"response": "cells"}
CACHE_ORDER = {"-": 0, "warm": 1, "cold": 2, "worker": 3}
VARIANT_ORDER = {"cells": 0, None: 0, "per patient": 1}


def _ratios(row: dict, base: dict | None) -> tuple[str, str]:
    """(base wall / row wall, row ESS/s / base ESS/s) as 'N.Nx', '-' when not comparable."""
    if base is None or row["tool"] == "brms" or not row.get("wall_s"):
        return "-", "-"
    wall = f"{base['wall_s'] / row['wall_s']:.1f}x"
    ess = f"{row['ess_per_s'] / base['ess_per_s']:.1f}x" if base.get("ess_per_s") and row.get("ess_per_s") else "-"
    return wall, ess


def render(records: list[dict]) -> str:
    rows = summarise(records)
    order = {"bundled": 0, "medium": 1, "large": 2}
    tool_order = {"stan": 0, "pymc": 1, "nutpie": 2, "numpyro": 3}
    rows.sort(
        key=lambda r: (
            r["kind"] != "e2e",
            order.get(r["size"], 9),
            r["model"],
            tool_order.get(r["sampler"], 9),
            VARIANT_ORDER.get(r["variant"], 9),
            CACHE_ORDER.get(r["cache"], 9),
            r["kind"],
            r["reused_from"] is not None,
        )
    )
    brms: dict[tuple, dict] = {}
    for r in rows:  # a brms row measured in this run wins over one reused from an earlier file
        if r["tool"] == "brms":
            key = (r["size"], r["model"], r["variant"])
            if key not in brms or (brms[key]["reused_from"] and not r["reused_from"]):
                brms[key] = r
    lines = [
        "| size | model | tool / sampler | cache | runs | wall s | compile s | sampling s | min bulk ESS "
        "| ESS/s (wall) | ESS/s (sampling) | div. (max) | max R-hat | peak MB | brms / wall | brms per patient / wall "
        "| ESS/s vs brms | ESS/s vs brms per patient | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    if not rows:  # e.g. --only newprocess: no end-to-end table
        lines = []
    for r in rows:
        if r["tool"] == "brms":
            label = BRMS_LABELS.get(r["variant"], f"brms (Stan), {r['variant']}")
            if r["reused_from"]:
                label += (
                    f" (earlier run: {r['reused_from']}, {(r['date'] + ' ') if r.get('date') else ''}{r['utc']} UTC)"
                )
                notes.append(r["reused_from"])
        else:
            label = r["sampler"]
        if r["kind"] == "lever-blas":
            label += f" + blas__ldflags={'(empty)' if r['blas'] == 'none' else r['blas']}"
        if r["kind"] == "lever-xla":
            label += " + 2 XLA devices"
        wall_1, ess_1 = _ratios(r, brms.get((r["size"], r["model"], PRIMARY.get(r["model"]))))
        wall_2, ess_2 = (
            _ratios(r, brms.get((r["size"], r["model"], "per patient"))) if r["model"] == "response" else ("-", "-")
        )
        lines.append(
            f"| {SIZE_LABELS.get(r['size'], r['size'])} | {r['model']} | {label} | {r['cache']} | {r['runs']} "
            f"| {_fmt(r['wall_s'])} | {_fmt(r['compile_s'])} | {_fmt(r['sampling_s'])} "
            f"| {_fmt(r['ess_bulk_min'], 0)} | {_fmt(r['ess_per_s'])} | {_fmt(r['ess_per_sampling_s'])} "
            f"| {r['divergences']} | {_fmt(r['rhat_max'], 3)} "
            f"| {_fmt(r['maxrss_mb'], 0)} | {wall_1} | {wall_2} | {ess_1} | {ess_2} | {_fmt(r['load'])} |"
        )
    if rows:
        lines += [
            "",
            "brms / wall and ESS/s vs brms compare with brms on binomial cell counts for the response model "
            "(the aggregation marrow itself uses) and with the one brms model for recovery; the per-patient "
            "columns compare with brms fitting one Bernoulli row per patient, as a brms user writes it.",
        ]
    if any(r["cache"] == "worker" for r in rows):
        lines += [
            "",
            "worker: a resident `marrow worker`, filled by an untimed short run of the same command, serves "
            "each timed `marrow fit`; wall s is the client process, start to exit; peak MB is the worker's "
            "own peak from `marrow worker status` (client_maxrss_mb in the JSON for the client).",
        ]
    if notes:
        lines += [
            "",
            "Rows marked (earlier run: ...) were not measured in this run but copied from "
            + ", ".join(f"`{n}`" for n in dict.fromkeys(notes))
            + " (--reference-brms); ratios against them compare runs made at different times and loads.",
        ]
    startup = [r for r in records if r.get("kind") == "startup"]
    if startup:
        lines += ["", "| command | median s | min s | max s | runs |", "|---|---|---|---|---|"]
        for r in startup:
            lines.append(
                f"| `{r['command']}` | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} "
                f"| {r['runs']} ({r['how']}) |"
            )
    phases = [r for r in records if r.get("kind") == "phases"]
    if phases:
        keys = [
            "startup_s",
            "import_s",
            "load_s",
            "build_s",
            "compile_s",
            "sampling_s",
            "log_prior_s",
            "augment_s",
            "save_s",
            "diagnose_s",
            "process_s",
        ]
        lines += [
            "",
            "In-process phases (one fresh interpreter each, warm compile cache), seconds:",
            "",
            "| size | model | sampler | " + " | ".join(k[:-2] for k in keys) + " | peak MB |",
            "|---|---|---|" + "---|" * len(keys) + "---|",
        ]
        for r in phases:
            lines.append(
                f"| {SIZE_LABELS.get(r['size'], r['size'])} | {r['model']} | {r['sampler']} | "
                + " | ".join(_fmt(r.get(k), 2) for k in keys)
                + f" | {_fmt(r.get('maxrss_mb'), 0)} |"
            )
    fresh = [r for r in records if r.get("kind") == "newprocess"]
    if fresh:
        lines += [
            "",
            "A new process beside the hand-written script (`bench_marrow.py newprocess`; medians, runs alternating):",
            "",
            bench_marrow.newprocess_table(fresh),
        ]
    grads = [r for r in records if r.get("kind") == "gradient"]
    if grads:
        lines += [
            "",
            "One logp + gradient evaluation, PyTensor C backend (median of fresh processes), microseconds:",
            "",
            "| size | model | blas__ldflags | us | load |",
            "|---|---|---|---|---|",
        ]
        for r in grads:
            lines.append(
                f"| {SIZE_LABELS.get(r['size'], r['size'])} | {r['model']} | {r['blas']} "
                f"| {r['gradient_us']:.0f} | {r['load_before']:.1f} |"
            )
    report = [r for r in records if r.get("kind") == "report"]
    for r in report:
        lines += [
            "",
            f"`marrow report` (bundled trial, warm cache): {r['wall_s']:.1f} s, exit {r['returncode']}, "
            f"peak {r['maxrss_mb']:.0f} MB.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="bundled trial only, 1 run each, no levers or phases")
    parser.add_argument("--runs", type=int, default=3, help="runs per case on the bundled trial (median reported)")
    parser.add_argument("--large-runs", type=int, default=1, help="runs per case on the generated trials")
    parser.add_argument("--sizes", default="bundled,medium,large")
    parser.add_argument("--samplers", default="pymc,nutpie,numpyro")
    parser.add_argument("--models", default="response,recovery")
    parser.add_argument(
        "--caches",
        default="warm,cold,worker",
        help="comma list of marrow end-to-end modes: warm, cold (bundled trial only unless "
        "--cold-large), worker (a resident `marrow worker`, docs/worker.md)",
    )
    parser.add_argument(
        "--brms-variants",
        default="cells,per-patient",
        help="brms fits of the response model: cells (binomial counts per cell, as marrow "
        "aggregates), per-patient (one Bernoulli row per patient)",
    )
    parser.add_argument(
        "--reference-brms",
        type=Path,
        default=None,
        metavar="FILE.jsonl",
        help="reuse the brms records of an earlier results file instead of fitting those "
        "cases again (marked as earlier runs in the table)",
    )
    parser.add_argument("--skip-brms", action="store_true")
    parser.add_argument("--cold-large", action="store_true", help="also time cold-cache runs on the generated trials")
    parser.add_argument(
        "--cold-runs", type=int, default=None, help="runs per cold case on the bundled trial (default --runs)"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma list: startup, brms, e2e, phases, newprocess, levers, report, "
        "or brms:SIZE / e2e:SIZE / phases:SIZE",
    )
    parser.add_argument("--results", type=Path, default=None, help="JSON-lines file to append to")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "marrow-bench-data")
    parser.add_argument("--table", type=Path, default=None, help="only print the table of a saved results file")
    args = parser.parse_args(argv)
    unknown = [c for c in args.caches.split(",") if c.strip() and c.strip() not in ("warm", "cold", "worker")]
    if unknown:
        parser.error(f"--caches: unknown mode(s) {', '.join(unknown)}; expected warm, cold, worker")
    try:
        [bench_brms.variant_name(v) for v in args.brms_variants.split(",") if v.strip()]
    except ValueError as exc:
        parser.error(f"--brms-variants: {exc}")
    if args.reference_brms and not args.reference_brms.exists():
        parser.error(f"--reference-brms: no such file {args.reference_brms}")
    if args.table:
        print(render(load(args.table)))
        return
    if args.quick and args.samplers == "pymc,nutpie,numpyro":
        args.samplers = "pymc,nutpie"
    missing = [s for s in args.samplers.split(",") if s == "numpyro" and not _has("numpyro")]
    if missing:
        print("numpyro is not installed (pip install 'marrow[jax]'); leaving it out", file=sys.stderr)
        args.samplers = ",".join(s for s in args.samplers.split(",") if s != "numpyro")
    run(args)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
