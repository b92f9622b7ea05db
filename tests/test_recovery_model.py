"""Recovery models: graph invariants and parameter recovery with real NUTS on simulated cure data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import write_csv

from marrow import dims
from marrow.data import load_trial
from marrow.fits.run import fit_model
from marrow.models import build_model, latency, model_inputs, swap_data
from marrow.priors import load_prior_set
from marrow.spec import ModelSpec, SamplerSettings

# Simulated trials are data-rich, so a lower target acceptance suffices (the CLI default suits small trials).
FAST = {"chains": 2, "draws": 300, "tune": 300, "seed": 5, "cores": 2, "target_accept": 0.8}
LINEAGES = ("leukocytic", "erythrocytic", "megakaryocytic")

# PyTensor warns once per process, at the first compilation, when no BLAS is linked: named, not an error.
pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")


def simulate_recovery_trial(
    n_patients: int = 300,
    cure_fraction: tuple[float, ...] = (0.3, 0.4, 0.5),
    median: tuple[float, ...] = (20.0, 18.0, 40.0),
    shape: tuple[float, ...] = (3.0, 3.0, 2.0),
    time_beta: tuple[float, ...] = (0.4, -0.3),
    cure_beta: tuple[float, ...] = (0.8, -0.8),
    n_centers: int = 6,
    center_sd: float = 0.3,
    followup: tuple[float, float] = (250.0, 500.0),
    seed: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Weibull mixture cure data with known truth; cure_fraction=None simulates everyone recovering.

    Truth is on the model's scale: covariates centred at their sample mean, so `median` is the latency
    median of the trial-average patient and the true cure fraction is averaged over the patients.
    """
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, n_centers, n_patients)
    center_effect = rng.normal(0.0, center_sd, n_centers)
    x = rng.binomial(1, 0.4, size=(n_patients, len(time_beta))).astype(float)
    xc = x - x.mean(axis=0)
    rows, truth_cure = [], []
    follow = rng.uniform(*followup, n_patients)
    for j, name in enumerate(LINEAGES):
        if cure_fraction is None:
            pi = np.ones(n_patients)
        else:
            intercept = math.log((1 - cure_fraction[j]) / cure_fraction[j])
            pi = 1 / (1 + np.exp(-(intercept + center_effect[centers] + xc @ np.array(cure_beta))))
        truth_cure.append(1 - pi.mean())
        loc = math.log(median[j]) + xc @ np.array(time_beta)
        latency = np.exp(loc) * (-np.log(rng.uniform(size=n_patients)) / math.log(2)) ** (1 / shape[j])
        recovers = (rng.uniform(size=n_patients) < pi) & (latency <= follow)
        day = np.where(recovers, np.maximum(np.round(latency, 1), 0.1), np.round(follow, 1))
        rows.append(
            pd.DataFrame(
                {
                    "patient_id": [f"S{i:04d}" for i in range(n_patients)],
                    "lineage": name,
                    "day": day,
                    "recovered": recovers.astype(int),
                }
            )
        )
    patients = pd.DataFrame(
        {
            "patient_id": [f"S{i:04d}" for i in range(n_patients)],
            "center": [f"C{c}" for c in centers],
            "responder": rng.binomial(1, 0.5, n_patients),
            "followup_days": np.round(follow, 1),
        }
    )
    for k in range(x.shape[1]):
        patients[f"x{k + 1}"] = x[:, k].astype(int)
    truth = {
        "cure_fraction": np.array(truth_cure),
        "median_days": np.array(median),
        "time_ratio": np.exp(time_beta),
        "cure_odds_ratio": np.exp(cure_beta),
        "shape": np.array(shape),
    }
    return patients, pd.concat(rows, ignore_index=True), truth


def load_simulated(tmp_path, patients, recovery, spec):
    p = write_csv(patients, tmp_path / "patients.csv")
    r = write_csv(recovery, tmp_path / "recovery.csv")
    return load_trial(p, r, spec.needs())


def interval(fit, var):
    da = fit.idata.posterior[var]
    flat = da.to_numpy().reshape((-1,) + da.shape[2:])
    return np.quantile(flat, 0.025, axis=0), np.quantile(flat, 0.975, axis=0)


