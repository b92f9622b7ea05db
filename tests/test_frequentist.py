"""Frequentist side of `marrow compare`: every number against an independent computation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from marrow.data import Needs, load_trial
from marrow.errors import UsageError
from marrow.frequentist import binomial, firth, logistic, survival
from marrow.frequentist.table import comparison_table, data_for_fits, disagreement, display_table

COVARIATES = ("prior_atg", "active_infection")
Z = stats.norm.ppf(0.975)


@pytest.fixture(scope="session")
def trial():
    return load_trial(
        needs=Needs(recovery=True, followup=True, died=True, adverse_event=True, ordinal=True, covariates=COVARIATES)
    )


@pytest.fixture(scope="session")
def separated(trial):
    """The bundled trial with every infected patient made a non-responder: quasi-complete separation."""
    patients = trial.patients.copy()
    infected = patients["active_infection"] == 1
    patients.loc[infected, "responder"] = 0
    patients.loc[infected, "response"] = "NR"
    return dataclasses.replace(trial, patients=patients)


def _row(table: pd.DataFrame, key: str, method: str | None = None, element: str = "") -> pd.Series:
    mine = table[(table["key"] == key) & (table["element"] == element)]
    if method is not None:
        mine = mine[mine["method"].str.startswith(method)]
    assert len(mine) == 1, (key, method, element, mine)
    return mine.iloc[0]


def _clopper_pearson(x: int, n: int) -> tuple[float, float]:
    lower = stats.beta.ppf(0.025, x, n - x + 1) if x > 0 else 0.0
    upper = stats.beta.ppf(0.975, x + 1, n - x) if x < n else 1.0
    return lower, upper


# --- proportions -----------------------------------------------------------------------------------------


def test_published_response_rates(trial):
    table = binomial.response_rates(trial)
    overall = _row(table, "response_rate", "exact")
    assert (overall["successes"], overall["n"]) == (21, 74)
    assert overall["estimate"] == pytest.approx(0.284, abs=5e-4)
    assert (round(overall["lower"], 3), round(overall["upper"], 3)) == (0.185, 0.401)
    assert _row(table, "cr_rate", "exact")["estimate"] == pytest.approx(0.068, abs=5e-4)
    assert _row(table, "pr_rate", "exact")["estimate"] == pytest.approx(0.216, abs=5e-4)


@pytest.mark.parametrize("key,x", [("response_rate", 21), ("cr_rate", 5), ("pr_rate", 16)])
def test_intervals_against_formulas(trial, key, x):
    n = 74
    table = binomial.response_rates(trial)
    exact = _row(table, key, "exact")
    assert (exact["lower"], exact["upper"]) == pytest.approx(_clopper_pearson(x, n), abs=1e-10)
    # Wilson score interval by its closed form.
    p = x / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * np.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    wilson = _row(table, key, "Wilson")
    assert (wilson["lower"], wilson["upper"]) == pytest.approx((centre - half, centre + half), abs=1e-10)
    # Jeffreys: equal-tailed interval of the Beta(x + 1/2, n - x + 1/2) posterior.
    jeffreys = _row(table, key, "Jeffreys")
    assert (jeffreys["lower"], jeffreys["upper"]) == pytest.approx(
        stats.beta.ppf([0.025, 0.975], x + 0.5, n - x + 0.5), abs=1e-10
    )


def test_center_rates_are_raw_exact(trial):
    table = binomial.center_rates(trial)
    assert table["n"].sum() == 74 and table["successes"].sum() == 21
    assert list(table["element"]) == list(trial.centers)
    for _, row in table.iterrows():
        assert row["estimate"] == pytest.approx(row["successes"] / row["n"])
        assert (row["lower"], row["upper"]) == pytest.approx(_clopper_pearson(row["successes"], row["n"]), abs=1e-10)


def test_adverse_event_rate(trial):
    row = binomial.adverse_event_rate(trial).iloc[0]
    assert (row["successes"], row["n"]) == (7, 74)
    assert (row["lower"], row["upper"]) == pytest.approx(_clopper_pearson(7, 74), abs=1e-10)


# --- Firth ------------------------------------------------------------------------------------------------


def _two_by_two(a: int, b: int, c: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """x=1: a responders, b not; x=0: c responders, d not."""
    x = np.r_[np.ones(a + b), np.zeros(c + d)]
    y = np.r_[np.ones(a), np.zeros(b), np.ones(c), np.zeros(d)]
    return np.column_stack([np.ones_like(x), x]), y


def test_firth_two_by_two_is_haldane_correction():
    # For a saturated 2x2 model the Jeffreys penalty factorises and Firth's estimate is the
    # log odds ratio with 1/2 added to every cell, even with an empty cell.
    for a, b, c, d in [(0, 18, 21, 35), (3, 7, 10, 4), (5, 0, 2, 9)]:
        X, y = _two_by_two(a, b, c, d)
        fitted = firth.firth_logit(X, y)
        expected = np.log((a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5)))
        assert fitted.converged
        assert fitted.coef[1] == pytest.approx(expected, abs=1e-7)
        assert fitted.coef[0] == pytest.approx(np.log((c + 0.5) / (d + 0.5)), abs=1e-7)


def test_firth_matches_direct_maximisation(separated):
    X, y, names = logistic._design(separated, COVARIATES)
    fitted = firth.firth_logit(X, y, names)
    direct = optimize.minimize(
        lambda b: -firth.penalized_loglik(b, X, y),
        np.zeros(X.shape[1]),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000},
    )
    assert fitted.coef == pytest.approx(direct.x, abs=1e-5)
    assert fitted.penalized_loglik == pytest.approx(-direct.fun, abs=1e-8)
    # Profile bounds: maximising l* with the coefficient held at a bound (independently, with scipy)
    # gives l*(beta_hat) - chi2_1(0.95) / 2.
    target = fitted.penalized_loglik - stats.chi2.ppf(0.95, 1) / 2
    for j in (1, 2):
        for bound in (fitted.lower[j], fitted.upper[j]):

            def negative(free, j=j, bound=bound):
                return -firth.penalized_loglik(np.insert(free, j, bound), X, y)

            best = optimize.minimize(
                negative,
                np.delete(fitted.coef, j),
                method="Nelder-Mead",
                options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000},
            )
            assert -best.fun == pytest.approx(target, abs=1e-5)


# --- separation -------------------------------------------------------------------------------------------


def test_no_separation_in_bundled_trial(trial):
    X, y, names = logistic._design(trial, COVARIATES)
    assert not logistic.detect_separation(X, y, names).separated


def test_separation_detected_and_firth_used(separated):
    X, y, names = logistic._design(separated, COVARIATES)
    found = logistic.detect_separation(X, y, names)
    assert found.separated and "active_infection=1: no responders" in found.reason
    # The plain MLE runs off towards minus infinity; Firth's is finite and moderate.
    mle, _ = logistic.logit_mle(X, y, names)
    assert mle.params["active_infection"] < -10 or not mle.mle_retvals["converged"]
    table = logistic.logistic_effects(separated, COVARIATES)
    row = _row(table, "odds_ratio", "Firth", "active_infection")
    assert np.isfinite(row["estimate"]) and 1e-3 < row["estimate"] < 1
    assert 0 < row["lower"] < row["estimate"] < row["upper"] < 1
    assert row["flag"].startswith("separation: Firth used")
    assert not table["method"].str.startswith("logistic regression").any()
    gee = _row(table, "odds_ratio", "GEE", "active_infection")
    assert np.isnan(gee["estimate"]) and "separation" in gee["problem"]


def test_separation_by_linear_programme_only():
    # Responders exactly when x > 2.5: complete separation on a continuous covariate, no empty cell.
    x = np.arange(6, dtype=float)
    X = np.column_stack([np.ones(6), x])
    y = (x > 2.5).astype(float)
    found = logistic.detect_separation(X, y, ("intercept", "dose"))
    assert found.separated and "LP" in found.reason
    y[[2, 3]] = y[[3, 2]]  # overlap: no separation
    assert not logistic.detect_separation(X, y, ("intercept", "dose")).separated


# --- logistic regression, GEE, Fisher -------------------------------------------------------------------------


def _logistic_loglik(beta, X, y):
    eta = X @ beta
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def test_logit_wald_and_profile_against_direct_computation(trial):
    X, y, _ = logistic._design(trial, COVARIATES)
    table = logistic.logistic_effects(trial, COVARIATES)
    direct = optimize.minimize(
        lambda b: -_logistic_loglik(b, X, y), np.zeros(3), method="BFGS", options={"gtol": 1e-10}
    )
    p = 1 / (1 + np.exp(-(X @ direct.x)))
    se = np.sqrt(np.diag(np.linalg.inv(X.T @ (X * (p * (1 - p))[:, None]))))
    threshold = stats.chi2.ppf(0.95, 1) / 2
    for j, covariate in enumerate(COVARIATES, start=1):
        wald = _row(table, "odds_ratio", "logistic regression (Logit), Wald", covariate)
        assert np.log(wald["estimate"]) == pytest.approx(direct.x[j], abs=1e-5)
        assert np.log(wald["lower"]) == pytest.approx(direct.x[j] - Z * se[j], abs=1e-4)
        assert np.log(wald["upper"]) == pytest.approx(direct.x[j] + Z * se[j], abs=1e-4)
        profile = _row(table, "odds_ratio", "logistic regression (Logit), profile", covariate)
        for bound in (profile["lower"], profile["upper"]):

            def negative(free, j=j, bound=bound):
                return -_logistic_loglik(np.insert(free, j, np.log(bound)), X, y)

            best = optimize.minimize(negative, np.delete(direct.x, j), method="BFGS", options={"gtol": 1e-10})
            assert -direct.fun - (-best.fun) == pytest.approx(threshold, abs=1e-5)
    # This data set: prior ATG raises, active infection lowers the odds of response.
    assert _row(table, "odds_ratio", "logistic regression (Logit), Wald", "prior_atg")["estimate"] > 1
    assert _row(table, "odds_ratio", "logistic regression (Logit), Wald", "active_infection")["estimate"] < 1


def test_gee_solves_its_estimating_equation(trial):
    result, _ = logistic.gee_logit(trial, COVARIATES)
    X, y, _ = logistic._design(trial, COVARIATES)
    rho = float(result.model.cov_struct.dep_params)
    beta = np.asarray(result.params)
    mu = 1 / (1 + np.exp(-(X @ beta)))
    total = np.zeros(3)
    centers = trial.patients["center"].to_numpy()
    for center in np.unique(centers):
        mine = centers == center
        m = int(mine.sum())
        a = np.sqrt(mu[mine] * (1 - mu[mine]))
        R = np.full((m, m), rho) + (1 - rho) * np.eye(m)
        V = a[:, None] * R * a[None, :]
        D = X[mine] * (mu[mine] * (1 - mu[mine]))[:, None]
        total += D.T @ np.linalg.solve(V, y[mine] - mu[mine])
    assert total == pytest.approx(0, abs=1e-5)
    table = logistic.logistic_effects(trial, COVARIATES)
    row = _row(table, "odds_ratio", "GEE", "prior_atg")
    assert row["estimate"] == pytest.approx(np.exp(beta[1]))
    assert row["flag"] == "few clusters (7)"


def test_fisher_against_hypergeometric(trial):
    table = logistic.logistic_effects(trial, COVARIATES)
    for covariate in COVARIATES:
        counts = logistic.fisher_table(trial, covariate)
        (a, b), (c, d) = counts
        rows, cols, n = a + b, a + c, a + b + c + d
        dist = stats.hypergeom(n, cols, rows)
        support = np.arange(max(0, rows + cols - n), min(rows, cols) + 1)
        pmf = dist.pmf(support)
        p_value = pmf[pmf <= dist.pmf(a) * (1 + 1e-7)].sum()
        row = _row(table, "odds_ratio", "Fisher", covariate)
        assert row["p_value"] == pytest.approx(p_value, rel=1e-6)
        # Conditional MLE: the odds ratio at which the noncentral hypergeometric mean equals a.
        psi = optimize.brentq(
            lambda t, n=n, cols=cols, rows=rows, a=a: stats.nchypergeom_fisher(n, cols, rows, t).mean() - a, 1e-3, 1e3
        )
        assert row["estimate"] == pytest.approx(psi, rel=1e-4)


# --- time to recovery ------------------------------------------------------------------------------------------


def _tiny_trial(tmp_path: Path) -> object:
    """Six patients, five responders; leukocytic recovery at 3, 7, 9, 11 and censored at 5 and 40."""
    patients = pd.DataFrame(
        {
            "patient_id": [f"T{i}" for i in range(1, 7)],
            "center": ["A", "A", "A", "B", "B", "B"],
            "response": ["PR", "CR", "PR", "PR", "PR", "NR"],
            "followup_days": [100, 100, 100, 100, 100, 40],
            "died": [0, 0, 0, 0, 1, 1],
        }
    )
    recovery = pd.DataFrame(
        {
            "patient_id": patients["patient_id"],
            "lineage": "leukocytic",
            "day": [3, 5, 7, 9, 11, 40],
            "recovered": [1, 0, 1, 1, 1, 0],
        }
    )
    patients.to_csv(tmp_path / "patients.csv", index=False)
    recovery.to_csv(tmp_path / "recovery.csv", index=False)
    return load_trial(
        tmp_path / "patients.csv", tmp_path / "recovery.csv", Needs(recovery=True, followup=True, died=True)
    )


def test_km_median_by_hand(tmp_path):
    data = _tiny_trial(tmp_path)
    row = survival.recovery_medians(data).iloc[0]
    # Among the five responders: S(3) = 4/5, censored at 5, S(7) = 0.8 * 2/3, S(9) = S(7) / 2 = 0.267 <= 0.5.
    assert row["estimate"] == 9
    assert (row["n"], row["events"]) == (5, 4)
    assert "range 3-11" in row["method"]
    incidence = survival.recovery_incidence(data, days=(4.0, 8.0, 30.0))
    # All six patients (risk sets 6, 4, 3, 2 at days 3, 7, 9, 11): 1 - S at day 4, 8 and 30.
    assert incidence["estimate"].tolist() == pytest.approx(
        [1 / 6, 1 - 5 / 6 * 3 / 4, 1 - 5 / 6 * 3 / 4 * 2 / 3 * 1 / 2]
    )


def test_published_recovery_medians(trial):
    table = survival.recovery_medians(trial)
    medians = dict(zip(table["element"], table["estimate"], strict=True))
    assert medians == {"leukocytic": 19, "erythrocytic": 17, "megakaryocytic": 31}
    spans = {row["element"]: row["method"] for _, row in table.iterrows()}
    assert "range 11-29" in spans["leukocytic"]
    assert "range 12-25" in spans["erythrocytic"]
    assert "range 26-84" in spans["megakaryocytic"]
    assert (table["n"] == 21).all()


def _weibull_aft_negloglik(theta, t, e, X):
    """Weibull AFT: log scale = X beta, shape rho; lifelines' parameterisation."""
    beta, log_rho = theta[:-1], theta[-1]
    rho = np.exp(log_rho)
    log_scale = X @ beta
    z = rho * (np.log(t) - log_scale)
    log_h = np.log(rho) - np.log(t) + z
    return -float(np.sum(e * log_h - np.exp(z)))


