"""The hand-written PyMC + nutpie scripts of benchmarks/scripts fit the same models as marrow.

Each script is the peer of one `marrow fit` in the new-process benchmark (`bench_marrow.py
newprocess`); the comparison is only fair if it is the same model, priors and data. Two checks:

* exact, no sampling: the script's model (`build_model`) and marrow's have the same log density up
  to a constant at random parameter values (a prior scale changed from 1 to 2, or a lineage shape
  sd from 0.5 to 0.6, fails it);
* end to end (tier `sampling`, about 2 minutes, mostly compiling): each script runs as a user runs
  it (a subprocess, 2 x (300 + 300) draws) and its posterior of the headline quantities agrees with
  marrow's fit of the same spec. The two are independent Monte Carlo estimates of one posterior, so
  the difference of their posterior means has standard deviation sqrt(mcse_a^2 + mcse_b^2) (ArviZ's
  MCSE of the mean), and likewise for the posterior sds; both must agree within Z = 4 of those
  (about 6e-5 false alarms per comparison under the null). This resolves differences of about
  0.2-0.3 posterior sd (an uncentred covariate in the survival script fails it), and checks what
  the first cannot: the data each script reads, its sampler settings and its derived quantities.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
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


def load_script(name: str):
    """benchmarks/scripts/NAME.py as a module (its `build_model` builds the model without sampling)."""
    spec = importlib.util.spec_from_file_location(f"peer_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_model(name: str):
    """The script's PyMC model of the bundled trial, with marrow's covariates for that model."""
    from marrow import datasets

    spec = CASES[name][0]
    patients = pd.read_csv(datasets.PATIENTS_CSV)
    tables = (patients, pd.read_csv(datasets.RECOVERY_CSV)) if spec.model == "recovery" else (patients,)
    covariates = (list(spec.covariates),) if spec.model != "safety" else ()
    return load_script(name).build_model(*tables, *covariates)


def marrow_model(spec: ModelSpec):
    from marrow.data import load_trial
    from marrow.models import module_for
    from marrow.priors import load_prior_set
    from marrow.priors.units import priors_in_unit

    module = module_for(spec.model)
    inputs = module.inputs(load_trial(needs=spec.needs()), spec)
    return module.build(inputs, spec, priors_in_unit(load_prior_set(), spec.time_unit))


def value_dims(model) -> dict[str, tuple]:
    """Each free variable's value name (e.g. center_sd_log__) -> the coordinate labels of its dims."""
    out = {}
    for rv in model.free_RVs:
        dims = model.named_vars_to_dims.get(rv.name, ())
        out[model.rvs_to_values[rv].name] = tuple(list(model.coords[d]) for d in dims)
    return out


# Free variables marrow's model has and the scripts leave out: not in the likelihood (a new center's
# effect, drawn for the predictive new_center_rate). Held at 0, they add a constant to marrow's density.
MARROW_ONLY = {"new_center_z"}


@pytest.mark.parametrize("name", list(CASES))
def test_script_model_has_marrows_log_density(name: str) -> None:
    """At random parameter values around the priors' centres the script's log density (priors,
    Jacobians, likelihood) differs from marrow's by one constant: the same model up to normalisation
    (binomial cell counts against Bernoulli rows), parameters matched by name and coordinate label."""
    script, marrow = script_model(name), marrow_model(CASES[name][0])
    script_dims, marrow_dims = value_dims(script), value_dims(marrow)
    assert set(script_dims) <= set(marrow_dims) and set(marrow_dims) - set(script_dims) <= MARROW_ONLY
    script_logp, marrow_logp = script.compile_logp(), marrow.compile_logp()
    rng = np.random.default_rng(3)
    start = marrow.initial_point()  # prior centres; far out PyMC's censored Weibull underflows to -inf
    gaps = []
    for _ in range(6):
        at_marrow = {
            k: value if k in MARROW_ONLY else value + rng.normal(0, 0.5, np.shape(value)) for k, value in start.items()
        }
        at_script = {}
        for k, labels in script_dims.items():
            value = at_marrow[k]
            for axis, (mine, theirs) in enumerate(zip(labels, marrow_dims[k], strict=True)):
                value = np.take(value, [list(theirs).index(label) for label in mine], axis=axis)
            at_script[k] = value
        gaps.append(float(script_logp(at_script)) - float(marrow_logp(at_marrow)))
    assert np.ptp(gaps) < 1e-8, gaps


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


# The log-density test above covers all five scripts; sampling is compared on the most and the least
# complex model (each case compiles marrow's model and the script's in new processes: the suite's time).
@pytest.mark.sampling
@pytest.mark.parametrize("name", ["recovery", "safety"])
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