# --- tier 2: graphs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family,cure,frailty,per_lineage",
    [("weibull", True, False, False), ("lognormal", True, True, True), ("loglogistic", False, True, False)],
)
def test_graph_dims_follow_data_and_logp_is_finite(family, cure, frailty, per_lineage):
    spec = ModelSpec(
        "recovery",
        family=family,
        cure=cure,
        frailty=frailty,
        per_lineage_effects=per_lineage,
        covariates=("prior_atg", "active_infection"),
        horizons=(30, 60, 90, 180),
    )
    data = load_trial(needs=spec.needs())
    model = build_model(data, spec, load_prior_set())
    assert list(model.coords[dims.LINEAGE]) == list(data.lineages)
    assert list(model.coords[dims.COVARIATE]) == ["prior_atg", "active_infection"]
    assert list(model.coords[dims.CENTER]) == list(data.centers)
    assert len(model.coords[dims.ROW]) == len(data.recovery)
    assert list(model.coords[dims.DAY]) == [30, 60, 90, 180]
    named = model.named_vars_to_dims
    effect_dims = (dims.LINEAGE, dims.COVARIATE) if per_lineage else (dims.COVARIATE,)
    assert named["median_days"] == (dims.LINEAGE,)
    assert "recovered_by" not in named and "cumulative_incidence" not in named  # from the draws, by `augment`
    assert named["time_ratio"] == effect_dims
    assert ("cure_fraction" in named) == cure and ("cure_odds_ratio" in named) == cure
    if cure:
        assert named["cure_odds_ratio"] == effect_dims
    point = model.initial_point()
    assert np.isfinite(model.compile_logp()(point))
    assert np.all(np.isfinite(model.compile_dlogp()(point)))


def _by_hand(family: str, median: float, k: float):
    """The latency distribution parametrised here from scipy.stats (not via `latency.scipy_distribution`)."""
    from scipy import stats

    if family == "weibull":
        return stats.weibull_min(k, scale=median / math.log(2) ** (1 / k))
    if family == "loglogistic":
        return stats.fisk(k, scale=median)
    return stats.lognorm(1 / k, scale=median)


@pytest.mark.parametrize("family", latency.FAMILIES)
def test_latency_densities_match_scipy(family):
    """The recovery model's latency terms (log f, log S, log(S(L) - S(R))) from `marrow.models.latency`,
    in numpy and in PyTensor, against scipy.stats, broadcasting days over lineages as the model does."""
    import pytensor.tensor as pt

    t = np.array([3.0, 20.0, 90.0, 400.0])[:, None]
    medians, ks = np.array([25.0, 60.0]), np.array([1.7, 0.8])
    dists = [_by_hand(family, m, k) for m, k in zip(medians, ks, strict=True)]
    assert all(np.isclose(d.median(), m) for d, m in zip(dists, medians, strict=True))
    day = t[:, 0]
    want_f = np.column_stack([d.logpdf(day) for d in dists])
    want_s = np.column_stack([d.logsf(day) for d in dists])
    want_p = np.column_stack([np.log(d.sf(day / 2) - d.sf(day)) for d in dists])
    # PyTensor's log-normal log S (PyMC's normal_lccdf, via erfcx) is good to ~1e-9 absolute near S = 1.
    for ops, value, atol in (
        (latency.NUMPY, np.asarray, 1e-12),
        (latency.pytensor_ops(), lambda x: pt.as_tensor(x).eval(), 1e-8),
    ):
        log_f, log_s = latency.log_density(family, np.log(t), np.log(medians), ks, ops)
        log_p = latency.log_interval(family, np.log(t / 2), np.log(t), np.ones_like(t), np.log(medians), ks, ops)
        np.testing.assert_allclose(value(log_f), want_f, rtol=1e-7)
        np.testing.assert_allclose(value(log_s), want_s, rtol=1e-7, atol=atol)
        np.testing.assert_allclose(
            value(latency.log_survival(family, np.log(t), np.log(medians), ks, ops)), want_s, rtol=1e-7, atol=atol
        )
        np.testing.assert_allclose(value(log_p), want_p, rtol=1e-7)