def test_recovery_aft_against_direct_likelihood(trial):
    table = survival.recovery_aft(trial, COVARIATES, families=("weibull",))
    merged = survival.recovery_table(trial)
    mine = merged[(merged["lineage"] == "leukocytic") & (merged["responder"] == 1)]
    X = np.column_stack([np.ones(len(mine)), mine[list(COVARIATES)].to_numpy(float)])
    t, e = mine["day"].to_numpy(float), mine["recovered"].to_numpy(float)
    start = np.r_[np.log(t.mean()), 0, 0, 0]
    direct = optimize.minimize(
        _weibull_aft_negloglik,
        start,
        args=(t, e, X),
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 40000, "maxfev": 40000},
    )
    for j, covariate in enumerate(COVARIATES, start=1):
        row = _row(table, "time_ratio", "Weibull AFT", f"leukocytic, {covariate}")
        assert np.log(row["estimate"]) == pytest.approx(direct.x[j], abs=2e-3)


def test_cure_likelihood_and_fit(trial):
    # The log-likelihood against scipy.stats' Weibull, at an arbitrary parameter value.
    t = np.array([10.0, 20.0, 300.0, 500.0])
    e = np.array([1, 1, 0, 0])
    lineage = np.zeros(4, dtype=int)
    theta = np.array([0.3, np.log(18.0), np.log(2.5)])
    u = 1 / (1 + np.exp(-0.3))
    dist = stats.weibull_min(2.5, scale=18.0)
    expected = np.sum(np.where(e == 1, np.log(u) + dist.logpdf(t), np.log(1 - u + u * dist.sf(t))))
    assert survival.cure_loglik(theta, t, e, lineage, np.zeros((4, 0)), 1) == pytest.approx(expected, abs=1e-10)
    # With follow-up far beyond the last recovery, the cure fraction is the KM plateau.
    table = survival.cure_model(trial, COVARIATES)
    incidence = survival.recovery_incidence(trial, days=(180.0,))
    for lineage_name in trial.lineages:
        cure = _row(table, "cure_fraction", None, lineage_name)
        plateau = 1 - _row(incidence, "recovered_by", None, f"{lineage_name}, 180")["estimate"]
        assert cure["estimate"] == pytest.approx(plateau, abs=2e-3)
        assert cure["lower"] < cure["estimate"] < cure["upper"]
    # Prior ATG: more patients recover (odds ratio of ever recovering > 1).
    assert _row(table, "cure_odds_ratio", None, "prior_atg")["estimate"] > 1
    latency = _row(table, "time_ratio", None, "prior_atg")
    assert latency["lower"] < latency["estimate"] < latency["upper"]


