"""Survival and safety models: graphs, recovery of a known rate, the bundled trial end to end via the CLI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import write_csv

from marrow import dims
from marrow.data import load_trial
from marrow.fits import Fit
from marrow.fits.run import fit_model
from marrow.models import build_model
from marrow.priors import load_prior_set
from marrow.spec import ModelSpec, SamplerSettings
from marrow.summaries import posterior_probabilities, posterior_summary

FAST = {"chains": 2, "draws": 400, "tune": 400, "seed": 3, "cores": 2}
CLI_SAMPLING = ("--chains", "2", "--draws", "300", "--tune", "300", "--quiet")

# PyTensor warns once per process, at the first compilation, when no BLAS is linked: named, not an error.
pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("survival", covariates=("prior_atg", "age")),
        ModelSpec("survival", family="exponential", horizons=(90,)),
        ModelSpec("safety"),
        ModelSpec("safety", family="hierarchical"),
    ],
    ids=lambda s: s.label,
)
def test_graph_dims_follow_data_and_logp_is_finite(spec):
    data = load_trial(needs=spec.needs())
    model = build_model(data, spec, load_prior_set())
    named = model.named_vars_to_dims
    if spec.model == "survival":
        assert named["survival_at"] == (dims.DAY,)
        assert named["survival_curve"] == (dims.GRID_DAY,)
        assert list(model.coords[dims.DAY]) == (list(spec.horizons) or [182.6, 365.25, 730.5])
        assert ("hazard_ratio" in named) == bool(spec.covariates)
        if spec.covariates:
            assert list(model.coords[dims.COVARIATE]) == list(spec.covariates)
            assert named["time_ratio"] == (dims.COVARIATE,)
    else:
        assert list(model.coords[dims.CENTER]) == list(data.centers)
        assert "ae_rate" in model.named_vars
        if spec.family == "hierarchical":
            assert named["center_rate"] == (dims.CENTER,)
    point = model.initial_point()
    assert np.isfinite(model.compile_logp()(point))
    assert np.all(np.isfinite(model.compile_dlogp()(point)))


@pytest.mark.sampling
def test_exponential_survival_recovers_the_true_rate(tmp_path):
    rng = np.random.default_rng(8)
    n, rate = 400, 1 / 600
    death = rng.exponential(1 / rate, n)
    follow = rng.uniform(100, 1200, n)
    patients = pd.DataFrame(
        {
            "patient_id": [f"S{i:04d}" for i in range(n)],
            "center": "C1",
            "responder": 0,
            "followup_days": np.round(np.minimum(death, follow), 2) + 0.01,
            "died": (death <= follow).astype(int),
        }
    )
    spec = ModelSpec("survival", family="exponential")
    data = load_trial(write_csv(patients, tmp_path / "patients.csv"), needs=spec.needs())
    fit = fit_model(data, spec, load_prior_set(), SamplerSettings(**FAST))
    posterior_rate = math.log(2) / fit.idata.posterior["median_days"].to_numpy().reshape(-1)
    lower, upper = np.quantile(posterior_rate, [0.025, 0.975])
    assert lower < rate < upper
    assert not lower < 1.5 * rate < upper and not lower < rate / 1.5 < upper
    # RMST of an exponential to 730.5 days: (1 - exp(-rate * tau)) / rate.
    rmst = fit.idata.posterior["rmst"].to_numpy().reshape(-1)
    expected = (1 - np.exp(-posterior_rate * 730.5)) / posterior_rate
    assert np.allclose(rmst, expected, rtol=1e-6)
    assert fit.idata.log_likelihood["survival"].dims == ("chain", "draw", dims.PATIENT)


@pytest.fixture(scope="session")
def survival_cli_fit(tmp_path_factory):
    from click.testing import CliRunner

    from marrow.cli import cli

    out = tmp_path_factory.mktemp("survival") / "survival.nc"
    result = CliRunner().invoke(cli, ["fit", "survival", "--covariates", "prior_atg", "--out", str(out), *CLI_SAMPLING])
    return result, out


@pytest.mark.sampling
def test_survival_cli_end_to_end_on_bundled_trial(survival_cli_fit, marrow_cli):
    result, out = survival_cli_fit
    assert result.exit_code == 0, result.output
    fit = Fit.load(out)
    year = fit.idata.posterior["survival_at"].sel({dims.DAY: 365.25}).to_numpy().reshape(-1)
    # Kaplan-Meier gives 65/74 = 0.878 (all nine deaths by day 289, none later); a Weibull cannot drop
    # and then level off so sharply, and lifelines' Weibull MLE gives 0.917. The posterior sits between.
    assert 0.85 < np.median(year) < 0.94
    lower, upper = np.quantile(year, [0.025, 0.975])
    assert lower < 0.878 < upper
    assert fit.idata.posterior["survival_curve"].sizes[dims.GRID_DAY] == 60
    table = posterior_summary(fit)
    assert "Overall survival at day 365.25" in set(table["quantity"])
    assert "Hazard ratio of death, prior_atg" in set(table["quantity"])
    code, stdout, _ = marrow_cli("summarize", out)
    assert code == 0 and "Restricted mean survival to day 730.5" in stdout


@pytest.fixture(scope="session")
def safety_cli_fit(tmp_path_factory):
    from click.testing import CliRunner

    from marrow.cli import cli

    out = tmp_path_factory.mktemp("safety") / "safety.nc"
    result = CliRunner().invoke(
        cli, ["fit", "safety", "--threshold", "0.2", "--n-future", "40", "--out", str(out), *CLI_SAMPLING]
    )
    return result, out


@pytest.mark.sampling
def test_safety_cli_end_to_end_matches_conjugate_posterior(safety_cli_fit, marrow_cli):
    from scipy import stats

    result, out = safety_cli_fit
    assert result.exit_code == 0, result.output
    fit = Fit.load(out)
    rate = fit.idata.posterior["ae_rate"].to_numpy().reshape(-1)
    assert abs(rate.mean() - 8 / 76) < 0.008  # Beta(1 + 7, 1 + 67)
    exact = stats.beta(8, 68)
    assert abs(np.quantile(rate, 0.975) - exact.ppf(0.975)) < 0.02
    future = fit.idata.posterior_predictive["future_events"].to_numpy().reshape(-1)
    assert abs(future.mean() - 40 * 8 / 76) < 0.5
    probs = dict(posterior_probabilities(fit))
    assert abs(probs["P(adverse-event rate > 0.2)"] - exact.sf(0.2)) < 0.03
    table = posterior_summary(fit)
    assert "Predicted adverse events among 40 future patients" in set(table["quantity"])
    assert fit.idata.log_likelihood["adverse_event"].sizes[dims.PATIENT] == 74
    code, stdout, _ = marrow_cli("summarize", out, "--format", "csv")
    assert code == 0 and "P(adverse-event rate > 0.2)" in stdout
