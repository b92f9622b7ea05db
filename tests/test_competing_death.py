"""Death as a competing risk of recovery (--competing-death): the cumulative incidences against
numerical quadrature, the option's data needs, the single-lineage model, and real NUTS on a simulated
visit-based trial with known cause-specific hazards (the fit shared with test_interval_censoring)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from test_interval_censoring import (
    CURE,
    DEATH_MEDIAN,
    DEATH_SHAPE,
    LINEAGES,
    MEDIAN,
    SHAPE,
    visit_death_fit,
    visit_trial_with_deaths,
)

from marrow.errors import UsageError
from marrow.frequentist import interval as freq
from marrow.models import ModelInputs, build_model, latency, recovery
from marrow.priors import load_prior_set
from marrow.spec import ModelSpec

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")
DAYS = (30.0, 90.0, 180.0)


def true_incidence(cure: float, median: float, shape: float, day: float, family: str = "weibull"):
    """(CIF of recovery, CIF of death before recovery) at `day` by quadrature of the definitions."""
    latency_dist = latency.scipy_distribution(family, median, shape)
    death = latency.scipy_distribution("weibull", DEATH_MEDIAN, DEATH_SHAPE)
    pi = 1.0 - cure
    recovered = quad(lambda s: pi * latency_dist.pdf(s) * death.sf(s), 0.0, day, limit=200)[0]
    died = quad(lambda s: death.pdf(s) * (1.0 - pi + pi * latency_dist.sf(s)), 0.0, day, limit=200)[0]
    return recovered, died


# --- pure -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", latency.FAMILIES)
def test_cumulative_incidences_equal_quadrature(family):
    """One covariate pattern, two lineages: the grid integration against scipy's quad."""
    spec = ModelSpec("recovery", family=family, competing_death=True)
    inputs = ModelInputs(
        {"pattern_x": np.zeros((1, 0)), "group_pattern": np.array([0]), "group_weight": np.array([1.0])}, {}, {}
    )
    cure = np.array(CURE)
    tables = {
        "loc": np.log([MEDIAN]),
        "shape": np.array([SHAPE]),
        "eta": np.log((1 - cure) / cure)[None, :],
        "death_loc": np.array([[math.log(DEATH_MEDIAN)]]),
        "death_shape": np.array([DEATH_SHAPE]),
    }
    rec, died = recovery.competing_incidence(tables, inputs, spec, np.array(DAYS))
    for j in range(2):
        for d, day in enumerate(DAYS):
            want = true_incidence(CURE[j], MEDIAN[j], SHAPE[j], day, family)
            assert rec[0, j, d] == pytest.approx(want[0], abs=2e-4)
            assert died[0, j, d] == pytest.approx(want[1], abs=2e-4)
    # The two incidences and "neither yet" add up to one.
    dist = latency.scipy_distribution(family, MEDIAN[0], SHAPE[0])
    death = latency.scipy_distribution("weibull", DEATH_MEDIAN, DEATH_SHAPE)
    neither = death.sf(180.0) * (CURE[0] + (1 - CURE[0]) * dist.sf(180.0))
    assert rec[0, 0, -1] + died[0, 0, -1] + neither == pytest.approx(1.0, abs=1e-12)


def test_competing_death_needs_deaths_and_only_exists_for_recovery():
    needs = ModelSpec("recovery", competing_death=True).needs()
    assert needs.died and needs.followup and needs.recovery
    assert not ModelSpec("recovery").needs().died
    with pytest.raises(UsageError, match="recovery model only"):
        ModelSpec("survival", competing_death=True)
    assert "death competing" in ModelSpec("recovery", competing_death=True).label


def test_one_lineage_is_not_pooled_and_compares_nothing(patients_frame, recovery_frame):
    import xarray as xr

    from marrow import dims
    from marrow.data.load import load_frames

    spec = ModelSpec("recovery", competing_death=True)
    data = load_frames(patients_frame, recovery_frame[recovery_frame["lineage"] == "leukocytic"], spec.needs())
    model = build_model(data, spec, load_prior_set())
    names = {v.name for v in model.free_RVs}
    assert not {"log_median_sd", "log_shape_sd", "cure_intercept_sd", "log_median_z"} & names
    assert {"log_median_mu", "cure_center_sd", "death_log_median"} <= names  # 7 centers: center effect kept
    assert recovery.dropped_levels(len(data.centers), 1, spec) == [recovery.dropped_levels(7, 1, spec)[0]]
    assert "one lineage" in recovery.dropped_levels(7, 1, spec)[0]
    assert recovery.dropped_levels(7, 3, spec) == []
    import arviz as az

    median = xr.Dataset(
        {"median_days": (("chain", "draw", dims.LINEAGE), np.ones((1, 5, 1)))}, coords={dims.LINEAGE: ["leukocytic"]}
    )
    assert recovery.probabilities(az.InferenceData(posterior=median), spec) == []
    assert np.isfinite(model.compile_logp(mode="FAST_COMPILE")(model.initial_point()))