def test_cure_model_recovers_simulated_truth():
    rng = np.random.default_rng(11)
    n = 3000
    cured = rng.random(n) < 0.4
    latent = stats.weibull_min(1.8, scale=30.0).rvs(n, random_state=rng)
    follow = rng.uniform(150, 400, n)
    t = np.where(cured, follow, np.minimum(latent, follow))
    e = (~cured & (latent <= follow)).astype(int)
    theta, cov = survival.fit_cure(t, e, np.zeros(n, dtype=int), np.zeros((n, 0)), 1)
    assert 1 / (1 + np.exp(theta[0])) == pytest.approx(0.4, abs=0.03)
    assert np.exp(theta[1]) == pytest.approx(30.0, rel=0.05)
    assert np.exp(theta[2]) == pytest.approx(1.8, rel=0.08)
    assert np.all(np.isfinite(np.sqrt(np.diag(cov))))


# --- overall survival -------------------------------------------------------------------------------------


def test_overall_survival_and_greenwood_by_hand(trial):
    table = survival.overall_survival(trial)
    twelve = _row(table, "survival_at", None, "365.25")
    assert twelve["estimate"] == pytest.approx(0.878, abs=5e-4)
    patients = trial.patients
    t, d = patients["followup_days"].to_numpy(float), patients["died"].to_numpy(int)
    s, greenwood = 1.0, 0.0
    for time in np.unique(t[(d == 1) & (t <= 365.25)]):
        at_risk, deaths = np.sum(t >= time), np.sum((t == time) & (d == 1))
        s *= 1 - deaths / at_risk
        greenwood += deaths / (at_risk * (at_risk - deaths))
    assert twelve["estimate"] == pytest.approx(s)
    # lifelines' default: the log(-log) transformed Greenwood interval.
    half = Z * np.sqrt(greenwood / np.log(s) ** 2)
    assert (twelve["lower"], twelve["upper"]) == pytest.approx((s ** np.exp(half), s ** np.exp(-half)), abs=1e-8)


