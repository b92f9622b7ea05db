# ruff: noqa: E402  (the imports are timed: they follow the clock's start)
"""Time to blood-count recovery per lineage, mixture cure model, written by hand with PyMC + nutpie.

The peer of `marrow fit recovery` (its default: log-logistic latency with a cure fraction;
benchmarks/README.md, "New process"): the same model, priors (weakly-informative) and sampler settings
on the bundled trial, written as a user would, one likelihood term per (patient, lineage) row:

  P(ever recovers) pi = logistic(cure_intercept[lineage] + center effect + xc' cure_beta)
  time to recovery of those who do: log-logistic, median exp(log_median[lineage] + xc' time_beta),
  shape exp(log_shape[lineage]); lineage parameters partially pooled, all effects non-centred;
  covariates xc centred at their mean over the patients.
  recovered on day t:  log pi + log f(t);   censored at day t:  log(1 - pi + pi S(t)).

    python benchmarks/scripts/recovery.py --out recovery.nc
"""

import time

START = time.perf_counter()
import argparse
import json
from pathlib import Path

import arviz as az
import numpy as np
import nutpie
import pandas as pd
import pymc as pm

IMPORT_S = time.perf_counter() - START
DATA = Path(__file__).resolve().parents[2] / "marrow" / "datasets"


def lineage_effect(name: str, mu: float, sigma: float, sd: float):
    """name = name_mu + name_sd * z per lineage (non-centred)."""
    loc = pm.Normal(f"{name}_mu", mu, sigma)
    scale = pm.HalfNormal(f"{name}_sd", sd)
    return pm.Deterministic(name, loc + scale * pm.Normal(f"{name}_z", 0, 1, dims="lineage"), dims="lineage")


def build_model(patients: pd.DataFrame, rows: pd.DataFrame, covariates: list[str]) -> pm.Model:
    """The model of the docstring above, on these tables."""
    center, centers = pd.factorize(patients["center"], sort=True)
    x = patients[covariates].to_numpy(dtype=float)
    x = x - x.mean(axis=0)
    patient = pd.Index(patients["patient_id"]).get_indexer(rows["patient_id"])
    lineage, lineages = pd.factorize(rows["lineage"])
    log_day = np.log(rows["day"].to_numpy(dtype=float))
    recovered = rows["recovered"].to_numpy(dtype=bool)
    coords = {"lineage": lineages, "center": centers, "covariate": covariates}
    with pm.Model(coords=coords) as model:
        log_median = lineage_effect("log_median", 3.4, 1, 0.5)
        log_shape = lineage_effect("log_shape", 0.7, 0.7, 0.5)
        time_beta = pm.Normal("time_beta", 0, 0.5, dims="covariate")
        cure_intercept = lineage_effect("cure_intercept", 0, 1.5, 1)
        cure_beta = pm.Normal("cure_beta", 0, 1, dims="covariate")
        cure_center_sd = pm.HalfNormal("cure_center_sd", 1)
        center_effect = cure_center_sd * pm.Normal("cure_center_z", 0, 1, dims="center")

        # per patient and lineage: logit P(ever recovers)
        eta = cure_intercept[None, :] + (center_effect[center] + pm.math.dot(x, cure_beta))[:, None]
        # per row: log-logistic latency, u = k (log t - log median)
        shape = pm.math.exp(log_shape[lineage])
        u = shape * (log_day - log_median[lineage] - pm.math.dot(x, time_beta)[patient])
        log_s = -pm.math.log1pexp(u)
        log_f = pm.math.log(shape) - log_day + u + 2 * log_s
        eta_row = eta[patient, lineage]
        log_pi, log_1m_pi = -pm.math.log1pexp(-eta_row), -pm.math.log1pexp(eta_row)
        loglik = pm.math.switch(recovered, log_pi + log_f, pm.math.logaddexp(log_1m_pi, log_pi + log_s))
        pm.Potential("loglik", loglik.sum())

        pm.Deterministic("median_days", pm.math.exp(log_median), dims="lineage")
        pm.Deterministic("cure_fraction", 1 - pm.math.invlogit(eta).mean(axis=0), dims="lineage")
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--covariates", default="prior_atg,active_infection")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with patients.csv and recovery.csv")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    covariates = [c for c in args.covariates.split(",") if c]
    times = {"import_s": IMPORT_S}

    t = time.perf_counter()
    patients = pd.read_csv(args.data / "patients.csv")
    rows = pd.read_csv(args.data / "recovery.csv")
    times["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    model = build_model(patients, rows, covariates)
    times["build_s"] = time.perf_counter() - t

    t = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    times["compile_s"] = time.perf_counter() - t

    t = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        chains=args.chains,
        tune=args.tune,
        draws=args.draws,
        target_accept=0.99,
        seed=args.seed,
        save_warmup=False,
        progress_bar=not args.quiet,
    )
    times["sample_s"] = time.perf_counter() - t

    t = time.perf_counter()
    names = ["median_days", "cure_fraction", "time_beta", "cure_beta", "log_median_sd", "cure_center_sd"]
    print(az.summary(idata, var_names=names))
    idata.to_netcdf(args.out)
    times["save_s"] = time.perf_counter() - t
    print(json.dumps(times))


if __name__ == "__main__":
    main()
