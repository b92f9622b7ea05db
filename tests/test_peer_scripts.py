"""The hand-written PyMC + nutpie scripts of benchmarks/scripts fit the same models as marrow.

Each script is the peer of one `marrow fit` in the new-process benchmark (`bench_marrow.py
newprocess`); the comparison is only fair if it is the same model, priors and data. Here each
script runs as a user runs it (a subprocess, small settings) and its posterior of the headline
quantities is compared with marrow's own fit of the same spec on the bundled trial.

Criterion: the two are independent Monte Carlo estimates of one posterior, so the difference of
their posterior means has standard deviation sqrt(mcse_a^2 + mcse_b^2) (ArviZ's MCSE of the mean,
from the bulk ESS), and likewise for the posterior sds (MCSE of the sd). Both must agree within
Z = 4 of those: about 6e-5 false alarms per comparison under the null. With 2 x 300 draws this
resolves differences of about 0.2-0.3 posterior sd: an uncentred covariate in the survival script
fails it (log_median and beta move by 0.2 each), a missing center effect or a wrong likelihood
would too; a prior change the bundled trial barely feels (center_sd HalfNormal(2) for (1)) does
not: the scripts' priors are to be read against marrow/priors/sets/weakly-informative.toml.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marrow.spec import ModelSpec, SamplerSettings

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "benchmarks" / "scripts"
COVARIATES = ("prior_atg", "active_infection")
SMALL = ("--chains", "2", "--tune", "300", "--draws", "300")
Z = 4.0

# script name -> (marrow's spec of the same model, the quantities compared, named alike in both fits)
CASES = {
    "response": (
        ModelSpec("response", covariates=COVARIATES),
        ["response_rate", "intercept", "beta", "center_sd"],
    ),
    "ordinal": (
        ModelSpec("response", outcome="ordinal", covariates=COVARIATES),
        ["response_rate", "cr_rate", "intercept", "beta", "center_sd", "cr_gap"],
    ),
    "recovery": (
        ModelSpec("recovery", covariates=COVARIATES),
        ["median_days", "cure_fraction", "time_beta", "cure_beta", "log_median_mu", "cure_intercept_mu"],
    ),
    "survival": (ModelSpec("survival", covariates=COVARIATES), ["log_median", "shape", "beta"]),
    "safety": (ModelSpec("safety"), ["ae_rate"]),
}


def run_script(name: str, out: Path) -> None:
    cmd = [sys.executable, str(SCRIPTS / f"{name}.py"), *SMALL, "--seed", "5", "--quiet", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def marrow_fit(spec: ModelSpec):
    from marrow.data import load_trial
    from marrow.fits.run import fit_model
    from marrow.priors import load_prior_set

    settings = SamplerSettings(chains=2, tune=300, draws=300, seed=9)
    return fit_model(load_trial(needs=spec.needs()), spec, load_prior_set(), settings, postprocess=False).idata


def summary(idata, names: list[str]):
    import arviz as az

    return az.summary(idata, var_names=names, kind="all")


@pytest.mark.sampling
@pytest.mark.parametrize("name", list(CASES))
def test_script_fits_the_same_posterior_as_marrow(name: str, tmp_path: Path) -> None:
    import arviz as az

    spec, names = CASES[name]
    out = tmp_path / f"{name}.nc"
    run_script(name, out)
    script = summary(az.from_netcdf(out), names)
    marrow = summary(marrow_fit(spec), names)
    assert list(script.index) == list(marrow.index)  # the same quantities, labels and order
    for stat, mcse in (("mean", "mcse_mean"), ("sd", "mcse_sd")):
        gap = (script[stat] - marrow[stat]).abs()
        allowed = Z * np.hypot(script[mcse], marrow[mcse])
        bad = gap > allowed
        shown = script.assign(marrow=marrow[stat], gap=gap, allowed=allowed)[bad]
        assert not bad.any(), f"{name}: posterior {stat} differs:\n{shown[[stat, 'marrow', 'gap', 'allowed']]}"