def test_cox_against_statsmodels_phreg(trial):
    import statsmodels.api as sm

    table = survival.cox_effects(trial, COVARIATES)
    patients = trial.patients
    phreg = sm.PHReg(
        patients["followup_days"].to_numpy(float),
        patients[list(COVARIATES)].to_numpy(float),
        status=patients["died"].to_numpy(int),
        ties="efron",
    ).fit()
    for j, covariate in enumerate(COVARIATES):
        row = _row(table, "hazard_ratio", None, covariate)
        assert np.log(row["estimate"]) == pytest.approx(phreg.params[j], abs=1e-5)
        assert np.log(row["upper"]) == pytest.approx(phreg.params[j] + Z * phreg.bse[j], abs=1e-4)
        assert "few events (9)" not in row["flag"]  # the few-events flag is added by the table


# --- the table ----------------------------------------------------------------------------------------------


def test_disagreement_rule():
    assert not disagreement(0.3, 0.2, 0.4, 0.28, 0.18, 0.40)
    assert disagreement(0.3, 0.25, 0.35, 0.45, 0.40, 0.50)
    assert disagreement(0.3, 0.1, 0.5, 0.45, 0.40, 0.50)  # Bayes estimate outside the CI only
    assert not disagreement(np.nan, np.nan, np.nan, 0.3, 0.2, 0.4)


