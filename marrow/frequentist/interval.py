"""Frequentist counterparts for visit-based (interval-censored) recovery and for death competing with
recovery, all through lifelines: the Turnbull nonparametric estimate, interval-censored Weibull fits
(per lineage and AFT), and the Aalen-Johansen cumulative incidence.

Tidy frames as in `marrow.frequentist.survival` (columns key, label, element, estimate, lower, upper,
n, events, method, flag), empty when the data lack what the method needs. Times are in the data's
unit (`unit`, days by default), as are the horizons `days`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from marrow.data import TrialData
from marrow.time_units import SINGULAR

LEVEL = 0.95
RECOVERY_DAYS = (30.0, 90.0, 180.0)
COLUMNS = ["key", "label", "element", "estimate", "lower", "upper", "n", "events", "method", "flag", "working"]
CENSORED, RECOVERED, DIED = 0, 1, 2  # Aalen-Johansen event codes
AJ_SEED = 2017  # lifelines jitters tied event times; a fixed seed keeps the numbers reproducible
AJ_JITTER = 1e-7  # days; estimates are read just past each day, so ties at that day all count


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def _note(caught) -> str:
    text = "; ".join(dict.fromkeys(" ".join(str(w.message).split())[:90] for w in caught))
    return f"warning: {text}" if text else ""


def _day(day: float) -> str:
    return f"{day:g}"


def bounds(recovery: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) for lifelines' interval censoring: exact recoveries (day, day), visit intervals
    (day_lower, day_upper), not recovered (day, inf)."""
    day = recovery["day"].to_numpy(float)
    lower = recovery["day_lower"].to_numpy(float) if "day_lower" in recovery.columns else day.copy()
    upper = recovery["day_upper"].to_numpy(float) if "day_upper" in recovery.columns else day.copy()
    recovered = recovery["recovered"].to_numpy() == 1
    return np.where(recovered, lower, day), np.where(recovered, upper, np.inf)


def has_intervals(data: TrialData) -> bool:
    """True when some recovery row is interval-censored (recovered, day_lower < day_upper)."""
    if data.recovery is None or "day_lower" not in data.recovery.columns:
        return False
    lower, upper = bounds(data.recovery)
    return bool(np.any(np.isfinite(upper) & (lower < upper)))


# --- Turnbull ------------------------------------------------------------------------------------------

OPEN_LEFT = 1e-6  # days added to an interval's lower end: lifelines' NPMLE takes closed intervals


def turnbull(lower: np.ndarray, upper: np.ndarray):
    """Turnbull NPMLE of the cumulative incidence (lifelines' `npmle`, EM): (times, F lower bound,
    F upper bound) as right-continuous steps. An interval (L, R] is passed as [L + 1e-6, R], so a
    recovery seen at a visit is not put on the previous visit's day. The NPMLE is not unique
    inside its Turnbull intervals [a, b]: by day t the mass of those with b <= t has surely
    occurred (lower bound), that of those with a <= t possibly (upper bound); at visit days the two agree."""
    from lifelines.fitters.npmle import npmle

    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    left = np.where(lower < upper, lower + OPEN_LEFT, lower)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter of the EM; the estimate is checked in tests
        mass, intervals = npmle(left, upper)
    starts = np.array([i.left for i in intervals], dtype=float)
    ends = np.array([i.right for i in intervals], dtype=float)
    mass = np.asarray(mass, dtype=float)
    times = np.unique(np.concatenate([[0.0], starts[np.isfinite(starts)], ends[np.isfinite(ends)]]))
    f_low = np.array([mass[ends <= t].sum() for t in times])
    f_high = np.array([mass[starts <= t].sum() for t in times])
    return times, f_low, np.maximum(f_high, f_low)


def _turnbull_at(times, f_low, f_high, day: float) -> tuple[float, float]:
    """(F lower bound, F upper bound) at `day` (right-continuous steps)."""
    i = np.searchsorted(times, day, side="right") - 1
    return (float(f_low[i]), float(f_high[i])) if i >= 0 else (0.0, 0.0)


