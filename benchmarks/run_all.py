"""Run every benchmark of marrow against brms and print one table (see docs/performance.md).

    python benchmarks/run_all.py --quick        # bundled trial only, 1 run each, PyMC + nutpie + brms
    python benchmarks/run_all.py                # full: bundled (3 runs, warm + cold), 2,000/40 and
                                                # 20,000/200 (1 run), all samplers, levers, CLI start-up
    python benchmarks/run_all.py --table benchmarks/results/latest.jsonl   # re-print a saved table

Records are appended as JSON lines to --results (default benchmarks/results/<UTC time>.jsonl) as
they are measured, so a long run interrupted half-way keeps what it measured; the Markdown table is
written beside it. Pass --only to run a subset, e.g. --only e2e:large or --only startup,brms.
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
SIZE_LABELS = {"bundled": "bundled (74 pts, 7 centers)", "medium": "2,000 pts, 40 centers", "large": "20,000 pts, 200 centers"}


class Recorder:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, kind: str, size: str, records: list[dict] | dict) -> None:
        records = records if isinstance(records, list) else [records]
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S")
        with open(self.path, "a") as handle:
            for record in records:
                handle.write(json.dumps({"kind": kind, "size": size, "utc": stamp, **record}) + "\n")


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
        record = {"command": "marrow report", "wall_s": result["wall_s"], "maxrss_mb": result["maxrss_mb"],
                  "returncode": result["returncode"], "load_before": result["load_before"],
                  "stderr_tail": result["stderr"][-500:]}
    log(f"  marrow report: {record['wall_s']:.1f} s, exit {record['returncode']}, {record['maxrss_mb']:.0f} MB")
    rec.add("report", "bundled", record)


def run(args, log=print) -> Path:
    results = args.results or HERE / "results" / (dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".jsonl")
    rec = Recorder(results)
    only = set(args.only.split(",")) if args.only else None

    def wanted(*keys: str) -> bool:
        return only is None or any(k in only for k in keys)

    log(f"results -> {results}")
    rec.add("machine", "-", {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                             "load": os.getloadavg()[0], "quick": args.quick})
    data_root = args.data_root
    sizes = ["bundled"] if args.quick else args.sizes.split(",")
    samplers = args.samplers.split(",")
    runs_small = 1 if args.quick else args.runs

    if wanted("startup"):
        log("CLI start-up")
        rec.add("startup", "-", bench_marrow.startup(runs=5 if args.quick else 20, log=log))

    for size in sizes:
        data = data_dir(size, data_root)
        runs = runs_small if size == "bundled" else args.large_runs
        for model in args.models.split(","):
            log(f"{SIZE_LABELS[size]}: {model}")
            if wanted("brms", f"brms:{size}") and not args.skip_brms:
                rec.add("e2e", size, bench_brms.run(model, data, runs=runs, log=log))
            if wanted("e2e", f"e2e:{size}"):
                for sampler in samplers:
                    rec.add("e2e", size, bench_marrow.e2e(model, data, sampler, "warm", runs, log=log))
                    if size == "bundled" or args.cold_large:
                        cold_runs = args.cold_runs if (args.cold_runs and size == "bundled" and not args.quick) else runs
                        rec.add("e2e", size, bench_marrow.e2e(model, data, sampler, "cold", cold_runs, log=log))
            if wanted("phases", f"phases:{size}") and not args.quick:
                for sampler in samplers:
                    rec.add("phases", size, bench_marrow.phases(model, data, sampler, "warm", log=log))

    if not args.quick and wanted("levers"):
        log("Lever: PyTensor BLAS flags set explicitly (no BLAS probe in every process), bundled trial")
        for model in ("response", "recovery"):
            for sampler in [s for s in samplers if s in ("pymc", "nutpie")]:
                rec.add("lever-blas", "bundled", bench_marrow.e2e(model, None, sampler, "warm", runs_small, blas="", log=log))
        log("Lever: BLAS for PyTensor's C code, time of one logp + gradient evaluation")
        blas_options = [None, ""] + ([DEBIAN_OPENBLAS] if Path("/usr/lib/x86_64-linux-gnu/libopenblas.so.0").exists() else [])
        for size, model in (("bundled", "response"), ("medium", "recovery")):
            for blas in blas_options:
                rec.add("gradient", size, bench_marrow.gradient(model, data_dir(size, data_root), blas, repeats=2, log=log))
        if "numpyro" in samplers:
            log("Lever: NumPyro chains in parallel on both cores (XLA host device count 2)")
            xla = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
            for size in sizes:
                if size == "large":
                    continue
                for model in ("response", "recovery"):
                    rec.add("lever-xla", size, bench_marrow.e2e(model, data_dir(size, data_root), "numpyro", "warm",
                                                                runs_small if size == "bundled" else 1, env_extra=xla, log=log))

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
    """Median over runs per (kind, size, model, tool, sampler, cache, blas, xla)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r.get("kind") not in ("e2e", "lever-blas", "lever-xla"):
            continue
        key = (r["kind"], r["size"], r["model"], r.get("tool", "marrow"), r.get("sampler"), r.get("cache"), r.get("blas", "detect"))
        groups.setdefault(key, []).append(r)
    rows = []
    for key, rs in groups.items():
        kind, size, model, tool, sampler, cache, blas = key
        rows.append({
            "kind": kind, "size": size, "model": model, "tool": tool, "sampler": sampler, "cache": cache, "blas": blas,
            "runs": len(rs),
            "wall_s": _median([r["wall_s"] for r in rs]),
            "compile_s": _median([r.get("compile_s") for r in rs]),
            "sampling_s": _median([r.get("sampling_s") for r in rs]),
            "ess_bulk_min": _median([r.get("ess_bulk_min") for r in rs]),
            "ess_per_s": _median([r.get("ess_per_s") for r in rs]),
            "ess_per_sampling_s": _median([r.get("ess_per_sampling_s") for r in rs]),
            "divergences": max(int(r.get("divergences", 0)) for r in rs),
            "rhat_max": max(float(r.get("rhat_max", float("nan"))) for r in rs),
            "maxrss_mb": max(float(r.get("maxrss_mb", 0)) for r in rs),
            "load": _median([r.get("load_before") for r in rs]),
            "utc": rs[0].get("utc"),
        })
    return rows