def test_comparison_table_without_fits(trial):
    table = comparison_table(trial, [], COVARIATES)
    assert table["bayes"].isna().all()
    assert list(table["section"].unique()) == ["Response", "Time to recovery", "Overall survival", "Safety"]
    small = table[table["quantity"] == "Response rate, Center G"].iloc[0]
    assert small["flag"] == "small n (4)"
    cox = table[table["variable"] == "hazard_ratio"]
    assert cox["flag"].str.contains("few events \\(9\\)").all()
    shown = display_table(table)
    assert list(shown.columns) == [
        "section",
        "quantity",
        "bayes",
        "bayes 95% interval",
        "freq",
        "freq 95% interval",
        "method",
        "flag",
    ]
    assert shown.iloc[0]["freq 95% interval"] == "0.185-0.401"


def test_separated_table_flags_firth(separated):
    table = comparison_table(separated, [], COVARIATES)
    firth_rows = table[table["method"].str.startswith("Firth")]
    assert len(firth_rows) == 2 and firth_rows["flag"].str.contains("separation: Firth used").all()


def test_data_for_fits_checks_hashes(tmp_path):
    class FakeFit:
        def __init__(self, sha):
            self.data_sources = [{"role": "patients", "path": str(tmp_path / "p.csv"), "sha256": sha, "rows": 2}]

    pd.DataFrame({"patient_id": ["a", "b"], "center": ["X", "Y"], "responder": [1, 0]}).to_csv(
        tmp_path / "p.csv", index=False
    )
    with pytest.raises(UsageError, match="not the patients file the fit was made from"):
        data_for_fits([FakeFit("0" * 64)])
    from marrow.data.load import file_sha256

    data = data_for_fits([FakeFit(file_sha256(tmp_path / "p.csv"))])
    assert len(data.patients) == 2 and data.recovery is None


