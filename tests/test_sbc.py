"""Simulation-based calibration: ranks, uniformity tests, generators against their models, and a real SBC
of the response model that passes with the right prior and fails with a wrong one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from marrow.data import load_trial
from marrow.models import module_for, swap_data
from marrow.priors import load_prior_set
from marrow.priors.prior import Prior
from marrow.simulate import sbc_report
from marrow.simulate.generators import batch, generator_for
from marrow.simulate.sbc import SbcStudy, rank_table, ranks, run_study, thin
from marrow.spec import ModelSpec, SamplerSettings

SPECS = {
    "response": ModelSpec("response", covariates=("prior_atg",)),
    "ordinal": ModelSpec("response", outcome="ordinal"),
    "beta-binomial": ModelSpec("safety"),
    "hierarchical": ModelSpec("safety", family="hierarchical"),
    "survival": ModelSpec("survival", covariates=("prior_atg",)),
    "exponential": ModelSpec("survival", family="exponential"),
    "recovery": ModelSpec("recovery", covariates=("prior_atg",)),
    "recovery-weibull": ModelSpec("recovery", family="weibull"),
    "recovery-no-cure": ModelSpec("recovery", cure=False),
}


def _generator(name: str):
    spec = SPECS[name]
    return generator_for(spec, load_trial(None, None, spec.needs()))


# --- ranks and uniformity (no PyMC) -----------------------------------------------------------------


def _conjugate_ranks(n_sims: int, shift: float, rng) -> np.ndarray:
    """Ranks of p ~ Beta(2, 3) among 99 exact posterior draws Beta(2 + y, 3 + n - y), y ~ Bin(20, p);
    `shift` adds pseudo-successes to the posterior (a wrong posterior)."""
    p = rng.beta(2, 3, n_sims)
    y = rng.binomial(20, p)
    draws = rng.beta(2 + y + shift, 3 + 20 - y, size=(99, n_sims))
    return ranks(p, draws, rng)


def test_ranks_of_exact_posterior_draws_are_uniform_and_a_wrong_posterior_is_flagged():
    rng = np.random.default_rng(1)
    right = _conjugate_ranks(1000, 0.0, rng)
    assert right.min() >= 0 and right.max() <= 99
    wrong = _conjugate_ranks(1000, 3.0, rng)
    table, verdict = sbc_report.uniformity(pd.DataFrame({"right": right, "wrong": wrong}), 99)
    assert table.set_index("quantity").loc["right", "result"] == "pass"
    assert verdict.failed == ("wrong",)
    assert stats.kstest((right + rng.uniform(size=right.size)) / 100, "uniform").pvalue > 0.01


def test_ranks_count_draws_below_and_split_ties():
    rng = np.random.default_rng(0)
    draws = np.array([[0.1], [0.5], [0.5], [0.9]])
    assert ranks(np.array([0.0]), draws, rng)[0] == 0
    assert ranks(np.array([1.0]), draws, rng)[0] == 4
    tied = [int(ranks(np.array([0.5]), draws, rng)[0]) for _ in range(300)]
    assert set(tied) == {1, 2, 3}


def test_thin_takes_evenly_spaced_draws_in_every_chain():
    values = np.arange(2 * 500).reshape(2, 500)
    thinned = thin(values, 100)
    assert thinned.shape == (100,)
    assert thinned[0] == 0 and thinned[49] == 499 and thinned[50] == 500
    assert thin(values, 5000).shape == (1000,)


def test_chi_square_bins_are_exact_for_uneven_bins():
    statistic, p = sbc_report.chi_square(np.arange(101), 100, 20)
    assert statistic == pytest.approx(0.0, abs=1e-9) and p == pytest.approx(1.0)


# --- generators against their models ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SPECS))
def test_generator_keeps_the_design_shapes(name):
    generator = _generator(name)
    rng = np.random.default_rng(3)
    for _ in range(3):
        inputs = generator.simulate(generator.draw(load_prior_set(None), rng), rng)
        assert inputs.arrays.keys() == generator.template.arrays.keys()
        for key, value in generator.template.arrays.items():
            assert inputs.arrays[key].shape == value.shape, key


def _point(model, params: dict) -> dict:
    """The model's value variables at `params` (log / log-odds for transformed ones)."""
    point = {}
    for rv in model.free_RVs:
        value = np.asarray(params[rv.name], dtype=np.float64)
        transform = model.rvs_to_transforms.get(rv)
        name = model.rvs_to_values[rv].name
        if transform is None:
            point[name] = value
        elif name.endswith("_log__"):
            point[name] = np.log(value)
        else:
            point[name] = np.log(value) - np.log1p(-value)
    return point