def turnbull_incidence(data: TrialData, days: tuple[float, ...] = RECOVERY_DAYS, unit: str = "days") -> pd.DataFrame:
    """Cumulative incidence of recovery by each day per lineage, all patients: the Turnbull estimate
    (interval-censored data only). Where the NPMLE is not unique its midpoint is given and the flag
    says so. lifelines gives no interval for it."""
    if not has_intervals(data):
        return _frame([])
    rec = data.recovery
    rows = []
    for lineage in data.lineages:
        mine = rec[rec["lineage"] == lineage]
        times, f_low, f_high = turnbull(*bounds(mine))
        for day in days:
            low, high = _turnbull_at(times, f_low, f_high, day)
            flag = "" if math.isclose(low, high, abs_tol=1e-6) else f"NPMLE not unique here: {low:.3f}-{high:.3f}"
            rows.append(
                {
                    "key": "recovered_by",
                    "label": f"Recovered by {SINGULAR[unit]} {_day(day)}, {lineage}",
                    "element": f"{lineage}, {_day(day)}",
                    "estimate": 0.5 * (low + high),
                    "lower": np.nan,
                    "upper": np.nan,
                    "working": "point",
                    "n": len(mine),
                    "events": int(mine["recovered"].sum()),
                    "method": "Turnbull NPMLE, interval-censored, all patients (no interval)",
                    "flag": flag,
                }
            )
    return _frame(rows)


# --- interval-censored parametric fits -----------------------------------------------------------------


def interval_weibull_medians(data: TrialData, level: float = LEVEL, unit: str = "days") -> pd.DataFrame:
    """Median days to recovery among responders per lineage: Weibull MLE with interval censoring
    (lifelines WeibullFitter.fit_interval_censoring); delta-method interval on the log median."""
    from lifelines import WeibullFitter
    from scipy.stats import norm

    if not has_intervals(data):
        return _frame([])
    table = data.recovery.merge(data.patients[["patient_id", "responder"]], on="patient_id", how="left")
    z = norm.ppf(0.5 + level / 2)
    rows = []
    for lineage in data.lineages:
        mine = table[(table["lineage"] == lineage) & (table["responder"] == 1)]
        if mine["recovered"].sum() < 2:
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitter = WeibullFitter(alpha=1 - level).fit_interval_censoring(*bounds(mine))
        lam, rho = float(fitter.lambda_), float(fitter.rho_)
        log_median = math.log(lam) + math.log(math.log(2.0)) / rho
        grad = np.array([1.0 / lam, -math.log(math.log(2.0)) / rho**2])
        cov = fitter.variance_matrix_.loc[["lambda_", "rho_"], ["lambda_", "rho_"]].to_numpy(float)
        se = float(np.sqrt(grad @ cov @ grad))
        rows.append(
            {
                "key": "median_days",
                "label": f"Median {unit} to recovery, {lineage}",
                "element": lineage,
                "estimate": math.exp(log_median),
                "lower": math.exp(log_median - z * se),
                "upper": math.exp(log_median + z * se),
                "n": len(mine),
                "events": int(mine["recovered"].sum()),
                "method": "Weibull MLE among responders, interval-censored (delta method)",
                "flag": _note(caught),
            }
        )
    return _frame(rows)


def interval_aft(data: TrialData, covariates: tuple[str, ...] | None = None, level: float = LEVEL) -> pd.DataFrame:
    """Time ratios among responders from an interval-censored Weibull AFT (lifelines
    WeibullAFTFitter.fit_interval_censoring), lineage-adjusted (lineage indicators)."""
    from lifelines import WeibullAFTFitter

    covariates = tuple(data.covariates if covariates is None else covariates)
    if not has_intervals(data) or not covariates:
        return _frame([])
    table = data.recovery.merge(data.patients[["patient_id", "responder", *covariates]], on="patient_id", how="left")
    responders = table[table["responder"] == 1].copy()
    lower, upper = bounds(responders)
    frame = pd.DataFrame({"lower": lower, "upper": upper})
    usable = [c for c in covariates if responders[c].nunique() > 1]
    for c in usable:
        frame[c] = responders[c].to_numpy(float)
    for lineage in list(data.lineages)[1:]:
        frame[f"_lineage_{lineage}"] = (responders["lineage"] == lineage).to_numpy(float)
    if not usable:
        return _frame([])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitter = WeibullAFTFitter(alpha=1 - level).fit_interval_censoring(frame, "lower", "upper")
    summary = fitter.summary.loc["lambda_"]
    rows = []
    for c in usable:
        row = summary.loc[c]
        lo = [k for k in row.index if k.startswith("exp(coef) lower")][0]
        hi = [k for k in row.index if k.startswith("exp(coef) upper")][0]
        rows.append(
            {
                "key": "time_ratio",
                "label": f"Time ratio, {c} (recovery, all lineages, interval-censored)",
                "element": c,
                "estimate": float(row["exp(coef)"]),
                "lower": float(row[lo]),
                "upper": float(row[hi]),
                "n": len(responders),
                "events": int(responders["recovered"].sum()),
                "method": "Weibull AFT MLE among responders, interval-censored, lineage-adjusted",
                "flag": _note(caught),
            }
        )
    return _frame(rows)


