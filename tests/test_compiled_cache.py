"""The in-process cache of compiled nutpie models: new data swapped in give the numbers of a fresh compile."""

from __future__ import annotations

import numpy as np
import pytest

from marrow.data import load_trial
from marrow.fits import compiled
from marrow.fits.run import fit_model
from marrow.priors import load_prior_set
from marrow.spec import ModelSpec, SamplerSettings

pytest.importorskip("nutpie")

SETTINGS = SamplerSettings(chains=2, draws=200, tune=200, seed=3, sampler="nutpie")
SPEC = ModelSpec("response", covariates=("prior_atg", "active_infection"))


def _other_outcomes(patients_frame, tmp_path):
    """The bundled design (same centers and covariate cells) with more responders."""
    frame = patients_frame.copy()
    frame.loc[frame.index[::3], "response"] = "PR"
    path = tmp_path / "patients.csv"
    frame.to_csv(path, index=False)
    return load_trial(path, None, SPEC.needs())


@pytest.mark.sampling
def test_swapped_data_give_the_numbers_of_a_fresh_compile(patients_frame, tmp_path):
    priors = load_prior_set()
    compiled.clear()
    bundled = load_trial(None, None, SPEC.needs())
    first = fit_model(bundled, SPEC, priors, SETTINGS)
    assert compiled.cached_entries() == 1
    other = _other_outcomes(patients_frame, tmp_path)
    swapped = fit_model(other, SPEC, priors, SETTINGS)  # same structure: cached model, new data
    assert compiled.cached_entries() == 1
    compiled.clear()
    fresh = fit_model(other, SPEC, priors, SETTINGS)
    rate = "response_rate"
    assert np.array_equal(swapped.idata.posterior[rate], fresh.idata.posterior[rate])
    # and the data really changed: 1 in 3 patients made responders raises the rate
    assert swapped.idata.posterior[rate].mean() > first.idata.posterior[rate].mean() + 0.1
    again = fit_model(bundled, SPEC, priors, SETTINGS)
    assert np.array_equal(again.idata.posterior[rate], first.idata.posterior[rate])


def test_the_key_changes_with_structure_not_with_data(patients_frame, tmp_path):
    from marrow.models import model_inputs

    priors = load_prior_set()
    bundled = load_trial(None, None, SPEC.needs())
    other = _other_outcomes(patients_frame, tmp_path)
    key = compiled.structure_key(SPEC, priors, model_inputs(bundled, SPEC), None)
    assert key == compiled.structure_key(SPEC, priors, model_inputs(other, SPEC), None)
    no_covariates = ModelSpec("response")
    assert key != compiled.structure_key(no_covariates, priors, model_inputs(bundled, no_covariates), None)
    assert key != compiled.structure_key(SPEC, load_prior_set("skeptical"), model_inputs(bundled, SPEC), None)


def _relabelled(patients_frame, tmp_path):
    """The bundled trial with other center names (same design, same outcomes)."""
    frame = patients_frame.copy()
    frame["center"] = frame["center"].str.replace("Center ", "Site ")
    path = tmp_path / "relabelled.csv"
    frame.to_csv(path, index=False)
    return load_trial(path, None, SPEC.needs())


def test_the_key_does_not_depend_on_labels(patients_frame, tmp_path):
    from marrow.models import model_inputs

    priors = load_prior_set()
    bundled, relabelled = load_trial(None, None, SPEC.needs()), _relabelled(patients_frame, tmp_path)
    assert model_inputs(relabelled, SPEC).coords["center"] != model_inputs(bundled, SPEC).coords["center"]
    assert compiled.structure_key(SPEC, priors, model_inputs(bundled, SPEC), None) == compiled.structure_key(
        SPEC, priors, model_inputs(relabelled, SPEC), None
    )


@pytest.mark.sampling
def test_relabelled_data_reuse_the_compile_and_carry_their_own_labels(patients_frame, tmp_path):
    priors = load_prior_set()
    compiled.clear()
    first = fit_model(load_trial(None, None, SPEC.needs()), SPEC, priors, SETTINGS)
    relabelled = fit_model(_relabelled(patients_frame, tmp_path), SPEC, priors, SETTINGS)
    assert compiled.cached_entries() == 1
    centers = list(relabelled.idata.posterior["center_rate"]["center"].to_numpy())
    assert centers and all(c.startswith("Site ") for c in centers)
    # same design and outcomes: the same numbers, under the new names
    assert np.array_equal(
        first.idata.posterior["center_rate"].to_numpy(), relabelled.idata.posterior["center_rate"].to_numpy()
    )