class _FakeFit:
    """A stand-in for `marrow.fits.Fit`: a model name and a posterior built from constant-ish draws."""

    def __init__(self, model: str, variables: dict):
        import types

        import xarray as xr

        rng = np.random.default_rng(0)
        data_vars = {}
        coords = {}
        for name, (centre, dims_coords) in variables.items():
            shape = (2, 200) + tuple(len(v) for _, v in dims_coords)
            data_vars[name] = (
                ("chain", "draw") + tuple(d for d, _ in dims_coords),
                centre * np.exp(rng.normal(0, 0.02, size=shape)),
            )
            coords.update(dict(dims_coords))
        self.idata = types.SimpleNamespace(posterior=xr.Dataset(data_vars, coords=coords))
        self.spec = types.SimpleNamespace(model=model)
        self.data_sources = []


def test_bayes_columns_follow_variable_names_of_every_model(trial):
    lineages = list(trial.lineages)
    fits = [
        _FakeFit("response", {"response_rate": (0.29, []), "center_rate": (0.9, [("center", list(trial.centers))])}),
        _FakeFit(
            "recovery",
            {
                "recovered_by": (0.2, [("lineage", lineages), ("day", [30, 90, 180])]),
                "time_ratio": (0.9, [("covariate", list(COVARIATES))]),
                "median_days": (20.0, [("lineage", lineages)]),
            },
        ),
        _FakeFit(
            "survival",
            {
                "survival_at": (0.88, [("day", [182.6, 365.25, 730.5])]),
                "hazard_ratio": (1.5, [("covariate", list(COVARIATES))]),
            },
        ),
        _FakeFit("safety", {"ae_rate": (0.5, [])}),
    ]
    table = comparison_table(trial, fits, COVARIATES)

    def one(variable, element, section=None):
        mine = table[(table["variable"] == variable) & (table["element"] == element)]
        if section:
            mine = mine[mine["section"] == section]
        return mine.iloc[0]

    assert one("recovered_by", "megakaryocytic, 90")["bayes"] == pytest.approx(0.2, rel=0.1)
    assert one("survival_at", "365.25")["bayes"] == pytest.approx(0.88, rel=0.1)
    assert one("median_days", "leukocytic")["bayes"] == pytest.approx(20, rel=0.1)
    assert one("hazard_ratio", "prior_atg")["bayes"] == pytest.approx(1.5, rel=0.1)
    # time_ratio exists in the recovery fake only: it fills the recovery rows, never the survival ones.
    assert one("time_ratio", "prior_atg", "Time to recovery")["bayes"] == pytest.approx(0.9, rel=0.1)
    survival_ratio = table[(table["section"] == "Overall survival") & (table["variable"] == "time_ratio")]
    assert (
        len(survival_ratio) == 2 * 4 and survival_ratio["bayes"].isna().all()
    )  # weibull, loglogistic, lognormal, exponential
    # Dims that do not match (the per-lineage AFT rows against a shared time_ratio) stay empty.
    assert np.isnan(one("time_ratio", "leukocytic, prior_atg")["bayes"])
    # Disagreement and its reasons.
    assert one("ae_rate", "")["flag"] == "disagree"
    assert one("center_rate", "Center A")["flag"].startswith("disagree: shrinkage")
    assert one("center_rate", "Center G")["flag"].startswith("disagree: shrinkage")
    assert one("response_rate", "")["flag"] == ""


