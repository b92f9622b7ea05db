"""The lean refitter gives the draws a fresh `marrow fit` gives, for the design's data and for new data."""

from dataclasses import replace

import arviz as az
import numpy as np
import pytest

from marrow.data import Needs, load_trial
from marrow.fits.run import fit_model
from marrow.models import module_for
from marrow.priors import load_prior_set
from marrow.simulate.refit import refitter_for
from marrow.spec import ModelSpec, SamplerSettings

pytestmark = pytest.mark.sampling


def test_refits_equal_fresh_fits_and_compile_once():
    data = load_trial(None, None, Needs(response=True))
    spec = ModelSpec("response")
    priors = load_prior_set(None)
    settings = SamplerSettings(chains=2, draws=100, tune=100, seed=5, cores=1)
    module = module_for("response")
    template = module.inputs(data, spec)
    refitter = refitter_for(spec, priors, settings, template)
    assert refitter_for(spec, priors, settings, template) is refitter

    # A replicate: the same patients, responders redrawn (same cells, same shapes).
    rng = np.random.default_rng(3)
    patients = data.patients.copy()
    patients["responder"] = rng.binomial(1, 0.6, len(patients))
    other = replace(data, patients=patients)
    for trial, seed in ((data, 5), (other, 11)):
        lean = refitter.fit(module.inputs(trial, spec), seed)
        fresh_fit = fit_model(trial, spec, priors, replace(settings, seed=seed))
        fresh = fresh_fit.idata.posterior
        # The same draws; the one-off fit computes its deterministics after sampling with numpy
        # (marrow.fits.deterministics), the refit in the compiled sampler: equal to rounding.
        np.testing.assert_array_equal(lean.posterior["intercept"].values, fresh["intercept"].values)
        np.testing.assert_allclose(lean.posterior["response_rate"].values, fresh["response_rate"].values, rtol=1e-12)
        # The diagnostics are ArviZ's, worst over every variable and element.
        rhat = az.rhat(fresh, method="rank")
        ess = az.ess(fresh, method="bulk")
        assert lean.max_rhat == pytest.approx(max(float(rhat[v].max()) for v in rhat.data_vars), rel=1e-9)
        assert lean.min_ess_bulk == pytest.approx(min(float(ess[v].min()) for v in ess.data_vars), rel=1e-9)
        assert lean.divergences == int(fresh_fit.idata.sample_stats["diverging"].sum())
    # Different data give different draws (the swap took effect).
    first = refitter.fit(module.inputs(data, spec), 5).posterior["response_rate"].values
    second = refitter.fit(module.inputs(other, spec), 5).posterior["response_rate"].values
    assert abs(first.mean() - second.mean()) > 0.05
