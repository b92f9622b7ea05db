# ruff: noqa: E402  (the imports are timed: they follow the clock's start)
"""Hierarchical logistic response model, written by hand with PyMC + nutpie.

The peer of `marrow fit response` (benchmarks/README.md, "New process"): the same model, priors
(weakly-informative) and sampler settings on the bundled trial, as a trial statistician would write
it: one Bernoulli row per patient, non-centred center effects.

    python benchmarks/scripts/response.py --out response.nc
"""

import time

START = time.perf_counter()
import argparse
import json
from pathlib import Path

import arviz as az
import nutpie
import pandas as pd
import pymc as pm

IMPORT_S = time.perf_counter() - START
DATA = Path(__file__).resolve().parents[2] / "marrow" / "datasets"


def build_model(patients: pd.DataFrame, covariates: list[str]) -> pm.Model:
    """The model of the docstring above, on these tables."""
    responder = patients["response"].isin(["CR", "PR"]).to_numpy(dtype=int)
    center, centers = pd.factorize(patients["center"], sort=True)
    x = patients[covariates].to_numpy(dtype=float)
    with pm.Model(coords={"center": centers, "covariate": covariates}) as model:
        intercept = pm.Normal("intercept", 0, 1.5)
        beta = pm.Normal("beta", 0, 1, dims="covariate")
        center_sd = pm.HalfNormal("center_sd", 1)
        center_z = pm.Normal("center_z", 0, 1, dims="center")
        eta = intercept + pm.math.dot(x, beta) + center_sd * center_z[center]
        pm.Bernoulli("responder", logit_p=eta, observed=responder)
        pm.Deterministic("response_rate", pm.math.invlogit(eta).mean())
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
        target_accept=0.95,
        seed=args.seed,
        save_warmup=False,
        progress_bar=not args.quiet,
    )
    times["sample_s"] = time.perf_counter() - t

    t = time.perf_counter()
    print(az.summary(idata, var_names=["response_rate", "intercept", "beta", "center_sd"]))
    idata.to_netcdf(args.out)
    times["save_s"] = time.perf_counter() - t
    print(json.dumps(times))


if __name__ == "__main__":
    main()