# --- not estimable, and sections by available columns -------------------------------------------------


def test_not_estimable_rule():
    from marrow.frequentist.estimable import not_estimable

    assert not_estimable(2.0, 1.0, 4.0, "log") == ""
    assert not_estimable(-1.4, -2.3, -0.5, "identity") == ""
    assert not_estimable(0.74, 0.63, 0.83, "logit") == ""
    # An odds ratio of 4e-20 with an interval spanning 300 orders of magnitude.
    assert "beyond" in not_estimable(4e-20, 1e-170, 1e130, "log")
    assert "orders of magnitude" in not_estimable(0.5, 1e-6, 1e4, "log")
    assert not_estimable(2.0, np.nan, np.nan, "log").startswith("estimate without an interval")
    assert not_estimable(np.inf, 1.0, np.inf, None) == "estimate is infinite"
    assert not_estimable(np.nan, np.nan, np.nan, None) == "no estimate"
    assert "boundary" in not_estimable(0.0, 0.0, 0.3, "log")
    assert "beyond" in not_estimable(1e-9, 1e-12, 1e-6, "logit")  # a cure fraction at the boundary
    assert not_estimable(3.0, 1.0, 9.0, "log", problem="optimiser did not converge") == "optimiser did not converge"
    # Exact and Kaplan-Meier rows need only an estimate and an interval (a median's upper limit may be inf).
    assert not_estimable(31.0, 30.0, np.inf, None) == ""
    assert not_estimable(0.0, 0.0, 0.3, None) == ""