def test_new_data_swaps_into_a_built_model(tmp_path):
    spec = ModelSpec("recovery", family="weibull", covariates=("x1", "x2"))
    p1, r1, _ = simulate_recovery_trial(n_patients=30, seed=2)
    p2, r2, _ = simulate_recovery_trial(n_patients=45, seed=3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    data1 = load_simulated(tmp_path / "a", p1, r1, spec)
    data2 = load_simulated(tmp_path / "b", p2, r2, spec)
    model = build_model(data1, spec, load_prior_set())
    swap_data(model, model_inputs(data2, spec))
    point = build_model(data2, spec, load_prior_set()).initial_point()
    rebuilt = build_model(data2, spec, load_prior_set())
    assert np.isclose(model.compile_logp()(point), rebuilt.compile_logp()(point))


# --- tier 4: recovery of known truth ---------------------------------------------------------------


@pytest.fixture(scope="session")
def cure_sim(tmp_path_factory):
    patients, recovery, truth = simulate_recovery_trial()
    spec = ModelSpec("recovery", family="weibull", covariates=("x1", "x2"))
    data = load_simulated(tmp_path_factory.mktemp("cure"), patients, recovery, spec)
    return fit_model(data, spec, load_prior_set(), SamplerSettings(**FAST)), truth


@pytest.mark.sampling
@pytest.mark.parametrize("var", ["cure_fraction", "median_days", "time_ratio", "cure_odds_ratio"])
def test_cure_model_recovers_truth(cure_sim, var):
    fit, truth = cure_sim
    lower, upper = interval(fit, var)
    assert np.all((lower < truth[var]) & (truth[var] < upper)), (var, lower, upper, truth[var])
    # Deliberately wrong values: 20 points more never recovering, 1.5-fold medians and time ratios,
    # 2-fold odds ratios (the cure part is informed by cure status only, so it is less precise).
    wrong = {"cure_fraction": truth[var] + 0.2, "cure_odds_ratio": truth[var] * 2}.get(var, truth[var] * 1.5)
    assert np.all((wrong < lower) | (wrong > upper)), (var, lower, upper, wrong)


@pytest.mark.sampling
def test_cure_fit_has_pointwise_log_likelihood_and_ppc(cure_sim):
    fit, _ = cure_sim
    idata = fit.idata
    assert idata.log_likelihood["recovery"].dims == ("chain", "draw", dims.ROW)
    assert np.all(np.isfinite(idata.log_likelihood["recovery"].to_numpy()))
    observed = idata.observed_data["recovered_count"].to_numpy()
    replicated = idata.posterior_predictive["recovered_count"].to_numpy().reshape(-1, 3)
    lo, hi = np.quantile(replicated, [0.005, 0.995], axis=0)
    assert np.all((lo <= observed) & (observed <= hi))
    ci = idata.posterior["cumulative_incidence"].mean(("chain", "draw")).to_numpy()
    assert np.all(np.diff(ci, axis=1) >= -1e-12) and np.allclose(ci[:, 0], 0.0, atol=1e-6)
    # The plateau of the cumulative incidence is 1 - cure fraction.
    cure = idata.posterior["cure_fraction"].mean(("chain", "draw")).to_numpy()
    assert np.allclose(ci[:, -1], 1 - cure, atol=0.03)


@pytest.mark.sampling
def test_cure_model_on_data_without_cure_puts_cure_fraction_near_zero(tmp_path):
    patients, recovery, _ = simulate_recovery_trial(n_patients=150, cure_fraction=None, followup=(400, 600), seed=7)
    assert recovery["recovered"].mean() > 0.99
    spec = ModelSpec("recovery", family="weibull")
    fit = fit_model(load_simulated(tmp_path, patients, recovery, spec), spec, load_prior_set(), SamplerSettings(**FAST))
    _, upper = interval(fit, "cure_fraction")
    assert np.all(upper < 0.05), upper


@pytest.mark.sampling
def test_no_cure_weibull_aft_agrees_with_lifelines(tmp_path):
    """Independent check: per-lineage Weibull AFT posterior means against lifelines' MLE (2 standard errors)."""
    from lifelines import WeibullAFTFitter

    patients, recovery, _ = simulate_recovery_trial(n_patients=700, cure_fraction=None, followup=(20, 120), seed=11)
    spec = ModelSpec("recovery", family="weibull", cure=False, per_lineage_effects=True, covariates=("x1", "x2"))
    fit = fit_model(load_simulated(tmp_path, patients, recovery, spec), spec, load_prior_set(), SamplerSettings(**FAST))
    post = fit.idata.posterior.mean(("chain", "draw"))
    x_mean = patients[["x1", "x2"]].mean().to_numpy()
    for j, lineage in enumerate(LINEAGES):
        frame = recovery[recovery["lineage"] == lineage].merge(patients[["patient_id", "x1", "x2"]], on="patient_id")
        mle = WeibullAFTFitter().fit(frame[["day", "recovered", "x1", "x2"]], "day", "recovered")
        params, cov = mle.params_, mle.variance_matrix_
        se = np.sqrt(np.diag(cov))
        names = list(params.index)
        # Time ratios: lambda_ coefficients are log time ratios.
        for k, covariate in enumerate(("x1", "x2")):
            i = names.index(("lambda_", covariate))
            assert abs(float(post["time_beta"][j, k]) - params.iloc[i]) < 2 * se[i], (lineage, covariate)
        # Shape: rho_ Intercept is log shape.
        i = names.index(("rho_", "Intercept"))
        assert abs(math.log(float(post["shape"][j])) - params.iloc[i]) < 2 * se[i], lineage
        # Log median at the mean covariates: log lambda(x_mean) + log(ln 2) / rho, delta-method SE.
        a, b1, b2 = (names.index(("lambda_", c)) for c in ("Intercept", "x1", "x2"))
        rho = math.exp(params.iloc[i])
        log_median = (
            params.iloc[a] + params.iloc[b1] * x_mean[0] + params.iloc[b2] * x_mean[1] + math.log(math.log(2)) / rho
        )
        grad = np.zeros(len(names))
        grad[[a, b1, b2]] = [1.0, x_mean[0], x_mean[1]]
        grad[i] = -math.log(math.log(2)) / rho
        se_median = math.sqrt(grad @ cov.to_numpy() @ grad)
        assert abs(float(post["log_median"][j]) - log_median) < 2 * se_median, lineage
