"""The per-draw log prior `marrow fit` stores (scipy.stats, vectorised) is PyMC's `compute_log_prior`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from marrow.data import load_trial
from marrow.fits.log_prior import ATTR_VARIABLES, add_log_prior, prior_variables, pymc_log_prior
from marrow.models import build_model
from marrow.priors import PriorSet
from marrow.priors.units import priors_in_unit
from marrow.spec import ModelSpec


@pytest.mark.parametrize("name", ["response", "ordinal", "recovery", "survival", "safety"])
def test_the_stored_log_prior_is_pymcs(stored_fit, name):
    fit = stored_fit(name)
    spec = ModelSpec.from_json(fit.provenance["spec"])
    priors = priors_in_unit(PriorSet.from_dict(json.loads(fit.provenance["priors"])), spec.time_unit)
    model = build_model(load_trial(None, None, spec.needs()), spec, priors)
    idata = fit.idata.copy()
    names = add_log_prior(idata, model, spec, priors)
    assert names == prior_variables(model, spec, priors) and names
    assert idata.log_prior.attrs[ATTR_VARIABLES] == ",".join(names)
    reference = pymc_log_prior(fit.idata, model, names)
    for variable in names:
        ours, theirs = idata.log_prior[variable], reference[variable]
        assert ours.dims == theirs.dims
        # PyMC's normalising constants are rounded (about 1e-8); power-scaling is blind to a constant
        np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=0, atol=1e-7, err_msg=variable)
        assert np.ptp(ours.to_numpy()) > 0  # evaluated at the draws, not a constant
