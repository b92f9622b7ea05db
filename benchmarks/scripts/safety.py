# ruff: noqa: E402  (the imports are timed: they follow the clock's start)
"""Adverse-event rate with a uniform Beta(1, 1) prior, written by hand with PyMC + nutpie.

The peer of `marrow fit safety` (its default beta-binomial family; benchmarks/README.md, "New
process"): the same model, prior (weakly-informative) and sampler settings on the bundled trial,
written as a user would: one Bernoulli row per patient, and P(rate > 0.15) from the draws.

    python benchmarks/scripts/safety.py --out safety.nc
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


def build_model(patients: pd.DataFrame) -> pm.Model:
    """The model of the docstring above, on these tables."""
    event = patients["adverse_event"].to_numpy(dtype=int)
    with pm.Model() as model:
        ae_rate = pm.Beta("ae_rate", 1, 1)
        pm.Bernoulli("adverse_event", p=ae_rate, observed=event)
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=DATA, help="folder with patients.csv")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    times = {"import_s": IMPORT_S}

    t = time.perf_counter()
    patients = pd.read_csv(args.data / "patients.csv")
    times["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    model = build_model(patients)
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
    print(az.summary(idata, var_names=["ae_rate"]))
    print(f"P(rate > 0.15) = {float((idata.posterior['ae_rate'] > 0.15).mean()):.3f}")
    idata.to_netcdf(args.out)
    times["save_s"] = time.perf_counter() - t
    print(json.dumps(times))


if __name__ == "__main__":
    main()
