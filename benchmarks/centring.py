"""Centred against non-centred group effects, measured: what chose `marrow.models.effects.CENTRED_FROM`.

Fits a model on each trial with each `--parameterisation` (in one process; the compile is timed apart,
so `sample_s` is NUTS alone) and appends one JSON line per fit: the resolved choice per level, the
fewest informative observations per group of each level, mean leapfrog steps per draw (nutpie's
`n_steps`), divergences, minimum bulk ESS over the model's parameters (the same set in both forms:
population means and sds, the lineage or center effects, covariate effects) and ESS per second.

    python benchmarks/centring.py --trials bundled,/tmp/trial-300,/tmp/trial-2000 --model recovery --no-cure \
        --parameterisation auto,noncentred,centred --out benchmarks/results/centring-2026-12-05.jsonl

A trial is `bundled` or a folder written by `benchmarks/generate.py` (patients.csv, recovery.csv).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

COMPARED = ("log_median", "log_shape", "cure_intercept", "center_effect", "cure_center_effect")


def load(trial: str, covariates: tuple[str, ...] = ()):
    from marrow.api import load_trial

    if trial == "bundled":
        return load_trial(covariates=covariates)
    folder = Path(trial)
    return load_trial(folder / "patients.csv", recovery=folder / "recovery.csv", covariates=covariates)


def measure(trial: str, model: str, options: dict, parameterisation: str, chains: int, draws: int, seed: int) -> dict:
    import arviz as az
    import numpy as np

    from marrow.api import model_spec
    from marrow.fits.compiled import compiled_nutpie_model, structure_key
    from marrow.fits.run import fit_model
    from marrow.models import build_model, model_inputs
    from marrow.priors import load_prior_set
    from marrow.priors.units import priors_in_unit
    from marrow.spec import SamplerSettings

    data = load(trial, tuple(options.get("covariates", ())))
    spec = model_spec(model, parameterisation=parameterisation, **options)
    priors = load_prior_set(None)
    inputs = model_inputs(data, spec)
    start = time.perf_counter()  # compile once, timed apart; fit_model then finds it in the cache
    built = build_model(data, spec, priors)
    key = structure_key(spec, priors_in_unit(priors, spec.time_unit), inputs, None)
    compiled_nutpie_model(built, key, {v.name: v.get_value() for v in built.data_vars}, None)
    compile_s = time.perf_counter() - start
    settings = SamplerSettings(chains=chains, draws=draws, tune=draws, seed=seed, sampler="nutpie")
    start = time.perf_counter()
    fit = fit_model(data, spec, priors, settings, postprocess=False)
    fit_s = time.perf_counter() - start
    post, stats = fit.idata.posterior, fit.idata.sample_stats
    names = [
        n
        for n in post.data_vars
        if n.endswith(("_mu", "_sd")) or n in COMPARED or n in ("intercept", "time_beta", "beta", "cure_beta")
    ]
    ess = az.ess(post[names], method="bulk")
    per_var = {n: float(ess[n].min()) for n in names}
    sample_s = json.loads(fit.provenance["timings"])["sample_s"]
    module = __import__(f"marrow.models.{model}", fromlist=["level_information"])
    information = {}
    if hasattr(module, "level_information"):
        e = inputs.extra
        information = {
            k: float(np.min(v))
            for k, v in module.level_information(
                data, spec, e["row_patient"], e["row_lineage"], e["row_recovered"]
            ).items()
        }
    min_ess = min(per_var.values())
    return {
        "trial": trial,
        "patients": len(data.patient_ids),
        "model": model,
        "options": options,
        "parameterisation": parameterisation,
        "resolved": inputs.parameterisation,
        "fewest_per_group": information,
        "chains": chains,
        "draws": draws,
        "seed": seed,
        "compile_s": round(compile_s, 2),
        "sample_s": round(sample_s, 2),
        "fit_s": round(fit_s, 2),
        "mean_n_steps": round(float(stats["n_steps"].mean()), 1),
        "divergences": int(stats["diverging"].sum()),
        "min_ess_bulk": round(min_ess, 1),
        "min_ess_variable": min(per_var, key=per_var.get),
        "ess_per_s": round(min_ess / sample_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", default="bundled", help="comma-separated: bundled or generate.py folders")
    parser.add_argument("--model", default="recovery", choices=("recovery", "response"))
    parser.add_argument("--no-cure", action="store_true", help="recovery without cure (as the registry benchmark)")
    parser.add_argument("--covariates", default="", help="comma-separated covariate columns (none by default)")
    parser.add_argument("--parameterisation", default="auto,noncentred", help="comma-separated choices to compare")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1000, help="draws and warm-up iterations per chain")
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file to append to")
    args = parser.parse_args()
    options: dict = {"cure": False} if args.no_cure else {}
    if args.covariates:
        options["covariates"] = tuple(args.covariates.split(","))
    for trial in args.trials.split(","):
        for choice in args.parameterisation.split(","):
            record = measure(trial, args.model, options, choice, args.chains, args.draws, args.seed)
            print(json.dumps(record), flush=True)
            with args.out.open("a") as fh:
                fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
