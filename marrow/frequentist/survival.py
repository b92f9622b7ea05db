"""Time to recovery and overall survival: Kaplan-Meier (lifelines), accelerated failure time MLEs
(lifelines' Weibull, log-logistic and log-normal AFT fitters, and an exponential AFT written as a
lifelines custom regression), Cox (lifelines), and a maximum-likelihood Weibull mixture cure model
(scipy; lifelines has none).

Every function returns a tidy DataFrame with columns `key` (the matching posterior variable),
`label`, `element`, `estimate`, `lower`, `upper`, `n`, `events`, `method`, `flag`, `problem` (why
the fit cannot be trusted, e.g. a non-converged optimiser; '' when none), `working` (the scale
on which `marrow.frequentist.estimable` judges the estimate; None for non-parametric rows) and
`family` (the AFT family, matched against a Bayesian fit's family; '' for other rows), and is
empty when the data lack what it needs. Times are in days.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marrow.data import TrialData
from marrow.formatting import plural
from marrow.time_units import SINGULAR, to_days

LEVEL = 0.95
RECOVERY_DAYS = (30.0, 90.0, 180.0)
SURVIVAL_DAYS = (182.6, 365.25, 730.5)
COLUMNS = [
    "key",
    "label",
    "element",
    "estimate",
    "lower",
    "upper",
    "n",
    "events",
    "method",
    "flag",
    "problem",
    "working",
    "family",
]
LN2 = float(np.log(2.0))
# family -> (readable name, whether it has a shape parameter). Order = order of rows.
AFT_FAMILIES = {
    "weibull": ("Weibull", True),
    "loglogistic": ("log-logistic", True),
    "lognormal": ("log-normal", True),
    "exponential": ("exponential", False),
}
SURVIVAL_FAMILIES = ("weibull", "loglogistic", "lognormal", "exponential")  # every family of marrow's survival model
RECOVERY_FAMILIES = ("weibull", "loglogistic", "lognormal", "exponential")


def _frame(rows: list[dict]) -> pd.DataFrame:
    rows = [{"problem": "", "working": None, "family": "", **row} for row in rows]
    return pd.DataFrame(rows, columns=COLUMNS)


def _warnings_note(caught) -> str:
    text = "; ".join(dict.fromkeys(str(w.message).split("\n")[0][:80] for w in caught))
    return f"warning: {text}" if text else ""


def _day(day: float) -> str:
    return f"{day:g}"


INTERVAL_FLAG = "visit intervals: Kaplan-Meier at the upper visit day (see the interval-censored rows)"


def _interval_flag(data: TrialData) -> str:
    """A flag for Kaplan-Meier rows of interval-censored data, which read each recovery at its upper day."""
    from marrow.frequentist.interval import has_intervals

    return INTERVAL_FLAG if has_intervals(data) else ""


def recovery_table(data: TrialData) -> pd.DataFrame | None:
    """The recovery table joined with each patient's response and covariates; None without recovery data."""
    if data.recovery is None:
        return None
    columns = ["patient_id", *(["responder"] if "responder" in data.patients.columns else []), *data.covariates]
    return data.recovery.merge(data.patients[columns], on="patient_id", how="left")


