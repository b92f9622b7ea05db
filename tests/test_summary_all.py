"""`marrow summarize --all`: every model parameter on its own scale, labelled; the centring identity.

One small stored fit per model family (tests/data/fits: real draws, 2 chains x 50, no sampling
here). The numbers of a 100-draw fit prove nothing about a posterior; these tests check that every sampled variable is
listed (or deliberately left out), that the numbers are those of the draws, and that the
uncentred intercepts follow the documented formula.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from marrow.data import Needs, load_trial
from marrow.summaries import NOT_LISTED_DIMS, PARAMETERS, posterior_summary

# Model family -> the stored fit of it (made by tests/data/fits/make_fits.py).
STORED = {"response": "ordinal", "recovery": "recovery", "survival": "survival", "safety": "safety"}


@pytest.fixture(scope="module")
def fits(stored_fit, tmp_path_factory):
    """The stored fit of every family, and a copy saved as `marrow fit` writes it (for the CLI)."""
    folder = tmp_path_factory.mktemp("summary_all")
    out = {}
    for model, name in STORED.items():
        fit = stored_fit(name)
        out[model] = (fit, fit.save(folder / f"{name}.nc"))
    return out


@pytest.fixture(scope="module")
def trial():
    return load_trial(
        needs=Needs(recovery=True, followup=True, died=True, covariates=("prior_atg", "active_infection"))
    )


def _listed(da) -> bool:
    return not da.name.endswith("_z") and not any(d in NOT_LISTED_DIMS for d in da.dims)


@pytest.mark.parametrize("model", list(STORED))
def test_every_posterior_variable_is_listed_or_deliberately_left_out(fits, model):
    fit, _ = fits[model]
    table = posterior_summary(fit, all_parameters=True)
    posterior = fit.idata.posterior
    shown = set(table["variable"])
    for name in posterior.data_vars:
        assert (name in shown) == _listed(posterior[name]), name
    left_out = [name for name in posterior.data_vars if not _listed(posterior[name])]
    if left_out:
        assert any(all(n in note for n in left_out) for note in table.attrs["notes"])
    parameters = table[table["kind"] == "parameter"]
    for quantity in PARAMETERS[model]:
        if quantity.var in posterior:
            rows = parameters[parameters["variable"] == quantity.var]
            assert len(rows) == int(np.prod([posterior.sizes[d] for d in posterior[quantity.var].dims[2:]])), (
                quantity.var
            )
    assert not table["quantity"].str.contains("[{}]", regex=True).any()
    assert not table.duplicated(["kind", "quantity"]).any()


def test_numbers_are_those_of_the_draws(fits):
    fit, _ = fits["response"]
    draws = fit.idata.posterior["center_effect"].sel(center="Center B").to_numpy().reshape(-1)
    table = posterior_summary(fit, all_parameters=True).set_index("quantity")
    row = table.loc["Center effect (log-odds), Center B"]
    assert row["median"] == pytest.approx(np.median(draws))
    assert row["mean"] == pytest.approx(draws.mean())
    assert (row["lower"], row["upper"]) == pytest.approx(tuple(np.quantile(draws, [0.025, 0.975])))
    assert row["sd"] == pytest.approx(draws.std(ddof=1), rel=1e-6)
    hdi = posterior_summary(fit, hdi=True, all_parameters=True).set_index("quantity")
    low, high = hdi.loc["Center effect (log-odds), Center B", ["lower", "upper"]]
    inside = int(np.sum((draws >= low) & (draws <= high)))
    ordered = np.sort(draws)
    shortest = np.min(ordered[inside - 1 :] - ordered[: len(ordered) - inside + 1])
    assert 94 <= inside <= 97 and high - low == pytest.approx(shortest)  # the shortest interval with those draws
    # The response intercept is uncentred (the same parameterisation as glmer): no uncentred row.
    assert (
        "log_median_uncentred" not in set(table["variable"])
        and "Intercept (log-odds, covariates uncentred)" in table.index
    )


def test_uncentred_intercepts_follow_the_formula(fits, trial):
    """Centred and uncentred linear predictors agree for every patient and draw."""
    fit, _ = fits["survival"]
    table = posterior_summary(fit, all_parameters=True)
    post = fit.idata.posterior
    x = trial.patients[list(fit.spec.covariates)].to_numpy(float)
    beta = post["beta"].to_numpy().reshape(-1, x.shape[1])
    centred = post["log_median"].to_numpy().reshape(-1, 1) + beta @ (x - x.mean(axis=0)).T
    from marrow.summaries import _derived

    derived, _ = _derived(fit)
    uncentred = derived["log_median_uncentred"].to_numpy().reshape(-1, 1) + beta @ x.T
    np.testing.assert_allclose(uncentred, centred, atol=1e-10)
    row = table[table["variable"] == "log_median_uncentred"].iloc[0]
    assert row["median"] == pytest.approx(np.median(derived["log_median_uncentred"].to_numpy()))
    # Wrong sign in the formula would move it by 2 xbar' beta, which is not small here.
    assert np.median(np.abs(2 * beta @ x.mean(axis=0))) > 0.1
    # Medians per covariate group: exp(log median + (x - xbar)' beta) for each distinct pattern.
    groups = table[table["variable"] == "group_median_days"]
    assert len(groups) == len(np.unique(x, axis=0))
    pattern = np.array([1.0, 0.0])
    expected = np.exp(post["log_median"].to_numpy().reshape(-1) + beta @ (pattern - x.mean(axis=0)))
    row = groups[groups["quantity"] == "Median days, prior_atg=1, active_infection=0"].iloc[0]
    assert row["median"] == pytest.approx(np.median(expected))


def test_recovery_uncentred_cure_and_latency(fits, trial):
    fit, _ = fits["recovery"]
    table = posterior_summary(fit, all_parameters=True)
    post = fit.idata.posterior
    xbar = trial.patients["prior_atg"].astype(float).mean()
    for base, beta, name in (
        ("cure_intercept", "cure_beta", "cure_intercept_uncentred"),
        ("log_median", "time_beta", "log_median_uncentred"),
    ):
        draws = (post[base].sel(lineage="leukocytic") - xbar * post[beta].sel(covariate="prior_atg")).to_numpy()
        row = table[(table["variable"] == name) & (table["element"] == "leukocytic")].iloc[0]
        assert row["median"] == pytest.approx(np.median(draws))
    assert (table["variable"] == "group_median_days").sum() == 2 * 3  # prior_atg 0/1 x three lineages
    # Fits without the recorded means still work, from the patients file (same SHA-256).
    from marrow.fits import Fit

    assert "covariate_means" in fit.provenance
    older = Fit(fit.idata, {k: v for k, v in fit.provenance.items() if k != "covariate_means"})
    again = posterior_summary(older, all_parameters=True)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), table.reset_index(drop=True))


def test_centring_identity_with_statsmodels_logit():
    """The documented conversion, uncentred = centred - xbar' beta, between two statsmodels Logit fits."""
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    x = np.column_stack([rng.binomial(1, 0.4, 4000), rng.normal(50, 10, 4000)]).astype(float)
    y = rng.binomial(1, 1 / (1 + np.exp(-(-3.0 + 0.8 * x[:, 0] + 0.05 * x[:, 1]))))
    uncentred = sm.Logit(y, sm.add_constant(x)).fit(disp=0)
    centred = sm.Logit(y, sm.add_constant(x - x.mean(axis=0))).fit(disp=0)
    assert centred.params[1:] == pytest.approx(uncentred.params[1:], abs=1e-8)
    assert centred.params[0] - x.mean(axis=0) @ centred.params[1:] == pytest.approx(uncentred.params[0], abs=1e-8)
    assert abs(centred.params[0] - uncentred.params[0]) > 1.0  # the two intercepts really differ


def test_cli_all_and_csv_layout(fits, marrow_cli):
    _, path = fits["safety"]
    code, out, err = marrow_cli("summarize", path, "--all")
    assert code == 0, err
    assert "Model parameters on their own scale" in out and "Center effect (log-odds), Center A" in out
    fit, _ = fits["safety"]
    assert f"{fit.settings.chains} chains x {fit.settings.draws} draws" in out
    code, out, err = marrow_cli("summarize", path, "--all", "--format", "csv")
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out))
    assert {"kind", "probability"} <= set(table.columns)
    probabilities = table[table["kind"] == "probability"]
    assert len(probabilities) == 2 and probabilities["mean"].isna().all()
    assert probabilities["probability"].between(0, 1).all()
    assert table.loc[table["kind"] != "probability", "probability"].isna().all()
    assert set(table["kind"]) == {"quantity", "parameter", "probability"}
    code, out, _ = marrow_cli("summarize", path, "--format", "csv")
    assert set(pd.read_csv(io.StringIO(out))["kind"]) == {"quantity", "probability"}