# --- death competing with recovery ---------------------------------------------------------------------


def has_deaths(data: TrialData) -> bool:
    patients = data.patients
    return (
        data.recovery is not None
        and {"followup_days", "died"} <= set(patients.columns)
        and not patients[["followup_days", "died"]].isna().any().any()
    )


def competing_events(data: TrialData, lineage: str) -> tuple[np.ndarray, np.ndarray]:
    """(time, event) of one lineage's rows: recovered (1) at its day; died before recovering (2) at the
    patient's followup_days when the row is censored at follow-up; otherwise censored (0) at its day.
    Visit intervals enter at their upper day."""
    rec = data.recovery[data.recovery["lineage"] == lineage]
    patients = data.patients.set_index("patient_id")
    follow = rec["patient_id"].map(patients["followup_days"]).to_numpy(float)
    died = rec["patient_id"].map(patients["died"]).to_numpy(int)
    day = rec["day"].to_numpy(float)
    recovered = rec["recovered"].to_numpy(int) == 1
    death_first = ~recovered & (died == 1) & (day >= follow)
    event = np.where(recovered, RECOVERED, np.where(death_first, DIED, CENSORED))
    return np.where(death_first, follow, day), event


def aalen_johansen(time: np.ndarray, event: np.ndarray, cause: int, level: float = LEVEL):
    """lifelines AalenJohansenFitter for `cause`: (fitter, warnings note). lifelines cannot take tied
    event times and moves them by up to `AJ_JITTER` days (seeded; numpy's global random state, which
    it reseeds, is restored afterwards)."""
    from lifelines import AalenJohansenFitter

    state = np.random.get_state()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitter = AalenJohansenFitter(alpha=1 - level, seed=AJ_SEED, jitter_level=AJ_JITTER).fit(
                time, event, event_of_interest=cause
            )
    finally:
        np.random.set_state(state)
    note = _note([w for w in caught if "Tied event times" not in str(w.message)])
    return fitter, note


def _aj_at(fitter, day: float) -> tuple[float, float, float]:
    cif = fitter.cumulative_density_
    band = fitter.confidence_interval_
    upto = cif.index <= day + 10 * AJ_JITTER
    if not upto.any():
        return 0.0, 0.0, 0.0
    i = np.flatnonzero(upto)[-1]
    return float(cif.iloc[i, 0]), float(band.iloc[i, 0]), float(band.iloc[i, 1])


def competing_incidence(
    data: TrialData, days: tuple[float, ...] = RECOVERY_DAYS, level: float = LEVEL, unit: str = "days"
) -> pd.DataFrame:
    """Per lineage and day: Aalen-Johansen cumulative incidence of recovery (`recovery_cif`) and of
    death before recovery (`death_before_recovery`), all patients, with lifelines' intervals."""
    if not has_deaths(data):
        return _frame([])
    rows = []
    for lineage in data.lineages:
        time, event = competing_events(data, lineage)
        one = SINGULAR[unit]
        for cause, key, what in (
            (RECOVERED, "recovery_cif", f"Recovered (death competing) by {one}"),
            (DIED, "death_before_recovery", f"Died before recovery by {one}"),
        ):
            if not (event == cause).any():
                continue
            fitter, note = aalen_johansen(time, event, cause, level)
            for day in days:
                estimate, lower, upper = _aj_at(fitter, day)
                rows.append(
                    {
                        "key": key,
                        "label": f"{what} {_day(day)}, {lineage}",
                        "element": f"{lineage}, {_day(day)}",
                        "estimate": estimate,
                        "lower": lower,
                        "upper": upper,
                        "n": len(time),
                        "events": int((event == cause).sum()),
                        "method": "Aalen-Johansen, all patients (lifelines; tied times jittered)",
                        "flag": note,
                    }
                )
    return _frame(rows)
