"""Make the small stored fits of tests/data/fits: real NUTS fits of the bundled trial, few draws.

    .venv/bin/python tests/data/fits/make_fits.py [NAME ...]   # rewrites every file here, or those named

The summarize, diagnose, plot and report-rendering tests read these instead of sampling
(`stored_fit` in tests/conftest.py). Their numbers prove nothing about a posterior (2 chains x 50 draws);
they are real draws of the real model, so every group, variable, dim and provenance attr is
what `marrow fit` writes. Run this again when a model's variables or the fit format change:
tests/test_stored_fits.py fails loudly until then. Paths of the bundled data are stored relative
to the repository (`tests/conftest.py` resolves them), so the files do not depend on a checkout.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from marrow.spec import ModelSpec, SamplerSettings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
COVARIATES = ("prior_atg", "active_infection")
SETTINGS = SamplerSettings(chains=2, draws=50, tune=200, seed=7, cores=1)
# The recovery fit stores curves and a row-wise log-likelihood: fewer draws keep it under 300 KB.
DRAWS = {"recovery": 25}
# The steps of tests/test_report_render.py's plan, by name: families stated as a plan states them.
SPECS: dict[str, ModelSpec] = {
    "response": ModelSpec("response", covariates=COVARIATES),
    "ordinal": ModelSpec("response", outcome="ordinal", covariates=COVARIATES),
    "recovery": ModelSpec("recovery", covariates=("prior_atg",), family="loglogistic"),
    "survival": ModelSpec("survival", covariates=COVARIATES, family="weibull"),
    "safety": ModelSpec("safety", family="hierarchical"),
}
# Provenance attrs that differ between two runs of this script on the same code.
VOLATILE = ("created_utc", "versions", "timings")


def relative_sources(provenance: dict[str, str]) -> str:
    """`data_sources` with each bundled file's path relative to the repository root."""
    sources = json.loads(provenance["data_sources"])
    for source in sources:
        source["path"] = Path(source["path"]).resolve().relative_to(ROOT).as_posix()
    return json.dumps(sources)


def settings_for(name: str) -> SamplerSettings:
    return replace(SETTINGS, draws=DRAWS.get(name, SETTINGS.draws))


def make(name: str, spec: ModelSpec, folder: Path = HERE):
    """Fit `spec` on the bundled trial with `settings_for(name)` and save it as `<folder>/<name>.nc`."""
    from marrow.data import load_trial
    from marrow.fits.run import fit_model
    from marrow.priors import load_prior_set

    fit = fit_model(load_trial(needs=spec.needs()), spec, load_prior_set(), settings_for(name))
    fit.provenance["data_sources"] = relative_sources(fit.provenance)
    fit.provenance["command_line"] = "python tests/data/fits/make_fits.py"
    fit.save(folder / f"{name}.nc", force=True)
    return fit


def main(names: list[str]) -> None:
    for name, spec in SPECS.items():
        if names and name not in names:
            continue
        make(name, spec)
        print(f"{name}.nc: {(HERE / f'{name}.nc').stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
