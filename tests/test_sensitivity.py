"""Power-scaling sensitivity (Kallioinen et al. 2023): the CJS distance, priorsense's diagnosis rule,
an analytic normal model, real fits with a conflicting and a vague prior, and the CLI (incl. --refit)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from marrow.sensitivity import (
    THRESHOLD,
    cjs_distance,
    diagnosis,
    pareto_k_threshold,
    powerscale_table,
    powerscale_weights,
)

# --- the pieces -------------------------------------------------------------------------------


def test_cjs_is_zero_for_equal_weights_and_grows_with_tilt():
    x = np.random.default_rng(0).normal(size=4000)
    uniform = np.full(x.size, 1 / x.size)
    assert cjs_distance(x, uniform) == pytest.approx(0, abs=1e-6)  # sqrt of rounding noise
    small = cjs_distance(x, np.exp(0.05 * x))
    large = cjs_distance(x, np.exp(0.5 * x))
    assert 0 < small < large <= 1
    # symmetric under x -> -x (priorsense's unsigned version)
    assert cjs_distance(-x, np.exp(0.5 * x)) == pytest.approx(large)


def test_cjs_agrees_with_arviz():
    from arviz.stats.stats import _cjs_dist

    x = np.random.default_rng(1).normal(size=4000)
    w = np.exp(0.3 * x)
    w /= w.sum()
    ours = cjs_distance(x, w)
    theirs = max(_cjs_dist(x, w), _cjs_dist(-x, w))
    assert ours == pytest.approx(theirs, rel=0.02)


@pytest.mark.parametrize(
    "prior, likelihood, expected",
    [
        (0.10, 0.10, "prior-data conflict"),
        (0.05, 0.05, "prior-data conflict"),
        (0.10, 0.01, "strong prior / weak likelihood"),
        (0.01, 0.20, "-"),
        (0.01, 0.01, "-"),
        (float("nan"), 0.2, "-"),
    ],
)
def test_priorsense_diagnosis_rule(prior, likelihood, expected):
    assert diagnosis(prior, likelihood) == expected


def test_weights_and_pareto_k():
    log_prior = np.random.default_rng(2).normal(size=2000)
    weights, k = powerscale_weights(log_prior, 1.01)
    assert weights.sum() == pytest.approx(1) and weights.min() > 0
    assert k < pareto_k_threshold(2000) < 0.7 + 1e-12
    assert pareto_k_threshold(100) == pytest.approx(0.5)


# --- an analytic model: y_i ~ Normal(theta, 1), theta ~ Normal(m0, s0) -------------------------


def conjugate_draws(m0: float, s0: float, n: int = 20, ybar: float = 0.0, draws: int = 4000, seed: int = 3):
    """Exact posterior draws, and the log prior and log likelihood at each draw."""
    from scipy import stats

    precision = 1 / s0**2 + n
    mean = (m0 / s0**2 + n * ybar) / precision
    theta = np.random.default_rng(seed).normal(mean, 1 / math.sqrt(precision), draws)
    log_prior = stats.norm.logpdf(theta, m0, s0)
    # sum_i log N(y_i | theta, 1) up to a constant that cancels in the weights
    log_lik = -0.5 * n * (theta - ybar) ** 2
    return theta, log_prior, log_lik


def test_conflicting_prior_is_flagged_and_vague_prior_is_not():
    theta, lp, ll = conjugate_draws(m0=2.0, s0=0.25)  # prior says 2 +- 0.25; data say 0 +- 0.22
    table, pareto, notes = powerscale_table([("theta", theta)], lp, ll)
    row = table.iloc[0]
    assert row["prior"] > THRESHOLD and row["likelihood"] > THRESHOLD
    assert row["diagnosis"] == "prior-data conflict" and not notes

    theta, lp, ll = conjugate_draws(m0=0.0, s0=100.0)
    row = powerscale_table([("theta", theta)], lp, ll)[0].iloc[0]
    assert row["prior"] < 0.01 and row["likelihood"] > THRESHOLD and row["diagnosis"] == "-"

    theta, lp, ll = conjugate_draws(m0=0.0, s0=0.05, n=1)  # a tight prior, one observation
    row = powerscale_table([("theta", theta)], lp, ll)[0].iloc[0]
    assert row["diagnosis"] == "strong prior / weak likelihood"


def test_missing_log_prior_gives_likelihood_only_with_a_note():
    theta, _, ll = conjugate_draws(0.0, 1.0)
    table, _, notes = powerscale_table([("theta", theta)], None, ll)
    assert math.isnan(table.iloc[0]["prior"]) and "no log_prior group" in notes[0]


# --- real fits: a one-center trial under a conflicting and under a vague prior -----------------


def one_center(tmp_path, responders: int = 20, n: int = 40):
    path = tmp_path / "one_center.csv"
    path.write_text(
        "patient_id,center,responder\n" + "".join(f"P{i:03d},Only,{int(i < responders)}\n" for i in range(n))
    )
    return path


def prior_file(folder, name: str, mu: float, sigma: float):
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nbase = "weakly-informative"\n[response.intercept]\ndist = "Normal"\n'
        f"mu = {mu}\nsigma = {sigma}\n"
        '[response.center_sd]\ndist = "HalfNormal"\nsigma = 0.05\n'
    )
    return path


@pytest.fixture(scope="session")
def sensitivity_fits(tmp_path_factory):
    """Saved fits of 20/40 responders: prior centred on 10% (tight), and a vague prior."""
    from marrow.data import load_trial
    from marrow.fits.run import fit_model
    from marrow.priors import load_prior_set
    from marrow.spec import ModelSpec, SamplerSettings

    folder = tmp_path_factory.mktemp("sensitivity")
    data_path = one_center(folder)
    spec = ModelSpec("response")
    data = load_trial(data_path, None, spec.needs())
    settings = SamplerSettings(chains=2, draws=500, tune=500, seed=8)
    out = {"data": data_path, "folder": folder}
    for name, mu, sigma in (("conflicting", math.log(0.1 / 0.9), 0.3), ("vague", 0.0, 5.0)):
        fitted = fit_model(data, spec, load_prior_set(prior_file(folder, name, mu, sigma)), settings)
        out[name] = fitted.save(folder / f"{name}.nc")
    return out


@pytest.mark.sampling
def test_power_scaling_a_real_fit(sensitivity_fits):
    from marrow.fits import Fit
    from marrow.sensitivity import powerscale_sensitivity

    conflicting = powerscale_sensitivity(Fit.load(sensitivity_fits["conflicting"]))
    rows = conflicting.table.set_index("quantity")
    rate = rows.loc["Response rate (trial population)"]
    assert rate["prior"] > THRESHOLD and rate["likelihood"] > THRESHOLD
    assert rate["diagnosis"] == "prior-data conflict"
    assert conflicting.prior_variables == "intercept"  # one center: the model has no center_sd
    assert set(conflicting.pareto_k) == {"prior", "likelihood"}

    vague = powerscale_sensitivity(Fit.load(sensitivity_fits["vague"]))
    rate = vague.table.set_index("quantity").loc["Response rate (trial population)"]
    assert rate["prior"] < THRESHOLD and rate["diagnosis"] == "-"
    assert rate["likelihood"] > THRESHOLD


@pytest.mark.sampling
def test_sensitivity_cli_on_a_saved_fit(marrow_cli, sensitivity_fits, tmp_path):
    code, out, err = marrow_cli("sensitivity", sensitivity_fits["conflicting"])
    assert code == 0, err
    assert "prior-data conflict" in out and "check the prior against what the data say" in out
    assert "Pareto k" in out
    code, out, err = marrow_cli("sensitivity", sensitivity_fits["vague"], "--format", "json")
    rows = {r["quantity"]: r for r in json.loads(out)["rows"]}
    assert rows["Response rate (trial population)"]["diagnosis"] == "-"
    target = tmp_path / "sens.csv"
    assert marrow_cli("sensitivity", sensitivity_fits["vague"], "--format", "csv", "--out", target)[0] == 0
    assert target.read_text().startswith("quantity,prior,likelihood,diagnosis")


def test_sensitivity_cli_errors(marrow_cli, tmp_path):
    code, _, err = marrow_cli("sensitivity", tmp_path / "absent.nc")
    assert code == 2 and "not found" in err
    code, _, err = marrow_cli("sensitivity", "response")
    assert code == 2 and "--refit" in err
    code, _, err = marrow_cli("sensitivity", "--refit", "responses")
    assert code == 2 and "give a model name" in err
    code, _, err = marrow_cli("sensitivity", "--refit", "--priors", "skeptical,nonsense", "response")
    assert code == 2 and "unknown prior set 'nonsense'" in err


@pytest.mark.sampling
def test_sensitivity_refit_tabulates_prior_sets_side_by_side(marrow_cli, sensitivity_fits):
    folder = sensitivity_fits["folder"]
    code, out, err = marrow_cli(
        "sensitivity",
        "--refit",
        "--priors",
        f"weakly-informative,skeptical,{folder / 'conflicting.toml'}",
        "--data",
        sensitivity_fits["data"],
        "--draws",
        "300",
        "--tune",
        "300",
        "--chains",
        "2",
        "--seed",
        "4",
        "--format",
        "json",
        "--quiet",
        "response",
    )
    assert code == 0, err
    rows = {r["quantity"]: r for r in json.loads(out)["rows"]}
    rate = rows["Response rate (trial population)"]
    assert set(rate) == {"quantity", "weakly-informative", "skeptical", str(folder / "conflicting.toml")}

    def median(cell: str) -> float:
        return float(cell.split(" [")[0])

    # the data say 0.5: the skeptical (15%) and conflicting (10%) sets pull the estimate down
    default, skeptical, conflicting = (median(rate[k]) for k in list(rate)[1:])
    assert conflicting < skeptical < default
    assert abs(default - 0.5) < 0.06
    assert "P(response rate > 0.15)" in rows


def test_log_prior_covers_the_prior_set_parameters_only():
    import pymc as pm

    from marrow.fits.log_prior import prior_variables
    from marrow.priors import load_prior_set
    from marrow.spec import ModelSpec

    priors = load_prior_set()
    with pm.Model() as response:
        pm.Normal("intercept", 0, 1)
        pm.HalfNormal("center_sd", 1)
        pm.Normal("center_z", 0, 1)
    assert prior_variables(response, ModelSpec("response"), priors) == ["intercept", "center_sd"]
    with pm.Model() as safety:  # a variable named otherwise than its catalog key
        pm.Beta("ae_rate", 1, 1)
        pm.Normal("center_z", 0, 1)
    assert prior_variables(safety, ModelSpec("safety"), priors) == ["ae_rate"]


@pytest.mark.sampling
def test_sensitivity_refit_keeps_every_option_of_a_saved_fit(marrow_cli, tmp_path):
    # Before the registry, --refit rebuilt the spec from --outcome and --family only: a fit's options
    # (here the hierarchical family, the threshold, the future cohort) were silently lost.
    fit_path = tmp_path / "safety.nc"
    small = ("--chains", "1", "--draws", "100", "--tune", "100", "--sampler", "pymc", "--seed", "3")
    code, _, err = marrow_cli(
        "fit", "safety", "--family", "hierarchical", "--threshold", "0.3", "--n-future", "7", *small,
        "--quiet", "--out", fit_path,
    )  # fmt: skip
    assert code == 0, err
    code, out, err = marrow_cli(
        "sensitivity", "--refit", "--priors", "weakly-informative,skeptical", *small[:6], "--seed", "3",
        "--format", "json", "--quiet", fit_path,
    )  # fmt: skip
    assert code == 0, err
    payload = json.loads(out)
    rows = {r["quantity"] for r in payload["rows"]}
    assert "P(adverse-event rate > 0.3)" in rows and "P(adverse-event rate > 0.15)" not in rows
    assert "Predicted adverse events among 7 future patients" in rows
    assert "Center sd (log-odds)" in rows  # the hierarchical family's center level
    assert "safety (hierarchical)" in payload["title"]


def test_sensitivity_refit_takes_model_options_and_refuses_another_models(marrow_cli):
    code, _, err = marrow_cli("sensitivity", "--refit", "--frailty", "survival")
    assert code == 2 and "frailty is an option of the recovery model only" in err