def render(records: list[dict]) -> str:
    rows = summarise(records)
    order = {"bundled": 0, "medium": 1, "large": 2}
    tool_order = {"stan": 0, "pymc": 1, "nutpie": 2, "numpyro": 3}
    rows.sort(key=lambda r: (r["kind"] != "e2e", order.get(r["size"], 9), r["model"], tool_order.get(r["sampler"], 9),
                             r["cache"] != "warm", r["kind"]))
    brms = {(r["size"], r["model"]): r for r in rows if r["tool"] == "brms"}
    lines = [
        "| size | model | tool / sampler | cache | runs | wall s | compile s | sampling s | min bulk ESS | ESS/s (wall) "
        "| ESS/s (sampling) | div. (max) | max R-hat | peak MB | brms wall / wall | ESS/s vs brms | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = brms.get((r["size"], r["model"]))
        label = "brms (Stan)" if r["tool"] == "brms" else r["sampler"]
        if r["kind"] == "lever-blas":
            label += f" + blas__ldflags={'(empty)' if r['blas'] == 'none' else r['blas']}"
        if r["kind"] == "lever-xla":
            label += " + 2 XLA devices"
        ratio = ess_ratio = "-"
        if base is not None and r["tool"] != "brms":
            ratio = f"{base['wall_s'] / r['wall_s']:.1f}x"
            if base.get("ess_per_s") and r.get("ess_per_s"):
                ess_ratio = f"{r['ess_per_s'] / base['ess_per_s']:.1f}x"
        lines.append(
            f"| {SIZE_LABELS.get(r['size'], r['size'])} | {r['model']} | {label} | {r['cache']} | {r['runs']} "
            f"| {_fmt(r['wall_s'])} | {_fmt(r['compile_s'])} | {_fmt(r['sampling_s'])} | {_fmt(r['ess_bulk_min'], 0)} "
            f"| {_fmt(r['ess_per_s'])} | {_fmt(r['ess_per_sampling_s'])} | {r['divergences']} | {_fmt(r['rhat_max'], 3)} "
            f"| {_fmt(r['maxrss_mb'], 0)} | {ratio} | {ess_ratio} | {_fmt(r['load'])} |"
        )
    startup = [r for r in records if r.get("kind") == "startup"]
    if startup:
        lines += ["", "| command | median s | min s | max s | runs |", "|---|---|---|---|---|"]
        for r in startup:
            lines.append(f"| `{r['command']}` | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} | {r['runs']} ({r['how']}) |")
    phases = [r for r in records if r.get("kind") == "phases"]
    if phases:
        keys = ["startup_s", "import_s", "load_s", "build_s", "compile_s", "sampling_s", "augment_s", "save_s",
                "diagnose_s", "process_s"]
        lines += ["", "In-process phases (one fresh interpreter each, warm compile cache), seconds:", "",
                  "| size | model | sampler | " + " | ".join(k[:-2] for k in keys) + " | peak MB |",
                  "|---|---|---|" + "---|" * len(keys) + "---|"]
        for r in phases:
            lines.append(f"| {SIZE_LABELS.get(r['size'], r['size'])} | {r['model']} | {r['sampler']} | "
                         + " | ".join(_fmt(r.get(k), 2) for k in keys) + f" | {_fmt(r.get('maxrss_mb'), 0)} |")
    grads = [r for r in records if r.get("kind") == "gradient"]
    if grads:
        lines += ["", "One logp + gradient evaluation, PyTensor C backend (median of fresh processes), microseconds:", "",
                  "| size | model | blas__ldflags | us | load |", "|---|---|---|---|---|"]
        for r in grads:
            lines.append(f"| {SIZE_LABELS.get(r['size'], r['size'])} | {r['model']} | {r['blas']} | {r['gradient_us']:.0f} | {r['load_before']:.1f} |")
    report = [r for r in records if r.get("kind") == "report"]
    for r in report:
        lines += ["", f"`marrow report` (bundled trial, warm cache): {r['wall_s']:.1f} s, exit {r['returncode']}, "
                      f"peak {r['maxrss_mb']:.0f} MB."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="bundled trial only, 1 run each, no levers or phases")
    parser.add_argument("--runs", type=int, default=3, help="runs per case on the bundled trial (median reported)")
    parser.add_argument("--large-runs", type=int, default=1, help="runs per case on the generated trials")
    parser.add_argument("--sizes", default="bundled,medium,large")
    parser.add_argument("--samplers", default="pymc,nutpie,numpyro")
    parser.add_argument("--models", default="response,recovery")
    parser.add_argument("--skip-brms", action="store_true")
    parser.add_argument("--cold-large", action="store_true", help="also time cold-cache runs on the generated trials")
    parser.add_argument("--cold-runs", type=int, default=None, help="runs per cold case on the bundled trial (default --runs)")
    parser.add_argument("--only", default="", help="comma list: startup, brms, e2e, phases, levers, report, "
                                                   "or brms:SIZE / e2e:SIZE / phases:SIZE")
    parser.add_argument("--results", type=Path, default=None, help="JSON-lines file to append to")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "marrow-bench-data")
    parser.add_argument("--table", type=Path, default=None, help="only print the table of a saved results file")
    args = parser.parse_args(argv)
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
