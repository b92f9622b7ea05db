"""The small stored fits of tests/data/fits are what make_fits.py makes, and load with today's code.

They stand in for sampling in the fast tier (figures, summaries, `summarize --all`); when a model's
variables, the prior set or the fit format change, these tests fail until `make_fits.py` is run again.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import pytest
from conftest import STORED_FITS, load_stored_fit

from marrow.data import load_trial
from marrow.data.load import file_sha256
from marrow.fits import Fit
from marrow.fits.provenance import saved_variables
from marrow.priors import load_prior_set


def _script():
    spec = importlib.util.spec_from_file_location("make_fits", STORED_FITS / "make_fits.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_fits = _script()
NAMES = list(make_fits.SPECS)


def test_every_stored_fit_is_one_the_script_makes():
    assert sorted(p.stem for p in STORED_FITS.glob("*.nc")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_stored_fit_loads_with_the_settings_and_data_of_the_script(name):
    fit = Fit.load(STORED_FITS / f"{name}.nc")  # today's loader: a format change fails here
    assert fit.spec == make_fits.SPECS[name]
    # The script asks for the default sampler ("auto"); the fit records the one that ran.
    assert replace(fit.settings, sampler="auto") == make_fits.settings_for(name)
    assert fit.priors.to_json() == load_prior_set().to_json()  # the default set, as it is today
    assert fit.provenance["command_line"] == "python tests/data/fits/make_fits.py"
    posterior = fit.idata.posterior
    assert (posterior.sizes["chain"], posterior.sizes["draw"]) == (fit.settings.chains, fit.settings.draws)
    assert json.loads(fit.provenance["variables"]) == saved_variables(fit.idata)
    # Bundled data, recorded relative to the repository and unchanged since (figures reload it).
    for source in fit.data_sources:
        path = make_fits.ROOT / source["path"]
        assert not source["path"].startswith("/") and path.parent.name == "datasets", source
        assert file_sha256(path) == source["sha256"], f"{path} changed: run {STORED_FITS / 'make_fits.py'}"
    assert (STORED_FITS / f"{name}.nc").stat().st_size < 600 * 1024


@pytest.mark.parametrize("name", NAMES)
def test_stored_fit_holds_every_variable_of_todays_model(name):
    """Each free variable and deterministic of the model built now (no sampling) is in the posterior."""
    from marrow.models import build_model

    fit = load_stored_fit(name)
    model = build_model(load_trial(needs=fit.spec.needs()), fit.spec, load_prior_set())
    names = {v.name for v in model.free_RVs} | {v.name for v in model.deterministics}
    missing = names - set(fit.idata.posterior.data_vars)
    assert not missing, f"{name}.nc lacks {sorted(missing)}: run {STORED_FITS / 'make_fits.py'}"


@pytest.mark.sampling
def test_the_script_remakes_a_fit_with_the_same_layout(tmp_path):
    """Run the script's own `make` for the cheapest fit: the same groups, variables, dims and attrs."""
    stored = Fit.load(STORED_FITS / "safety.nc")
    fresh = make_fits.make("safety", make_fits.SPECS["safety"], folder=tmp_path)
    again = Fit.load(tmp_path / "safety.nc")
    assert saved_variables(again.idata) == saved_variables(stored.idata)
    for group in stored.idata.groups():
        for var, array in getattr(stored.idata, group).data_vars.items():
            assert getattr(again.idata, group)[var].sizes == array.sizes, (group, var)
    volatile = set(make_fits.VOLATILE)
    same = {k: v for k, v in stored.provenance.items() if k not in volatile}
    assert {k: v for k, v in again.provenance.items() if k not in volatile} == same
    assert fresh.provenance["data_sources"] == stored.provenance["data_sources"]