def test_aalen_johansen_recovers_the_incidences_where_one_minus_km_overstates():
    """Large simulated trial, no sampling: Aalen-Johansen is close to the true cumulative incidence;
    1 - Kaplan-Meier with death as censoring estimates recovery in a world without death."""
    from lifelines import KaplanMeierFitter

    data, _ = visit_trial_with_deaths(n=3000, seed=9)
    rows = freq.competing_incidence(data, DAYS)
    for j, lineage in enumerate(LINEAGES):
        time, event = freq.competing_events(data, lineage)
        km = KaplanMeierFitter().fit(time, event == freq.RECOVERED)
        for day in (91.0, 183.0):  # visit days: recoveries are known by then
            truth_rec, truth_died = true_incidence(CURE[j], MEDIAN[j], SHAPE[j], day)
            aj = freq.competing_incidence(data, (day,))
            got = aj.set_index(["key", "element"])["estimate"]
            assert got[("recovery_cif", f"{lineage}, {day:g}")] == pytest.approx(truth_rec, abs=0.03)
            assert got[("death_before_recovery", f"{lineage}, {day:g}")] == pytest.approx(truth_died, abs=0.03)
            naive = 1.0 - float(km.survival_function_at_times(day).iloc[0])
            # Overstates recovery: by 3-4 points at day 91, 5-14 at day 183 here (docs/models.md).
            assert naive - truth_rec > (0.02 if day < 100 else 0.04)
    assert set(rows["key"]) == {"recovery_cif", "death_before_recovery"} and len(rows) == 12


# --- real NUTS (shared fit) -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def competing_fit():
    return visit_death_fit()


@pytest.mark.sampling
def test_bayesian_incidences_recover_the_truth_and_km_lies_outside(competing_fit):
    from lifelines import KaplanMeierFitter

    data, fit = competing_fit
    post = fit.idata.posterior
    for j, lineage in enumerate(LINEAGES):
        time, event = freq.competing_events(data, lineage)
        naive = KaplanMeierFitter().fit(time, event == freq.RECOVERED)
        for day in DAYS:
            truth = true_incidence(CURE[j], MEDIAN[j], SHAPE[j], day)
            for name, value in zip(("recovery_cif", "death_before_recovery"), truth, strict=True):
                draws = post[name].sel(lineage=lineage, day=int(day)).to_numpy().ravel()
                # 12 quantities checked at once: 99% intervals (at 95% one would miss by chance).
                lower, upper = np.quantile(draws, [0.005, 0.995])
                assert lower < value < upper, (name, lineage, day, lower, value, upper)
        draws = post["recovery_cif"].sel(lineage=lineage, day=180).to_numpy().ravel()
        assert 1.0 - float(naive.survival_function_at_times(183.0).iloc[0]) > np.quantile(draws, 0.975)
    death = post["death_median_days"].to_numpy().ravel()
    assert np.quantile(death, 0.025) < DEATH_MEDIAN < np.quantile(death, 0.975)
    curve = post["recovery_cif_curve"].to_numpy()
    assert np.all(np.diff(curve, axis=-1) >= -1e-12)  # a cumulative incidence never decreases
    assert np.all(curve <= post["cumulative_incidence"].to_numpy() + 1e-9)  # death only removes recoveries


@pytest.mark.sampling
def test_compare_puts_aalen_johansen_beside_the_bayesian_incidence(competing_fit):
    from marrow.frequentist.table import comparison_table

    data, fit = competing_fit
    table = comparison_table(data, [fit])
    aj = table[table["variable"].isin(["recovery_cif", "death_before_recovery"])]
    assert len(aj) == 12 and aj["bayes"].notna().all() and aj["method"].str.contains("Aalen-Johansen").all()
    turnbull = table[table["method"].str.contains("Turnbull")]
    assert len(turnbull) == 6 and turnbull["bayes"].notna().all()
    assert table["method"].str.contains("interval-censored").any()
    # Without a competing-death fit the Aalen-Johansen rows are not computed.
    assert not comparison_table(data, [])["variable"].isin(["recovery_cif"]).any()


@pytest.mark.sampling
def test_plot_draws_aalen_johansen_and_death_before_recovery(competing_fit):
    from marrow.plots import render

    data, fit = competing_fit
    fig = render("recovery", fit, data)
    labels = {text.get_text() for legend in fig.legends for text in legend.get_texts()}
    assert {"Aalen\u2013Johansen", "Aalen\u2013Johansen, died first", "model, died first"} <= labels