def _responders(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Responders (CR or PR) of a recovery table and the words for them; every patient when the
    patients table has no response column."""
    if "responder" not in table.columns:
        return table, "all patients (no response column)"
    return table[table["responder"] == 1], "among responders"


# --- time to recovery ------------------------------------------------------------------------------------


def recovery_medians(data: TrialData, level: float = LEVEL, unit: str = "days") -> pd.DataFrame:
    """Median time to recovery per lineage: Kaplan-Meier among responders (CR or PR), recovery the event.

    The interval is lifelines' (the median read off the pointwise log(-log) Greenwood band); the
    method text carries the range of observed recovery days, as papers report it.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    table = recovery_table(data)
    if table is None:
        return _frame([])
    rows, flag = [], _interval_flag(data)
    chosen, who = _responders(table)
    for lineage in data.lineages:
        mine = chosen[chosen["lineage"] == lineage]
        if mine.empty:
            continue
        kmf = KaplanMeierFitter(alpha=1 - level).fit(mine["day"], mine["recovered"])
        ci = median_survival_times(kmf.confidence_interval_)
        days = mine.loc[mine["recovered"] == 1, "day"]
        events = int(len(days))
        span = f"range {days.min():g}-{days.max():g}" if events else "no recoveries"
        rows.append(
            {
                "key": "median_days",
                "label": f"Median {unit} to recovery, {lineage}",
                "element": lineage,
                "estimate": float(kmf.median_survival_time_),
                "lower": float(ci.iloc[0, 0]),
                "upper": float(ci.iloc[0, 1]),
                "n": len(mine),
                "events": events,
                "method": f"Kaplan-Meier {who}; {span} ({events}/{len(mine)} recovered)",
                "flag": flag,
            }
        )
    return _frame(rows)


def _km_at(kmf, day: float) -> tuple[float, float, float]:
    """KM survival and its pointwise interval at `day` (right-continuous step functions)."""
    estimate = float(kmf.survival_function_at_times(day).iloc[0])
    band = kmf.confidence_interval_survival_function_
    upto = band.loc[band.index <= day]
    lower, upper = (float(upto.iloc[-1, 0]), float(upto.iloc[-1, 1])) if len(upto) else (1.0, 1.0)
    return estimate, lower, upper


def recovery_incidence(
    data: TrialData, days: tuple[float, ...] = RECOVERY_DAYS, level: float = LEVEL, unit: str = "days"
) -> pd.DataFrame:
    """Cumulative incidence of recovery by each time (`days`, in `unit`) among all patients: 1 - KM,
    non-recovery censored."""
    from lifelines import KaplanMeierFitter

    table = recovery_table(data)
    if table is None:
        return _frame([])
    rows, flag = [], _interval_flag(data)
    for lineage in data.lineages:
        mine = table[table["lineage"] == lineage]
        kmf = KaplanMeierFitter(alpha=1 - level).fit(mine["day"], mine["recovered"])
        for day in days:
            survival, lower, upper = _km_at(kmf, day)
            rows.append(
                {
                    "key": "recovered_by",
                    "label": f"Recovered by {SINGULAR[unit]} {_day(day)}, {lineage}",
                    "element": f"{lineage}, {_day(day)}",
                    "estimate": 1 - survival,
                    "lower": 1 - upper,
                    "upper": 1 - lower,
                    "n": len(mine),
                    "events": int(mine["recovered"].sum()),
                    "method": "1 - Kaplan-Meier, all patients (Greenwood log-log)",
                    "flag": flag,
                }
            )
    return _frame(rows)


def weibull_aft(frame: pd.DataFrame, duration: str, event: str, covariates: list[str], level: float = LEVEL):
    """lifelines WeibullAFTFitter; returns (summary with exp(coef) columns for lambda_, warnings note)."""
    from lifelines import WeibullAFTFitter

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitter = WeibullAFTFitter(alpha=1 - level).fit(frame[[duration, event, *covariates]], duration, event)
    summary = fitter.summary.loc["lambda_"]
    return summary, _warnings_note(caught)


def _exponential_fitter(level: float):
    """An exponential AFT as a lifelines custom parametric regression: S(t) = exp(-t / lambda),
    log lambda = x' beta (lifelines has no exponential regression fitter)."""
    from lifelines.fitters import ParametricRegressionFitter

    class ExponentialAFTFitter(ParametricRegressionFitter):
        _fitted_parameter_names = ["lambda_"]

        def _cumulative_hazard(self, params, T, Xs):
            import autograd.numpy as anp

            return T / anp.exp(anp.dot(Xs["lambda_"], params["lambda_"]))

    return ExponentialAFTFitter(alpha=1 - level)


@dataclass(frozen=True)
class AFTResult:
    """One AFT MLE with covariates centred at their mean: `estimates` maps a name ('intercept',
    'log_shape' in marrow's convention k, 'log_median' of the trial-average patient, each covariate's
    log time ratio) to (estimate, standard error); `problem` says why it cannot be used ('' if none)."""

    family: str
    estimates: dict
    note: str = ""
    problem: str = ""


def aft_mle(
    frame: pd.DataFrame, duration: str, event: str, covariates: list[str], family: str, level: float = LEVEL
) -> AFTResult:
    """Fit an AFT model of `family` (weibull, loglogistic, lognormal, exponential) with lifelines.

    Covariates are centred at their mean (as marrow's Bayesian survival and recovery models centre
    them), so the intercept and the median refer to the trial-average patient; time ratios are
    unchanged by centring. Shapes are reported as marrow's k in u = k (log t - log median): Weibull
    rho, log-logistic beta, 1 / sigma for the log-normal. The log median and its standard error
    come from the delta method on lifelines' covariance of (intercept, log shape).
    """
    from lifelines import LogLogisticAFTFitter, LogNormalAFTFitter, WeibullAFTFitter

    work = frame[[duration, event]].astype(float).copy()
    for c in covariates:
        work[c] = frame[c].astype(float) - float(frame[c].astype(float).mean())
    fitters = {
        "weibull": ("lambda_", "rho_", WeibullAFTFitter),
        "loglogistic": ("alpha_", "beta_", LogLogisticAFTFitter),
        "lognormal": ("mu_", "sigma_", LogNormalAFTFitter),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if family == "exponential":
                location, shape_name = "lambda_", None
                work["Intercept"] = 1.0
                fitter = _exponential_fitter(level).fit(
                    work, duration, event, regressors={"lambda_": ["Intercept", *covariates]}
                )
            else:
                location, shape_name, kind = fitters[family]
                fitter = kind(alpha=1 - level).fit(work, duration, event)
        except Exception as exc:  # lifelines raises ConvergenceError and numerical errors of many kinds
            return AFTResult(family, {}, problem=f"optimiser did not converge ({type(exc).__name__})")
    note = _warnings_note(caught)
    params, cov = fitter.params_, fitter.variance_matrix_
    names = [(location, "Intercept")] + ([(shape_name, "Intercept")] if shape_name else [])
    V = cov.loc[names, names].to_numpy(dtype=float)
    b0 = float(params[(location, "Intercept")])
    gamma = float(params[(shape_name, "Intercept")]) if shape_name else 0.0
    # log median and its gradient in (intercept, log shape parameter)
    if family == "weibull":
        log_median, gradient = b0 + np.exp(-gamma) * np.log(LN2), np.array([1.0, -np.exp(-gamma) * np.log(LN2)])
    elif family == "exponential":
        log_median, gradient = b0 + np.log(LN2), np.array([1.0])
    else:
        log_median, gradient = b0, np.array([1.0, 0.0])
    estimates = {"intercept": (b0, float(np.sqrt(V[0, 0])))}
    if shape_name:
        estimates["log_shape"] = (-gamma if family == "lognormal" else gamma, float(np.sqrt(V[1, 1])))
    estimates["log_median"] = (float(log_median), float(np.sqrt(gradient @ V @ gradient)))
    for c in covariates:
        estimates[c] = (float(params[(location, c)]), float(np.sqrt(cov.loc[(location, c), (location, c)])))
    bad = [name for name, (_, se) in estimates.items() if not np.isfinite(se)]
    problem = "Hessian not positive definite" if bad else ""
    return AFTResult(family, estimates, note, problem)


def aft_rows(
    result: AFTResult,
    covariates: list[str],
    what: str,
    element: str,
    n: int,
    events: int,
    who: str,
    level: float = LEVEL,
    unit: str = "days",
) -> list[dict]:
    """Rows of one AFT MLE: intercept (log time, in `unit`), shape, median of the trial-average patient, time ratios.

    `what` names the outcome in labels ('survival' or the lineage); `element` is the lineage ('' for
    survival), the posterior coordinate the Bayesian side matches."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    name, _ = AFT_FAMILIES[result.family]
    method = f"{name} AFT MLE{' ' + who if who else ''} (lifelines), covariates centred, Wald"
    common = {
        "n": n,
        "events": events,
        "method": method,
        "flag": result.note,
        "problem": result.problem,
        "family": result.family,
    }
    if not result.estimates:
        return [
            {
                "key": "median_days",
                "label": f"Median {unit}, {what}, {name} AFT",
                "element": element,
                "estimate": np.nan,
                "lower": np.nan,
                "upper": np.nan,
                "working": "log",
                **common,
            }
        ]

    def exp_row(key, label, sub, est_se):
        estimate, se = est_se
        return {
            "key": key,
            "label": label,
            "element": sub,
            "estimate": float(np.exp(estimate)),
            "lower": float(np.exp(estimate - z * se)),
            "upper": float(np.exp(estimate + z * se)),
            "working": "log",
            **common,
        }

    e = result.estimates
    intercept, se = e["intercept"]
    rows = [
        {
            "key": "aft_intercept",
            "label": f"AFT intercept (log {unit}), {what}, {name}",
            "element": element,
            "estimate": intercept,
            "lower": intercept - z * se,
            "upper": intercept + z * se,
            "working": "identity",
            **common,
        },
        exp_row("median_days", f"Median {unit}, {what}, {name} AFT (trial-average patient)", element, e["log_median"]),
    ]
    if "log_shape" in e:
        rows.append(exp_row("shape", f"Shape k, {what}, {name} AFT", element, e["log_shape"]))
    for c in covariates:
        sub = f"{element}, {c}" if element else c
        rows.append(exp_row("time_ratio", f"Time ratio, {c}, {what} ({name} AFT)", sub, e[c]))
    return rows


def recovery_aft(
    data: TrialData,
    covariates: tuple[str, ...] | None = None,
    level: float = LEVEL,
    families: tuple[str, ...] = RECOVERY_FAMILIES,
    unit: str = "days",
) -> pd.DataFrame:
    """AFT MLEs of time to recovery among responders (all patients without a response column).

    Pooled over lineages: Weibull time ratios with lineage indicators (element = covariate). Per
    lineage and family (`aft_rows`): intercept, shape, median and time ratios (element = lineage, or
    "lineage, covariate"). A time ratio < 1 means faster recovery.
    """
    covariates = tuple(data.covariates if covariates is None else covariates)
    table = recovery_table(data)
    if table is None:
        return _frame([])
    chosen, who = _responders(table)
    responders = chosen.copy()
    rows = []
    lineages = list(data.lineages)
    dummies = []
    for lineage in lineages[1:]:
        name = f"_lineage_{lineage}"
        responders[name] = (responders["lineage"] == lineage).astype(float)
        dummies.append(name)
    usable = [c for c in covariates if responders[c].nunique() > 1]
    if usable:
        summary, note = weibull_aft(responders, "day", "recovered", [*usable, *dummies], level)
        for covariate in usable:
            rows.append(
                _ratio_row(
                    "time_ratio",
                    f"Time ratio, {covariate} (recovery, all lineages)",
                    covariate,
                    summary.loc[covariate],
                    len(responders),
                    int(responders["recovered"].sum()),
                    f"Weibull AFT MLE {who}, lineage-adjusted",
                    note,
                )
            )
    for lineage in lineages:
        mine = responders[responders["lineage"] == lineage]
        events = int(mine["recovered"].sum())
        if events < 2:
            continue
        usable = [c for c in covariates if mine[c].nunique() > 1]
        for family in families:
            result = aft_mle(mine, "day", "recovered", usable, family, level)
            rows += aft_rows(result, usable, lineage, lineage, len(mine), events, who, level, unit)
    return _frame(rows)


def _ratio_row(key: str, label: str, element: str, row: pd.Series, n: int, events: int, method: str, flag: str) -> dict:
    lower = [c for c in row.index if c.startswith("exp(coef) lower")][0]
    upper = [c for c in row.index if c.startswith("exp(coef) upper")][0]
    return {
        "key": key,
        "label": label,
        "element": element,
        "estimate": float(row["exp(coef)"]),
        "lower": float(row[lower]),
        "upper": float(row[upper]),
        "n": n,
        "events": events,
        "method": method,
        "flag": flag,
        "working": "log",
    }


# --- mixture cure model --------------------------------------------------------------------------------


def cure_loglik(
    theta: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    lineage: np.ndarray,
    Z: np.ndarray,
    n_lineages: int,
    pointwise: bool = False,
    latency: bool = False,
):
    """Log-likelihood of a Weibull mixture cure model.

    theta = (a_1..a_L, g_1..g_p, log scale_1..L, log shape_1..L[, b_1..b_p]). P(ever recover) =
    u = logistic(a_l + z'g); among those who recover, T ~ Weibull(scale_l * exp(z'b), shape_l)
    (the b only with `latency`; exp(b) are time ratios). A recovery at t contributes
    log u + log f(t); a censored time log(1 - u + u S(t)).
    """
    L, p = n_lineages, Z.shape[1]
    a, g = theta[:L], theta[L : L + p]
    log_scale, log_shape = theta[L + p : 2 * L + p], theta[2 * L + p : 3 * L + p]
    row_log_scale = log_scale[lineage] + (Z @ theta[3 * L + p : 3 * L + 2 * p] if latency else 0.0)
    logit_u = a[lineage] + Z @ g
    log_u = -np.logaddexp(0.0, -logit_u)
    log_cure = -np.logaddexp(0.0, logit_u)
    k = np.exp(log_shape[lineage])
    log_z = k * (np.log(time) - row_log_scale)  # log of (t / scale)^k
    cumhaz = np.exp(log_z)
    log_f = np.log(k) - np.log(time) + log_z - cumhaz
    recovered = log_u + log_f
    censored = np.logaddexp(log_cure, log_u - cumhaz)
    terms = np.where(event == 1, recovered, censored)
    return terms if pointwise else float(np.sum(terms))


def fit_cure(time, event, lineage, Z, n_lineages: int, clusters=None, latency: bool = False):
    """Maximum-likelihood fit of `cure_loglik` (scipy BFGS, then Nelder-Mead polish); returns (theta, covariance).

    The covariance is the inverse numerical Hessian, or with `clusters` (e.g. patient ids, when a
    patient contributes one row per lineage) the cluster-robust sandwich H^-1 (sum_c g_c g_c') H^-1,
    g_c the score summed over a cluster's rows (central differences).
    """
    from scipy.optimize import minimize
    from statsmodels.tools.numdiff import approx_hess3

    time, event = np.asarray(time, float), np.asarray(event, int)
    L, p = n_lineages, Z.shape[1]
    start = np.zeros(3 * L + (2 * p if latency else p))
    for g in range(L):
        mine = lineage == g
        share = np.clip(event[mine].mean(), 0.02, 0.98)
        start[g] = np.log(share / (1 - share))
        recovered = time[mine & (event == 1)]
        start[L + p + g] = np.log(np.median(recovered)) if len(recovered) else np.log(np.median(time[mine]))
        start[2 * L + p + g] = np.log(2.0)

    def objective(theta):
        return -cure_loglik(theta, time, event, lineage, Z, L, latency=latency)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = minimize(objective, start, method="BFGS", options={"gtol": 1e-8, "maxiter": 2000})
        result = minimize(
            objective,
            result.x,
            method="Nelder-Mead",
            options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 20000, "maxfev": 40000},
        )
        hessian = approx_hess3(result.x, objective)
    try:
        covariance = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return result.x, np.full_like(hessian, np.nan)
    if clusters is not None:
        theta = result.x
        scores = np.zeros((len(time), len(theta)))
        for j in range(len(theta)):
            step = np.zeros_like(theta)
            step[j] = 1e-5 * max(1.0, abs(theta[j]))
            up = cure_loglik(theta + step, time, event, lineage, Z, L, pointwise=True, latency=latency)
            down = cure_loglik(theta - step, time, event, lineage, Z, L, pointwise=True, latency=latency)
            scores[:, j] = (up - down) / (2 * step[j])
        summed = pd.DataFrame(scores).groupby(np.asarray(clusters)).sum().to_numpy()
        covariance = covariance @ (summed.T @ summed) @ covariance
    return result.x, covariance


def cure_model(data: TrialData, covariates: tuple[str, ...] | None = None, level: float = LEVEL) -> pd.DataFrame:
    """Cure fraction per lineage (P(never recover), all patients); covariate effects on cure and latency.

    Cure fractions come from a model without covariates (one cure fraction and one Weibull per
    lineage), with Wald intervals on the logit scale. Covariate effects come from one model over
    all lineages: lineage-specific intercepts, Weibull scales and shapes, shared covariate effects
    on the odds of ever recovering (`cure_odds_ratio`, > 1 = more patients recover; the convention
    of marrow's Bayesian recovery model) and on the latency scale (`time_ratio`, < 1 = faster);
    Wald intervals on the log scale with a sandwich covariance clustered on patient (a patient's
    lineages are not independent).
    """
    from scipy.special import expit  # no overflow warning at a boundary estimate's huge standard error
    from scipy.stats import norm

    table = recovery_table(data)
    if table is None:
        return _frame([])
    lineages = list(data.lineages)
    L = len(lineages)
    lineage = table["lineage"].map({name: i for i, name in enumerate(lineages)}).to_numpy()
    time, event = table["day"].to_numpy(float), table["recovered"].to_numpy(int)
    z = norm.ppf(0.5 + level / 2)
    rows = []

    for g, name in enumerate(lineages):
        mine = lineage == g
        # Without covariates the lineages share no parameter: one fit each, so a lineage at the
        # boundary (a singular Hessian) leaves the others' intervals intact.
        n_mine = int(mine.sum())
        theta, cov = fit_cure(time[mine], event[mine], np.zeros(n_mine, dtype=int), np.zeros((n_mine, 0)), 1)
        logit_cure, se = -theta[0], float(np.sqrt(cov[0, 0])) if np.isfinite(cov[0, 0]) and cov[0, 0] > 0 else np.nan
        last_event = time[mine & (event == 1)].max() if (mine & (event == 1)).any() else np.nan
        censored_after = int(np.sum(mine & (event == 0) & (time > last_event)))
        rows.append(
            {
                "key": "cure_fraction",
                "label": f"Cure fraction (never recover), {name}",
                "element": name,
                "estimate": float(expit(logit_cure)),
                "lower": float(expit(logit_cure - z * se)),
                "upper": float(expit(logit_cure + z * se)),
                "n": int(mine.sum()),
                "events": int(event[mine].sum()),
                "method": "Weibull mixture cure MLE, all patients, Wald (logit)",
                "flag": "",
                "working": "logit",
                "problem": ("" if censored_after else "no censoring after the last recovery: cure not identified")
                or ("" if np.isfinite(se) else "Hessian not positive definite"),
            }
        )
    covariates = tuple(data.covariates if covariates is None else covariates)
    usable = [c for c in covariates if table[c].nunique() > 1]
    if usable:
        Z = table[usable].to_numpy(float)
        theta, cov = fit_cure(time, event, lineage, Z, L, clusters=table["patient_id"].to_numpy(), latency=True)
        p = len(usable)
        n_patients, events = int(table["patient_id"].nunique()), int(event.sum())
        for key, offset, label, what in (
            ("cure_odds_ratio", L, "Odds ratio of ever recovering (cure model)", "incidence"),
            ("time_ratio", 3 * L + p, "Time ratio (cure model latency)", "latency"),
        ):
            for j, covariate in enumerate(usable):
                log_ratio, var = theta[offset + j], cov[offset + j, offset + j]
                se = float(np.sqrt(var)) if np.isfinite(var) and var > 0 else np.nan
                rows.append(
                    {
                        "key": key,
                        "label": f"{label}, {covariate}",
                        "element": covariate,
                        "estimate": float(np.exp(log_ratio)),
                        "lower": float(np.exp(log_ratio - z * se)),
                        "upper": float(np.exp(log_ratio + z * se)),
                        "n": n_patients,
                        "events": events,
                        "method": f"Weibull mixture cure MLE ({what}), all lineages, robust (patient) Wald",
                        "flag": "",
                        "working": "log",
                        "problem": "" if np.isfinite(se) else "Hessian not positive definite",
                    }
                )
    return _frame(rows)


# --- overall survival ------------------------------------------------------------------------------------


def _has_survival(data: TrialData) -> bool:
    patients = data.patients
    return {"followup_days", "died"} <= set(patients.columns) and not patients[
        ["followup_days", "died"]
    ].isna().any().any()


def overall_survival(
    data: TrialData, days: tuple[float, ...] = SURVIVAL_DAYS, level: float = LEVEL, unit: str = "days"
) -> pd.DataFrame:
    """Kaplan-Meier overall survival at each time (`days`, in `unit`) with lifelines' Greenwood (log-log) interval."""
    from lifelines import KaplanMeierFitter

    if not _has_survival(data):
        return _frame([])
    patients = data.patients
    kmf = KaplanMeierFitter(alpha=1 - level).fit(patients["followup_days"], patients["died"])
    rows = []
    for day in days:
        estimate, lower, upper = _km_at(kmf, day)
        at_risk = int((patients["followup_days"] >= day).sum())
        rows.append(
            {
                "key": "survival_at",
                "label": f"Survival at {SINGULAR[unit]} {_day(day)} "
                f"({plural(int(round(to_days(day, unit) / 30.4375)), 'month')})",
                "element": _day(day),
                "estimate": estimate,
                "lower": lower,
                "upper": upper,
                "n": len(patients),
                "events": int(patients["died"].sum()),
                "method": f"Kaplan-Meier, Greenwood log-log ({at_risk} at risk)",
                "flag": "",
            }
        )
    return _frame(rows)


def _survival_frame(data: TrialData, covariates: tuple[str, ...] | None):
    """(patients, non-constant covariates, float frame of time, death and covariates), or None."""
    covariates = tuple(data.covariates if covariates is None else covariates)
    if not _has_survival(data) or not covariates:
        return None
    patients = data.patients
    usable = [c for c in covariates if patients[c].nunique() > 1]
    return patients, usable, patients[["followup_days", "died", *usable]].astype(float)


def cox_effects(data: TrialData, covariates: tuple[str, ...] | None = None, level: float = LEVEL) -> pd.DataFrame:
    """Cox proportional-hazards hazard ratios (lifelines CoxPHFitter, Efron ties), Wald intervals."""
    from lifelines import CoxPHFitter

    prepared = _survival_frame(data, covariates)
    if prepared is None:
        return _frame([])
    patients, usable, frame = prepared
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitter = CoxPHFitter(alpha=1 - level).fit(frame, "followup_days", "died")
    note = _warnings_note(caught)
    events = int(patients["died"].sum())
    rows = [
        _ratio_row(
            "hazard_ratio",
            f"Hazard ratio, {c} (death)",
            c,
            fitter.summary.loc[c],
            len(patients),
            events,
            "Cox proportional hazards (Efron), Wald",
            note,
        )
        for c in usable
    ]
    return _frame(rows)


def survival_aft(
    data: TrialData,
    covariates: tuple[str, ...] | None = None,
    level: float = LEVEL,
    families: tuple[str, ...] = SURVIVAL_FAMILIES,
    unit: str = "days",
) -> pd.DataFrame:
    """AFT MLEs of overall survival per family (`aft_rows`): intercept, shape, median of the
    trial-average patient and time ratios, Wald intervals. Weibull rows first."""
    if not _has_survival(data):
        return _frame([])
    covariates = tuple(data.covariates if covariates is None else covariates)
    patients = data.patients
    usable = [c for c in covariates if patients[c].nunique() > 1]
    frame = patients[["followup_days", "died", *usable]].astype(float)
    events = int(patients["died"].sum())
    rows = []
    for family in families:
        result = aft_mle(frame, "followup_days", "died", usable, family, level)
        rows += aft_rows(result, usable, "survival", "", len(patients), events, "", level, unit)
    return _frame(rows)