def _free(model, params: dict, rng) -> dict:
    """Free variables the generator does not draw (e.g. new_center_z) at standard normal values."""
    return {**{rv.name: rng.standard_normal() for rv in model.free_RVs if rv.name not in params}, **params}


@pytest.mark.parametrize("name", list(SPECS))
def test_generator_log_likelihood_equals_the_models(name):
    """The generator's log-likelihood differs from the model's likelihood terms (observed variables or
    the Potential) by one constant across parameter draws and data sets: the same function of theta."""
    generator = _generator(name)
    priors = load_prior_set(None)
    model = module_for(generator.spec.model).build(generator.template, generator.spec, priors)
    terms = model.observed_RVs + model.potentials
    logp = model.compile_logp(vars=terms, jacobian=False, sum=True)
    rng = np.random.default_rng(7)
    for _ in range(2):
        inputs = generator.simulate(generator.draw(priors, rng), rng)
        swap_data(model, inputs)
        differences = []
        for _ in range(4):
            params = generator.draw(priors, rng)
            ours = generator.quantities(batch(params), inputs)["loglik"][0]
            differences.append(ours - float(logp(_point(model, _free(model, params, rng)))))
        assert np.ptp(differences) < 1e-6 * max(1.0, abs(differences[0])), differences


@pytest.mark.parametrize("name", ["response", "ordinal", "beta-binomial", "hierarchical"])
def test_generator_matches_the_models_prior_predictive(name):
    """Where the likelihood is an observed variable, PyMC's prior predictive is an independent simulator."""
    from marrow.prior_check import prior_predictive

    generator = _generator(name)
    priors = load_prior_set(None)
    model = module_for(generator.spec.model).build(generator.template, generator.spec, priors)
    predictive = prior_predictive(model, 2000, 5).prior_predictive
    observed = {"response": "responders", "ordinal": "response_counts"}.get(name, "events")
    theirs = predictive[observed].to_numpy().reshape(2000, -1)
    rng = np.random.default_rng(5)
    key = {"response": "cell_responders", "ordinal": "cell_counts"}.get(name, "center_events")
    ours = np.array([generator.simulate(generator.draw(priors, rng), rng).arrays[key].reshape(-1) for _ in range(2000)])
    if name == "beta-binomial":  # the model observes the total only
        ours = ours.sum(axis=1, keepdims=True)
    if name == "ordinal":  # totals of each category
        ours, theirs = ours.reshape(2000, -1, 3).sum(axis=1), theirs.reshape(2000, -1, 3).sum(axis=1)
    for j in range(ours.shape[1]):
        assert stats.ks_2samp(ours[:, j], theirs[:, j]).pvalue > 1e-3, j


def test_survival_generator_deaths_match_the_closed_form():
    generator = _generator("survival")
    params = {"log_median": np.array(6.0), "log_shape": np.array(0.3), "beta": np.array([0.5])}
    rng = np.random.default_rng(2)
    died = np.array([generator.simulate(params, rng).arrays["died"] for _ in range(400)])
    from marrow.models import latency

    mu = 6.0 + 0.5 * generator.template.arrays["patient_x"][:, 0]
    log_s = latency.log_survival("weibull", np.log(generator.template.extra["followup"]), mu, np.exp(0.3))
    expected = -np.expm1(log_s).sum()
    se = np.sqrt((-np.expm1(log_s) * np.exp(log_s)).sum() / 400)
    assert abs(died.sum(axis=1).mean() - expected) < 4 * se