def _degenerate_trial():
    """Complete separation (x = 1: all respond, x = 0: none) and a lineage in which everyone recovers."""
    from marrow.data.trial import TrialData

    n = 30
    x = np.tile([0, 1], n // 2)
    patients = pd.DataFrame(
        {
            "patient_id": [f"D{i:02d}" for i in range(n)],
            "center": np.repeat(["K1", "K2", "K3"], 10),
            "responder": x,
            "response": np.where(x == 1, "PR", "NR"),
            "x": x.astype(float),
        }
    )
    rng = np.random.default_rng(4)
    everyone = pd.DataFrame(
        {
            "patient_id": patients["patient_id"],
            "lineage": "alpha",
            "day": rng.integers(8, 40, n).astype(float),
            "recovered": 1,
        }
    )
    recovers = rng.random(n) < 0.5
    some = pd.DataFrame(
        {
            "patient_id": patients["patient_id"],
            "lineage": "beta",
            "day": np.where(recovers, rng.integers(10, 60, n), 200).astype(float),
            "recovered": recovers.astype(int),
        }
    )
    return TrialData(patients, pd.concat([everyone, some], ignore_index=True), ("x",), ())


def test_separation_and_cure_boundary_are_not_estimable():
    table = comparison_table(_degenerate_trial(), [], ("x",))
    flagged = table[table["flag"].str.contains("not estimable", regex=False)]
    assert flagged[["freq", "freq_lower", "freq_upper"]].isna().all().all()
    cure = table[(table["variable"] == "cure_fraction") & (table["element"] == "alpha")].iloc[0]
    assert "not estimable" in cure["flag"] and np.isnan(cure["freq"])
    assert (
        "not estimable"
        not in table[(table["variable"] == "cure_fraction") & (table["element"] == "beta")].iloc[0]["flag"]
    )
    fisher = table[table["method"].str.startswith("Fisher")].iloc[0]
    assert "not estimable" in fisher["flag"] and np.isnan(fisher["freq"])
    glmm = table[table["method"].str.startswith("random-intercept")]
    assert len(glmm) and glmm["flag"].str.contains("not estimable: separation").all()
    gee = table[table["method"].str.startswith("GEE")].iloc[0]
    assert gee["flag"].startswith("not estimable: separation")
    # Firth still gives a finite, flagged estimate; exact rates are untouched.
    assert np.isfinite(table[table["method"].str.startswith("Firth")]["freq"]).all()
    assert table[table["variable"] == "response_rate"]["flag"].eq("").all()


def test_not_estimable_in_every_format(tmp_path, capsys):
    import json

    from marrow.cli import main

    # The separated patients only (the cure boundary is checked above): cheap to recompute per format.
    _degenerate_trial().patients.drop(columns="response").to_csv(tmp_path / "p.csv", index=False)

    def run(fmt: str) -> str:
        with pytest.raises(SystemExit) as exited:
            main(["compare", "--data", str(tmp_path / "p.csv"), "--covariates", "x", "--format", fmt])
        out = capsys.readouterr().out
        assert exited.value.code == 0
        return out

    for fmt in ("table", "markdown", "latex"):
        text = run(fmt)
        assert (
            "not estimable: separation" in text and "Skipped: Overall survival" in text
            if fmt == "latex"
            else "skipped: Overall survival (no 'followup_days' or 'died' columns)" in text
        )
        import re

        numbers = re.sub(r"p = [0-9.e+-]+", "", text)  # Fisher's p-value may be tiny; estimates may not
        # (a Kaplan-Meier median's interval may legitimately end at inf, "23-inf": median not reached)
        assert "not estimable" in text and not re.search(r"(?<!\d-)\binf\b|e-\d\d", numbers)
    rows = json.loads(run("json"))
    assert rows["skipped"] == [
        "skipped: Time to recovery (no recovery table)",
        "skipped: Overall survival (no 'followup_days' or 'died' columns)",
        "skipped: Safety (no 'adverse_event' column)",
    ]
    flagged = [r for r in rows["rows"] if "not estimable" in (r["flag"] or "")]
    assert flagged and all(r["freq"] is None and r["freq_lower"] is None for r in flagged)
    import io

    csv = pd.read_csv(io.StringIO(run("csv")))
    marked = csv["flag"].fillna("").str.contains("not estimable")
    assert marked.any() and csv.loc[marked, "freq"].isna().all()


def test_survival_only_trial_runs_the_survival_section():
    from marrow.data.trial import TrialData

    rng = np.random.default_rng(8)
    n = 60
    x = rng.binomial(1, 0.5, n)
    time = rng.weibull(1.3, n) * 400 * np.exp(0.4 * x)
    follow = np.minimum(time, 500.0)
    patients = pd.DataFrame(
        {
            "patient_id": [f"S{i:02d}" for i in range(n)],
            "center": np.repeat(["A", "B"], n // 2),
            "followup_days": follow,
            "died": (time <= 500).astype(int),
            "prior_atg": x.astype(float),
        }
    )
    table = comparison_table(TrialData(patients, None, ("prior_atg",), ()), [], ("prior_atg",))
    assert set(table["section"]) == {"Overall survival"}
    assert table.attrs["skipped"] == [
        "skipped: Response (no 'responder' column)",
        "skipped: Time to recovery (no recovery table)",
        "skipped: Safety (no 'adverse_event' column)",
    ]
    families = table[table["variable"] == "median_days"]["method"].str.split(" AFT").str[0]
    assert list(families) == ["Weibull", "log-logistic", "log-normal", "exponential"]
    assert {"aft_intercept", "shape", "time_ratio", "hazard_ratio", "survival_at"} <= set(table["variable"])


def test_aft_intercept_shape_and_median_against_direct_likelihood(trial):
    """Weibull AFT rows (covariates centred) against a direct scipy fit of lifelines' parameterisation."""
    table = survival.survival_aft(trial, COVARIATES, families=("weibull", "exponential"))
    patients = trial.patients
    x = patients[list(COVARIATES)].to_numpy(float)
    X = np.column_stack([np.ones(len(x)), x - x.mean(axis=0)])
    t, e = patients["followup_days"].to_numpy(float), patients["died"].to_numpy(float)
    direct = optimize.minimize(
        _weibull_aft_negloglik,
        np.r_[np.log(t.mean()), 0, 0, 0],
        args=(t, e, X),
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 40000, "maxfev": 40000},
    )
    b0, rho = direct.x[0], np.exp(direct.x[-1])
    weibull = table[table["family"] == "weibull"].set_index("key")
    assert weibull.loc["aft_intercept", "estimate"] == pytest.approx(b0, abs=2e-3)
    assert weibull.loc["shape", "estimate"] == pytest.approx(rho, rel=2e-3)
    assert weibull.loc["median_days", "estimate"] == pytest.approx(np.exp(b0) * np.log(2) ** (1 / rho), rel=3e-3)
    # Exponential: the MLE of the rate without covariates would be deaths / total time; with centred
    # covariates its median is exp(intercept) log 2.
    exponential = table[table["family"] == "exponential"].set_index("key")
    assert "shape" not in exponential.index
    assert exponential.loc["median_days", "estimate"] == pytest.approx(
        np.exp(exponential.loc["aft_intercept", "estimate"]) * np.log(2), rel=1e-9
    )
