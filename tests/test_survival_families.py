"""Survival model families (weibull, exponential, lognormal, loglogistic) on `marrow.models.latency`:
the likelihood in the graph and in numpy against scipy.stats, the restricted mean and replicated
death times, and one real NUTS fit against the truth and lifelines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import write_csv
from scipy import integrate

from marrow import dims
from marrow.data import load_trial
from marrow.descriptor import REGISTRY
from marrow.fits.run import fit_model
from marrow.models import build_model, latency, survival
from marrow.priors import load_prior_set
from marrow.spec import ModelSpec, SamplerSettings
from marrow.summaries import posterior_summary

SURVIVAL_FAMILIES = REGISTRY.get("survival").families

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")


def simulate(family: str, median: float, k: float, n: int, seed: int, time_ratio: float = 1.0) -> pd.DataFrame:
    """Patients with death times of `family` (median for x = 0, shape k), one 0/1 covariate `arm` with
    time ratio `time_ratio`, uniform follow-up 200-1500 days."""
    rng = np.random.default_rng(seed)
    arm = rng.integers(0, 2, n)
    dist = latency.scipy_distribution(survival.latency_family(family), 1.0, k)
    death = median * time_ratio**arm * dist.rvs(size=n, random_state=rng)
    follow = rng.uniform(200, 1500, n)
    return pd.DataFrame(
        {
            "patient_id": [f"S{i:04d}" for i in range(n)],
            "center": "C1",
            "responder": 0,
            "followup_days": np.round(np.minimum(death, follow), 2) + 0.01,
            "died": (death <= follow).astype(int),
            "arm": arm.astype(float),
        }
    )


def _load(frame, tmp_path, spec):
    return load_trial(write_csv(frame, tmp_path / "patients.csv"), needs=spec.needs())


def test_every_family_is_offered_by_the_cli_and_the_spec(marrow_cli):
    assert set(SURVIVAL_FAMILIES) == {"weibull", "exponential", "lognormal", "loglogistic"}
    code, stdout, _ = marrow_cli("fit", "survival", "--help")
    assert code == 0 and "weibull|exponential|lognormal|loglogistic" in stdout
    assert ModelSpec("survival", family="lognormal").label == "survival (lognormal)"


@pytest.mark.parametrize("family", SURVIVAL_FAMILIES)
def test_loglik_at_a_random_point_is_the_scipy_one(family, tmp_path):
    """Graph (Potential) and numpy (augment's pointwise) log-likelihoods, S(t) and RMST at a random point,
    against scipy.stats log-pdf (deaths) and log-sf (censored) of `latency.scipy_distribution`."""
    spec = ModelSpec("survival", family=family, covariates=("arm",))
    data = _load(simulate("lognormal", 500.0, 1.2, 60, seed=4, time_ratio=1.4), tmp_path, spec)
    model = build_model(data, spec, load_prior_set())
    rng = np.random.default_rng(SURVIVAL_FAMILIES.index(family))
    log_median, log_shape, beta = rng.normal(6.0, 0.5), rng.normal(0.0, 0.4), rng.normal(0.0, 0.5, 1)
    k = math.exp(log_shape) if survival.has_shape(family) else 1.0
    point = {"log_median": log_median, "beta": beta, **({"log_shape": log_shape} if survival.has_shape(family) else {})}
    assert set(point) == {v.name for v in model.value_vars}

    patients = data.patients
    x = patients["arm"].to_numpy(float)
    mu = log_median + (x - x.mean()) * beta[0]
    t, died = patients["followup_days"].to_numpy(float), patients["died"].to_numpy() == 1
    dists = [latency.scipy_distribution(survival.latency_family(family), math.exp(m), k) for m in mu]
    expected = np.array([d.logpdf(ti) if e else d.logsf(ti) for d, ti, e in zip(dists, t, died, strict=True)])

    names = ["survival_loglik", "survival_at", "rmst"]
    outputs = model.replace_rvs_by_values([model[n] for n in names])  # functions of the point, not draws
    loglik, *values = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore")(point)
    # Graph side rel 2e-8: PyMC's normal_lccdf (PyTensor's erfcx, used for the log-normal) and scipy's
    # log_ndtr differ by up to about 1e-8 relative; every other family agrees to rounding.
    graph_rel = 2e-8 if family == "lognormal" else 1e-10
    assert float(loglik) == pytest.approx(expected.sum(), rel=graph_rel)
    days = np.asarray(model.coords[dims.DAY], dtype=float)
    assert values[0] == pytest.approx(np.mean([d.sf(days) for d in dists], axis=0), rel=graph_rel)
    rmst = np.mean([integrate.quad(d.sf, 0, 730.5, epsabs=1e-10, epsrel=1e-10, limit=200)[0] for d in dists])
    assert float(values[1]) == pytest.approx(rmst, rel=1e-7)

    import xarray as xr

    posterior = xr.Dataset(
        {
            "log_median": (("chain", "draw"), [[log_median]]),
            "beta": (("chain", "draw", dims.COVARIATE), [[beta]]),
            **({"shape": (("chain", "draw"), [[k]])} if survival.has_shape(family) else {}),
        }
    )
    rows = survival.pointwise(posterior, survival.inputs(data, spec), spec)
    assert rows["loglik"][0] == pytest.approx(expected, rel=1e-10)
    assert ("hazard_ratio" in model.named_vars) == (family in survival.PROPORTIONAL_HAZARDS)


@pytest.mark.parametrize("family", latency.FAMILIES)
def test_restricted_mean_and_replicated_times_against_scipy(family):
    """`latency.restricted_mean` (closed forms; log-logistic quadrature) over shapes 0.3-12 and medians
    before and after tau, and `log_time_at_log_survival` as scipy's inverse survival function."""
    tau = 730.5
    for median in (3.0, 40.0, 700.0, 5000.0):
        for k in (0.3, 0.8, 1.0, 2.5, 12.0):
            dist = latency.scipy_distribution(family, median, k)
            # E[min(T, tau)] as an integral over quantiles: independent of the formulas tested
            p_tau = float(dist.cdf(tau))
            exact = integrate.quad(
                lambda p, dist=dist: min(float(dist.ppf(p)), tau),
                0,
                1,
                points=[p_tau],
                limit=500,
                epsabs=1e-12,
                epsrel=1e-12,
            )[0]
            got = latency.restricted_mean(family, math.log(tau), np.array([math.log(median)]), np.array([k]))[0]
            assert got == pytest.approx(exact, rel=1e-7), (median, k)
    v = np.random.default_rng(2).uniform(size=50)
    times = np.exp(latency.log_time_at_log_survival(family, np.log(v), math.log(100.0), 1.7))
    assert latency.scipy_distribution(family, 100.0, 1.7).sf(times) == pytest.approx(v, rel=1e-9)


# family -> (lifelines fitter, its location and log-shape parameters, sign turning the latter into log k)
LIFELINES = {
    "lognormal": ("LogNormalAFTFitter", "mu_", "sigma_", -1.0),
    "loglogistic": ("LogLogisticAFTFitter", "alpha_", "beta_", 1.0),
}


@pytest.mark.sampling
@pytest.mark.parametrize("family", list(LIFELINES))
def test_fit_recovers_the_truth_and_matches_lifelines(family, tmp_path):
    """300 simulated patients (median 400 days at arm 0, shape k = 1.25, i.e. log-normal sigma 0.8;
    time ratio 1.5 for arm 1): the posterior's 95% intervals hold the truth and its medians sit on
    lifelines' AFT MLE of the same family (covariate centred as marrow centres it)."""
    import arviz as az
    import lifelines

    median, k, ratio = 400.0, 1.25, 1.5
    frame = simulate(family, median, k, 300, seed=21, time_ratio=ratio)
    spec = ModelSpec("survival", family=family, covariates=("arm",))
    data = _load(frame, tmp_path, spec)
    fit = fit_model(data, spec, load_prior_set(), SamplerSettings(chains=2, draws=300, tune=300, seed=5, cores=2))
    post = fit.idata.posterior
    arm_mean = frame["arm"].mean()
    truth = {"median_days": median * ratio**arm_mean, "shape": k, "time_ratio": ratio}  # trial-average median

    fitter, location, shape, sign = LIFELINES[family]
    work = frame[["followup_days", "died", "arm"]].assign(arm=frame["arm"] - arm_mean)
    mle = getattr(lifelines, fitter)().fit(work, "followup_days", "died")
    params, se = mle.params_, mle.standard_errors_
    mles = {
        "median_days": (params[(location, "Intercept")], se[(location, "Intercept")]),
        "shape": (sign * params[(shape, "Intercept")], se[(shape, "Intercept")]),
        "time_ratio": (params[(location, "arm")], se[(location, "arm")]),
    }  # (log estimate, its se)
    for name, true in truth.items():
        draws = np.log(post[name].to_numpy().reshape(-1))
        lower, upper = np.quantile(draws, [0.025, 0.975])
        assert lower < math.log(true) < upper, name
        # Posterior median vs MLE (both log scale): the weak prior moves it by a small part of the
        # standard error; Monte Carlo error of the median is about 1.25 sd / sqrt(ESS).
        estimate, standard_error = mles[name]
        ess = float(az.ess(np.log(post[[name]]))[name].min())
        assert ess > 100, name
        mc = 1.25 * draws.std() / math.sqrt(ess)
        assert abs(np.median(draws) - estimate) < 0.2 * standard_error + 3 * mc, name
    table = posterior_summary(fit).set_index("variable")
    assert table.loc["shape", "quantity"] == survival.shape_label(family)
    assert "hazard_ratio" not in post
    assert fit.idata.log_likelihood["survival"].sizes[dims.PATIENT] == 300
    # Replicated deaths up to each patient's censoring time (`latency.log_time_at_log_survival` draws;
    # for the dead, a censoring time drawn by `survival.potential_censoring`): on average
    # sum_i F(censoring_i) per draw, which the draws' own survival functions give at censoring times
    # drawn the same way. Counting within observed follow-up instead gives about two thirds of this.
    deaths = fit.idata.posterior_predictive["deaths"].to_numpy().reshape(-1)
    rows = survival.pointwise(post, survival.inputs(data, spec), spec)
    followup, died = frame["followup_days"].to_numpy(), frame["died"].to_numpy()
    censoring = survival.potential_censoring(followup, died, np.random.default_rng(3), len(deaths))
    with np.errstate(divide="ignore"):
        log_s = latency.log_survival(family, np.log(censoring), rows["mu"], rows["shape"])
    expected = (1 - np.exp(log_s)).sum(axis=1)
    assert abs(deaths.mean() - expected.mean()) < 4 * math.sqrt(2 * expected.mean() / len(deaths)) + 0.5
    assert abs(deaths.mean() - died.sum()) < 3 * math.sqrt(died.sum())  # the check passes under the truth