@pytest.mark.parametrize("name", ["recovery", "recovery-weibull", "recovery-no-cure"])
def test_recovery_generator_recoveries_match_the_closed_form(name):
    """Each row recovers within follow-up with probability pi * F(censoring day)."""
    from scipy.special import expit

    from marrow.models import latency

    generator = _generator(name)
    rng = np.random.default_rng(4)
    params = generator.draw(load_prior_set(None), rng)
    params["log_median_mu"] = np.array(5.0)  # medians near the follow-up, so both outcomes occur
    rows = {k: v[0] for k, v in generator._rows(batch(params)).items()}
    log_c = np.log(generator.template.extra["row_censor_day"])
    p = -np.expm1(latency.log_survival(generator.spec.resolved_family, log_c, rows["mu"], rows["k"]))
    if generator.spec.cure:
        p = p * expit(rows["eta"])
    recovered = np.array([generator.simulate(params, rng).arrays["event_weight"] for _ in range(400)])
    se = np.sqrt((p * (1 - p)).sum() / 400)
    assert abs(recovered.sum(axis=1).mean() - p.sum()) < 4 * se
    days = np.exp(generator.simulate(params, rng).arrays["event_log_day"])
    assert np.all(days <= generator.template.extra["row_censor_day"] + 1e-9)


@pytest.mark.parametrize("name", ["survival", "recovery"])
def test_log_likelihood_is_highest_at_the_parameters_that_simulated_the_data(name):
    generator = _generator(name)
    priors = load_prior_set(None)
    rng = np.random.default_rng(9)
    wins = 0
    for _ in range(40):
        truth, other = generator.draw(priors, rng), generator.draw(priors, rng)
        inputs = generator.simulate(truth, rng)
        at_truth = generator.quantities(batch(truth), inputs)["loglik"][0]
        at_other = generator.quantities(batch(other), inputs)["loglik"][0]
        wins += at_truth > at_other
    assert wins >= 36


# --- SBC with real sampling ------------------------------------------------------------------------------


@pytest.mark.sampling
def test_sbc_passes_the_response_model_and_flags_a_wrong_prior():
    """80 simulations, 1 chain of 200 draws: the model fitted with the prior it was simulated from
    passes; simulated with a center sd prior three times wider it fails on center_sd."""
    spec = ModelSpec("response")
    priors = load_prior_set(None)
    wide = replace(
        priors, name="wide", priors={**priors.priors, "response.center_sd": Prior("HalfNormal", {"sigma": 3.0})}
    )
    settings = SamplerSettings(chains=1, draws=200, tune=150, seed=1, cores=1)
    generator = generator_for(spec, load_trial(None, None, spec.needs()))
    results = {}
    for label, sim_priors in (("right", None), ("wrong", wide)):
        study = SbcStudy(spec, priors, settings, generator, n_ranks=100, sim_priors=sim_priors)
        records = run_study(study, 80, 11)
        assert len(records) == 80 and records["max_rank"].eq(100).all()
        results[label] = sbc_report.uniformity(rank_table(records), 100)
    table, verdict = results["right"]
    assert verdict.passed, table
    table, verdict = results["wrong"]
    assert not verdict.passed and "center_sd" in verdict.failed, table


@pytest.mark.sampling
def test_sbc_command_writes_its_outputs_and_refuses_to_overwrite(marrow_cli, tmp_path):
    out = tmp_path / "sbc"
    args = ["sbc", "safety", "--sims", "12", "--chains", "1", "--draws", "100", "--tune", "100", "--out", out]
    code, stdout, stderr = marrow_cli(*args)
    assert code in (0, 1), stderr
    assert {p.name for p in out.iterdir()} == {
        "ranks.csv",
        "uniformity.csv",
        "uniformity.md",
        "diagnostics.csv",
        "sbc.png",
        "sbc.pdf",
        "study.json",
    }
    assert len(pd.read_csv(out / "ranks.csv")) == 12
    assert "ae_rate" in stdout and ("PASS" in stdout or "FAIL" in stdout)
    code, _, stderr = marrow_cli(*args)
    assert code == 2 and "--force" in stderr
    code, _, _ = marrow_cli(*args, "--force")
    assert code in (0, 1)
