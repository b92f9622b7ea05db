"""Batched refits (B replicates stacked in one model, one nutpie run) against the refitter of a
simulation study (one replicate per run), per analysis, on the bundled design's final analysis.

    .venv/bin/python benchmarks/bench_batched_refit.py --batches 8,32,128 --rounds 3 \
        --json benchmarks/results/batched-refit-2026-12-05.jsonl

As on a study's worker: one core, the design's 4 chains x (500 warm-up + 500 draws) one after
another, every model compiled first (the compile is reported, not counted). The machine is shared:
the variants alternate within every round, and the summary reports each variant's cost per analysis
as a ratio to the unbatched refitter's in the same round (median over rounds). Beside the time, the
leapfrog steps per draw (nutpie's n_steps, mean over the kept draws) and the time of one gradient
(nutpie's compiled C callback in a numba loop) split the cost into steps and gradient work; the
divergences (`charged`: analyses with a divergence, all of a batch's when it has one), tree-depth hits
and per-replicate R-hat and bulk ESS say what the joint step size and trees do to the blocks.
Batches run at `marrow.simulate.batched.batch_target_accept` (each block gets a single fit's step
size); `--joint B` adds B held at the single fit's target acceptance.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

SINGLE = "single"


class StepCounter:
    """Wraps `nutpie.sample` to keep the statistics of the last run's Arrow trace, read after the
    timing: leapfrog steps per kept draw and tree-depth hits (the wrapper adds two function calls to a
    timed run, nothing else)."""

    def __init__(self) -> None:
        import nutpie

        original = nutpie.sample
        self.stats: list = []
        counter = self

        class Results:
            def __init__(self, results) -> None:
                self.results = results

            def get_arrow_trace(self):
                draws, stats = self.results.get_arrow_trace()
                counter.stats = stats
                return draws, stats

        def sample(*args, **kwargs):
            return Results(original(*args, **kwargs))

        nutpie.sample = sample

    def read(self) -> dict:
        import pyarrow

        steps, total, hits = [], 0, 0
        for stat in self.stats:
            kept = ~pyarrow.array(stat.column("tuning")).to_numpy(zero_copy_only=False).astype(bool)
            n_steps = pyarrow.array(stat.column("n_steps")).to_numpy(zero_copy_only=False)
            steps.append(n_steps[kept])
            total += int(n_steps.sum())
            if "maxdepth_reached" in stat.column_names:
                hits += int(pyarrow.array(stat.column("maxdepth_reached")).to_numpy(zero_copy_only=False)[kept].sum())
        return {"steps_per_draw": float(np.concatenate(steps).mean()), "gradients": total, "depth_hits": hits}


def gradient_seconds(model, key: str, var_names: list[str] | None, evals: int = 20_000) -> float:
    """Seconds of one log density and gradient evaluation of the compiled `model`: nutpie's own C
    callback (the CFUNC route, which a study uses), called `evals` times from a numba loop (no Python
    in between), at 0.1 in every unconstrained coordinate; the best of three repeats."""
    import numba

    from marrow.fits.compiled import compiled_nutpie_model

    arrays = {var.name: var.get_value() for var in model.data_vars}
    compiled = compiled_nutpie_model(model, key, arrays, var_names, refits=True)
    logp = compiled.compiled_logp_func

    @numba.njit
    def loop(n_dim, x, grad, value, user, n):
        failures = 0
        for _ in range(n):
            failures += logp(n_dim, x.ctypes, grad.ctypes, value.ctypes, user.ctypes) != 0
        return failures

    n_dim = np.uint64(compiled.n_dim)
    x, grad, value = np.full(compiled.n_dim, 0.1), np.zeros(compiled.n_dim), np.zeros(1)
    user = compiled.user_data
    loop(n_dim, x, grad, value, user, 10)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        failed = loop(n_dim, x, grad, value, user, evals)
        best = min(best, (time.perf_counter() - start) / evals)
    if failed:
        raise RuntimeError(f"{failed} of {evals} gradient evaluations failed")
    return best


def analyses(n: int, seed: int) -> list:
    """`n` final analyses of the bundled design's first scenario (null), simulated from `seed`."""
    from marrow.simulate.design import read_design
    from marrow.simulate.scenarios import intercepts, simulate_trial
    from marrow.simulate.study import response_inputs

    design = read_design(None)
    scenario = design.scenarios[0]
    truth = intercepts(design, scenario)
    rng = np.random.default_rng(seed)
    return [response_inputs(design, simulate_trial(design, scenario, rng, truth), design.n_total) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="8,32,128", help="batch sizes B, comma-separated (1 allowed)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; every variant runs once per round")
    parser.add_argument("--single", type=int, default=8, help="unbatched refits per round")
    parser.add_argument("--joint", type=int, default=32, help="also this B at the single target (0: not)")
    parser.add_argument("--json", type=Path, help="append the records to this JSON-lines file")
    args = parser.parse_args()
    os.environ.setdefault("MARROW_WORKER", "off")

    from marrow.priors import load_prior_set
    from marrow.simulate.batched import BatchedRefitter
    from marrow.simulate.design import read_design
    from marrow.simulate.refit import DesignRefitter
    from marrow.simulate.study import response_inputs, stored_variables

    design = read_design(None)
    settings = replace(design.settings, cores=1)  # a worker's: chains one after another
    spec, priors = design.analysis.spec, load_prior_set(design.analysis.prior)
    assert spec is not None
    template = response_inputs(design)
    sizes = [int(b) for b in args.batches.split(",")]
    pool = analyses(max([args.single, *sizes]) * (args.rounds + 1), seed=20261205)
    counter = StepCounter()

    single = DesignRefitter(spec, priors, settings, template, stored_variables(design))
    batched = {f"batch-{b}": BatchedRefitter(spec, priors, settings, template, b) for b in sizes}
    if args.joint:  # the joint run held at the single fit's target acceptance (steps per draw grow)
        batched[f"batch-{args.joint}-joint"] = BatchedRefitter(
            spec, priors, settings, template, args.joint, scale_accept=False
        )
    compile_s = {}
    start = time.perf_counter()
    single.fit(pool[0], seed=1)
    compile_s[SINGLE] = time.perf_counter() - start
    for variant, refitter in batched.items():
        start = time.perf_counter()
        refitter.fit(pool[: refitter.size], seed=1)
        compile_s[variant] = time.perf_counter() - start

    grad_s = {SINGLE: gradient_seconds(single.model, single.key, single.settings.extra.get("var_names"))}
    for variant, refitter in batched.items():
        grad_s[variant] = gradient_seconds(refitter.model, refitter.key, refitter.var_names)
    print(json.dumps({"gradient_us": {k: round(v * 1e6, 2) for k, v in grad_s.items()}}), flush=True)

    records = []
    stamp = {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_before": round(os.getloadavg()[0], 2)}
    for r in range(args.rounds):
        offset = (r + 1) * len(pool) // (args.rounds + 1)
        seconds, steps, gradients, divergences, charged = 0.0, [], 0, 0, 0
        rhat, ess = [], []
        for i in range(args.single):
            start = time.perf_counter()
            fit = single.fit(pool[offset + i], seed=1000 * r + i)
            seconds += time.perf_counter() - start
            read = counter.read()
            steps.append(read["steps_per_draw"])
            gradients += read["gradients"]
            rhat.append(fit.max_rhat)
            divergences += fit.divergences
            charged += fit.divergences > 0
            ess.append(fit.min_ess_bulk)
        round_records = [
            {
                "variant": SINGLE,
                "batch": 1,
                "target_accept": single.target_accept,
                "round": r,
                "analyses": args.single,
                "s_per_analysis": seconds / args.single,
                "steps_per_draw": float(np.mean(steps)),
                "gradients": gradients,
                "worst_rhat": float(np.nanmax(rhat)),
                "worst_ess_bulk": float(np.nanmin(ess)),
                "median_ess_bulk": float(np.nanmedian(ess)),
                "replicates_rhat_over_1.01": int((np.array(rhat) > 1.01).sum()),
                "replicates_ess_under_400": int((np.array(ess) < 400).sum()),
                "divergences": int(divergences),
                "charged": int(charged),
            }
        ]
        for variant, refitter in batched.items():
            b = refitter.size
            start = time.perf_counter()
            fit = refitter.fit(pool[offset : offset + b], seed=1000 * r + b)
            seconds = time.perf_counter() - start
            round_records.append(
                {
                    "variant": variant,
                    "batch": b,
                    "target_accept": round(refitter.target_accept, 4),
                    "round": r,
                    "analyses": b,
                    "s_per_analysis": seconds / b,
                    **counter.read(),
                    "divergences": fit.divergences,
                    "charged": b if fit.divergences else 0,  # a batch's divergence counts for all its replicates
                    "worst_rhat": float(np.nanmax(fit.max_rhat)),
                    "worst_ess_bulk": float(np.nanmin(fit.min_ess_bulk)),
                    "median_ess_bulk": float(np.nanmedian(fit.min_ess_bulk)),
                    "replicates_rhat_over_1.01": int((fit.max_rhat > 1.01).sum()),
                    "replicates_ess_under_400": int((fit.min_ess_bulk < 400).sum()),
                }
            )
        base = round_records[0]["s_per_analysis"]
        for record in round_records:
            record["speedup_vs_single"] = base / record["s_per_analysis"]
            # every leapfrog step (warm-up too) evaluates the density and gradient once
            per_analysis = record["gradients"] / record["analyses"]
            record["s_per_step_per_analysis"] = record["s_per_analysis"] / per_analysis
            # the share of the fit spent in gradient evaluations, at nutpie's benchmark speed
            record["gradient_share"] = (
                record["gradients"] * grad_s[record["variant"]] / (record["s_per_analysis"] * record["analyses"])
            )
            record.update(stamp, compile_s=round(compile_s[record["variant"]], 2))
            record["gradient_us"] = round(grad_s[record["variant"]] * 1e6, 3)
            print(json.dumps(record), flush=True)
        records.extend(round_records)

    summary = {}
    for variant in [SINGLE, *batched]:
        mine = [r for r in records if r["variant"] == variant]
        summary[variant] = {
            "speedup_vs_single_median": round(statistics.median(r["speedup_vs_single"] for r in mine), 3),
            "steps_per_draw_median": round(statistics.median(r["steps_per_draw"] for r in mine), 2),
            "gradient_share_median": round(statistics.median(r["gradient_share"] for r in mine), 3),
            "median_ess_bulk_median": round(statistics.median(r["median_ess_bulk"] for r in mine), 1),
            "rhat_over_1.01_share": round(
                sum(r["replicates_rhat_over_1.01"] for r in mine) / sum(r["analyses"] for r in mine), 4
            ),
            "ess_under_400_share": round(
                sum(r["replicates_ess_under_400"] for r in mine) / sum(r["analyses"] for r in mine), 4
            ),
            "charged_share": round(sum(r["charged"] for r in mine) / sum(r["analyses"] for r in mine), 4),
            "target_accept": mine[0]["target_accept"],
            "gradient_us": mine[0]["gradient_us"],
            "step_cost_vs_single_median": round(
                statistics.median(
                    r["s_per_step_per_analysis"]
                    / next(
                        s["s_per_step_per_analysis"]
                        for s in records
                        if s["variant"] == SINGLE and s["round"] == r["round"]
                    )
                    for r in mine
                ),
                3,
            ),
        }
    print(json.dumps({"summary": summary, **stamp}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "a") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
            handle.write(json.dumps({"summary": summary, **stamp}) + "\n")


if __name__ == "__main__":
    main()
