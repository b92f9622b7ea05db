# ruff: noqa: E402  (the imports are timed: they follow the clock's start)
"""Overall survival, Weibull accelerated failure time model, written by hand with PyMC + nutpie.

The peer of `marrow fit survival` (benchmarks/README.md, "New process"): the same model, priors
(weakly-informative) and sampler settings on the bundled trial, written as a user would with
PyMC's own censored Weibull. Location = log median survival (days) at the trial-average patient
(covariates centred), shape k: T ~ Weibull(k, scale = median / ln2^(1/k)); exp(beta) are time ratios.

    python benchmarks/scripts/survival.py --out survival.nc
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


def build_model(patients: pd.DataFrame, covariates: list[str]) -> pm.Model:
    """The model of the docstring above, on these tables."""
    days = patients["followup_days"].to_numpy(dtype=float)
    died = patients["died"].to_numpy(dtype=bool)
    x = patients[covariates].to_numpy(dtype=float)
    x = x - x.mean(axis=0)
    with pm.Model(coords={"covariate": covariates}) as model:
        log_median = pm.Normal("log_median", 7.5, 1.5)
        log_shape = pm.Normal("log_shape", 0, 0.5)
        beta = pm.Normal("beta", 0, 1, dims="covariate")
        shape = pm.math.exp(log_shape)
        median = pm.math.exp(log_median + pm.math.dot(x, beta))
        weibull = pm.Weibull.dist(alpha=shape, beta=median / np.log(2) ** (1 / shape))
        pm.Censored("days", weibull, lower=None, upper=np.where(died, np.inf, days), observed=days)
        pm.Deterministic("median_days", pm.math.exp(log_median))
        pm.Deterministic("shape", shape)
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--covariates", default="prior_atg,active_infection")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with patients.csv")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    covariates = [c for c in args.covariates.split(",") if c]
    times = {"import_s": IMPORT_S}

    t = time.perf_counter()
    patients = pd.read_csv(args.data / "patients.csv")
    times["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    model = build_model(patients, covariates)
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
        target_accept=0.9,
        seed=args.seed,
        save_warmup=False,
        progress_bar=not args.quiet,
    )
    times["sample_s"] = time.perf_counter() - t

    t = time.perf_counter()
    print(az.summary(idata, var_names=["median_days", "shape", "beta"]))
    idata.to_netcdf(args.out)
    times["save_s"] = time.perf_counter() - t
    print(json.dumps(times))


if __name__ == "__main__":
    main()
