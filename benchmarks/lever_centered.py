"""Lever: the no-cure Weibull recovery model with CENTRED lineage parameters (not marrow's code).

marrow.models.recovery writes log median and log shape per lineage non-centred
(log_median = mu + sd * z). With hundreds or thousands of rows per lineage the data pin each
lineage's median and shape down tightly, and the non-centred form then puts a narrow curved ridge
in (mu, sd, z): small step sizes and deep trees. This script builds the same likelihood and priors
with the lineage parameters centred (log_median_l ~ Normal(mu, sd)), and without the per-draw
population-averaged deterministics, to measure what the reparameterisation buys.

    python benchmarks/lever_centered.py DATA_DIR [--sampler nutpie] [--tune 1000 --draws 1000] [--centred/--non-centred]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings


def build(trial, centred: bool):
    import numpy as np
    import pymc as pm
    import pytensor.tensor as pt

    rec = trial.recovery
    lineages = list(trial.lineages)
    patient_lookup = {p: i for i, p in enumerate(trial.patient_ids)}
    row_patient = rec["patient_id"].map(patient_lookup).to_numpy()
    row_lineage = rec["lineage"].map({n: i for i, n in enumerate(lineages)}).to_numpy()
    log_t = np.log(rec["day"].to_numpy(dtype=float))
    event = rec["recovered"].to_numpy() == 1
    x = trial.covariate_matrix()
    x = x - x.mean(axis=0)
    ln2 = math.log(2.0)
    with pm.Model(coords={"lineage": lineages, "covariate": list(trial.covariates)}) as model:
        mu_m = pm.Normal("log_median_mu", 3.4, 1.0)
        sd_m = pm.HalfNormal("log_median_sd", 0.5)
        mu_k = pm.Normal("log_shape_mu", 0.7, 0.7)
        sd_k = pm.HalfNormal("log_shape_sd", 0.5)
        if centred:
            log_median = pm.Normal("log_median", mu_m, sd_m, dims="lineage")
            log_shape = pm.Normal("log_shape", mu_k, sd_k, dims="lineage")
        else:
            log_median = pm.Deterministic(
                "log_median", mu_m + sd_m * pm.Normal("log_median_z", 0, 1, dims="lineage"), dims="lineage"
            )
            log_shape = pm.Deterministic(
                "log_shape", mu_k + sd_k * pm.Normal("log_shape_z", 0, 1, dims="lineage"), dims="lineage"
            )
        shape = pm.Deterministic("shape", pt.exp(log_shape), dims="lineage")
        time_beta = pm.Normal("time_beta", 0.0, 0.5, dims="covariate")
        loc = log_median[row_lineage] + pt.dot(x, time_beta)[row_patient]
        k = shape[row_lineage]
        u = k * (log_t - loc)
        log_s = -ln2 * pt.exp(u)
        log_f = pt.log(k) - log_t + math.log(ln2) + u + log_s
        pm.Potential("recovery_loglik", pt.switch(event, log_f, log_s).sum())
    return model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--sampler", default="nutpie")
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--non-centred", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    import arviz as az
    import pymc as pm

    from marrow.data import load_trial
    from marrow.spec import ModelSpec

    spec = ModelSpec(model="recovery", covariates=("prior_atg", "active_infection"), cure=False)
    trial = load_trial(f"{args.data}/patients.csv", f"{args.data}/recovery.csv", spec.needs())
    model = build(trial, centred=not args.non_centred)
    t = time.perf_counter()
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pm.sample(
            tune=args.tune,
            draws=args.draws,
            chains=4,
            cores=2,
            nuts_sampler=args.sampler,
            target_accept=0.95,
            random_seed=2017,
            progressbar=False,
            compute_convergence_checks=False,
        )
    call = time.perf_counter() - t
    names = ["log_median", "shape", "time_beta"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(idata.posterior[names], method="bulk")
    stats = idata.sample_stats
    depth = stats["tree_depth"] if "tree_depth" in stats else stats["depth"]
    sampling = float(idata.posterior.attrs["sampling_time"])
    print(
        json.dumps(
            {
                "lever": "centred" if not args.non_centred else "non-centred",
                "sampler": args.sampler,
                "tune": args.tune,
                "draws": args.draws,
                "in_process_s": time.perf_counter() - start,
                "compile_s": call - sampling,
                "sampling_s": sampling,
                "tree_depth_mean": float(depth.mean()),
                "step_size_mean": float(stats["step_size"].mean()),
                "divergences": int(stats["diverging"].sum()),
                "ess_bulk_min": min(float(ess[v].min()) for v in names),
                "estimates": {v: idata.posterior[v].mean(("chain", "draw")).round(3).values.tolist() for v in names},
            }
        )
    )


if __name__ == "__main__":
    main()
