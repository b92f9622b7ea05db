"""Response models: graph invariants, data swapping, and parameter recovery with real NUTS."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import QUICK, simulate_response_trial, write_csv

from marrow import dims
from marrow.data import load_trial
from marrow.fits.run import fit_model
from marrow.models import build_model, model_inputs, swap_data
from marrow.priors import load_prior_set
from marrow.spec import ModelSpec, SamplerSettings

COVARIATES = ("prior_atg", "active_infection")


@pytest.mark.parametrize("outcome", ["binary", "ordinal"])
def test_graph_dims_follow_data_and_logp_is_finite(outcome):
    spec = ModelSpec("response", outcome=outcome, covariates=COVARIATES)
    data = load_trial(needs=spec.needs())
    model = build_model(data, spec, load_prior_set())
    assert list(model.coords[dims.CENTER]) == list(data.centers)
    assert list(model.coords[dims.COVARIATE]) == list(COVARIATES)
    assert model.named_vars_to_dims["center_rate"] == (dims.CENTER,)
    assert model.named_vars_to_dims["odds_ratio"] == (dims.COVARIATE,)
    point = model.initial_point()
    assert np.isfinite(model.compile_logp()(point))
    assert np.all(np.isfinite(model.compile_dlogp()(point)))


def test_without_covariates_rates_are_scalars():
    spec = ModelSpec("response")
    model = build_model(load_trial(needs=spec.needs()), spec, load_prior_set())
    for name in ("response_rate", "new_center_rate"):
        assert model[name].ndim == 0
        assert name not in model.named_vars_to_dims
    assert "odds_ratio" not in model.named_vars


def test_cells_aggregate_patients_exactly():
    spec = ModelSpec("response", outcome="ordinal", covariates=COVARIATES)
    data = load_trial(needs=spec.needs())
    inputs = model_inputs(data, spec)
    counts = inputs.arrays["cell_counts"]
    assert counts.sum() == 74
    assert counts.sum(axis=0).tolist() == [53, 16, 5]  # NR, PR, CR
    assert len(inputs.coords[dims.CELL]) == counts.shape[0] <= 7 * 4
    assert np.isclose(inputs.arrays["cell_weight"].sum(), 1.0)
    assert np.allclose(inputs.arrays["center_weight"].sum(axis=1), 1.0)


def test_new_data_swaps_into_a_built_model(tmp_path):
    """Simulation studies refit one compiled model: a trial with other cells swaps in without a rebuild."""
    spec = ModelSpec("response", covariates=("x1", "x2"))
    first, _ = simulate_response_trial(n_centers=5, per_center=12, seed=3)
    second, _ = simulate_response_trial(n_centers=5, per_center=30, seed=4)
    data1 = load_trial(write_csv(first, tmp_path / "a.csv"), needs=spec.needs())
    data2 = load_trial(write_csv(second, tmp_path / "b.csv"), needs=spec.needs())
    model = build_model(data1, spec, load_prior_set())
    logp = model.compile_logp()
    point = model.initial_point()
    before = logp(point)
    inputs2 = model_inputs(data2, spec)
    swap_data(model, inputs2)
    after = model.compile_logp()(point)
    assert after != before
    assert model["cell_n"].get_value().sum() == 150
    # The swapped model equals a model built from the second data set.
    rebuilt = build_model(data2, spec, load_prior_set())
    assert np.isclose(after, rebuilt.compile_logp()(point))


@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    frame, truth = simulate_response_trial()
    path = write_csv(frame, tmp_path_factory.mktemp("sim") / "patients.csv")
    return path, truth


@pytest.fixture(scope="session")
def simulated_fits(simulated):
    path, _ = simulated
    settings = SamplerSettings(**QUICK)
    fits = {}
    for outcome in ("binary", "ordinal"):
        spec = ModelSpec("response", outcome=outcome, covariates=("x1", "x2"))
        fits[outcome] = fit_model(load_trial(path, needs=spec.needs()), spec, load_prior_set(), settings)
    return fits


def interval(fit, var, **sel):
    draws = fit.idata.posterior[var].sel(sel).to_numpy().reshape(-1)
    return np.quantile(draws, [0.025, 0.975])


@pytest.mark.sampling
def test_binary_model_recovers_known_truth(simulated, simulated_fits):
    _, truth = simulated
    fit = simulated_fits["binary"]
    assert int(fit.idata.sample_stats["diverging"].sum()) == 0
    low, high = interval(fit, "intercept")
    assert low < truth["intercept"] < high
    low, high = interval(fit, "center_sd")
    assert low < truth["center_sd"] < high
    for name, true_or in zip(("x1", "x2"), truth["odds_ratio"], strict=True):
        low, high = interval(fit, "odds_ratio", covariate=name)
        assert low < true_or < high
        assert not low < 1.0 < high  # a null effect, the wrong answer, is excluded
    low, high = interval(fit, "response_rate")
    assert low < truth["rate"] < high


@pytest.mark.sampling
def test_ordinal_and_binary_agree_on_the_responder_rate(simulated, simulated_fits):
    binary = simulated_fits["binary"].idata.posterior
    ordinal = simulated_fits["ordinal"].idata.posterior
    assert abs(float(binary["response_rate"].median()) - float(ordinal["response_rate"].median())) < 0.015
    for name in ("x1", "x2"):
        b = float(binary["odds_ratio"].sel(covariate=name).median())
        o = float(ordinal["odds_ratio"].sel(covariate=name).median())
        assert abs(np.log(b) - np.log(o)) < 0.25
    low, high = interval(simulated_fits["ordinal"], "cr_gap")
    assert low < 1.5 < high
    rates = ordinal["cr_rate"] + ordinal["pr_rate"]
    assert np.allclose(rates, ordinal["response_rate"])


@pytest.mark.sampling
def test_fit_groups_and_pointwise_log_likelihood(simulated_fits):
    idata = simulated_fits["binary"].idata
    for group in ("posterior", "posterior_predictive", "log_likelihood", "sample_stats", "observed_data"):
        assert group in idata.groups()
    assert idata.log_likelihood["response"].sizes[dims.PATIENT] == 800
    assert int(idata.observed_data["total_responders"]) == int(idata.observed_data["center_responders"].sum())
    predicted = idata.posterior_predictive["total_responders"].to_numpy()
    observed = int(idata.observed_data["total_responders"])
    assert np.quantile(predicted, 0.025) < observed < np.quantile(predicted, 0.975)


@pytest.mark.sampling
def test_same_seed_same_numbers(tmp_path):
    spec = ModelSpec("response", covariates=COVARIATES)
    data = load_trial(needs=spec.needs())
    settings = SamplerSettings(chains=2, draws=100, tune=100, seed=5)
    a = fit_model(data, spec, load_prior_set(), settings)
    b = fit_model(data, spec, load_prior_set(), settings)
    assert np.array_equal(a.idata.posterior["response_rate"], b.idata.posterior["response_rate"])
    assert np.array_equal(a.idata.posterior_predictive["responders"], b.idata.posterior_predictive["responders"])


@pytest.mark.parametrize("outcome", ["binary", "ordinal"])
def test_grouped_log_likelihood_gives_the_per_patient_loo_exactly(monkeypatch, outcome):
    """Above the per-patient limit one column per (cell, outcome) group is stored; PSIS-LOO expanded
    to patients (marrow.loo) and the likelihood sum for sensitivity equal the per-patient ones."""
    import arviz as az

    import marrow.models.response as response
    from marrow.loo import psis_loo
    from marrow.sensitivity import log_component

    spec = ModelSpec("response", outcome=outcome, covariates=COVARIATES)
    inputs = model_inputs(load_trial(needs=spec.needs()), spec)
    rng = np.random.default_rng(0)
    n_centers = len(inputs.coords[dims.CENTER])
    posterior = {
        "intercept": rng.normal(-1, 0.5, (2, 50)),
        "center_effect": rng.normal(0, 0.5, (2, 50, n_centers)),
        "beta": rng.normal(0, 1, (2, 50, len(COVARIATES))),
        "cr_gap": rng.uniform(0.5, 2, (2, 50)),
    }

    def augmented():
        idata = az.from_dict(
            posterior=posterior,
            dims={"center_effect": [dims.CENTER], "beta": [dims.COVARIATE]},
            coords={dims.CENTER: inputs.coords[dims.CENTER], dims.COVARIATE: list(COVARIATES)},
        )
        response.augment(idata, inputs, spec, np.random.default_rng(1)).apply(idata)
        return idata

    per_patient = augmented()
    monkeypatch.setattr(response, "PER_PATIENT_LOO_LIMIT", 10)
    grouped = augmented()
    n_groups = grouped.log_likelihood["response"].sizes[dims.OUTCOME_GROUP]
    assert per_patient.log_likelihood["response"].dims[-1] == dims.PATIENT and n_groups < 74
    a, b = psis_loo(per_patient), psis_loo(grouped)
    for key in ("elpd_loo", "se", "p_loo", "n_data_points"):
        assert np.isclose(a[key], b[key], rtol=1e-10), key
    assert np.allclose(a.loo_i, b.loo_i, rtol=1e-10) and np.allclose(a.pareto_k, b.pareto_k, rtol=1e-10)
    assert list(b.loo_i[dims.PATIENT].to_numpy()) == list(inputs.coords[dims.PATIENT])
    assert np.allclose(log_component(per_patient, "likelihood"), log_component(grouped, "likelihood"), rtol=1e-12)
    compared = az.compare({"grouped": b, "per patient": a}, ic="loo")
    assert np.isclose(compared["elpd_diff"].max(), 0.0, atol=1e-8)


def test_oversized_log_likelihood_is_dropped_and_diagnose_says_so():
    import arviz as az

    from marrow.diagnostics import diagnose
    from marrow.fits import Fit
    from marrow.fits.run import drop_oversized_log_likelihood

    rng = np.random.default_rng(0)
    idata = az.from_dict(
        posterior={"mu": rng.normal(size=(2, 200))},
        log_likelihood={"y": rng.normal(size=(2, 200, 30))},
        sample_stats={"diverging": np.zeros((2, 200), dtype=bool)},
    )
    assert drop_oversized_log_likelihood(idata, limit=20_000) == ""
    reason = drop_oversized_log_likelihood(idata, limit=10_000)
    assert "12,000 pointwise values" in reason and "log_likelihood" not in idata.groups()
    [loo] = [c for c in diagnose(Fit(idata, {"log_likelihood_omitted": reason})) if "Pareto" in c.name]
    assert loo.status == "skipped" and loo.value == "not computed" and "12,000" in loo.detail
