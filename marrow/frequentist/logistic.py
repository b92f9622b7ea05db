"""Covariate effects on response as odds ratios: logistic regression (Wald and profile-likelihood
intervals), GEE with exchangeable correlation within center, Fisher's exact test, and Firth's
penalised logistic regression when the data are separated.

`logistic_effects(data, covariates)` returns one tidy row per (covariate, method) with columns
`key` ("odds_ratio"), `label`, `element` (the covariate), `estimate`, `lower`, `upper`, `n`,
`p_value`, `method`, `flag`, `problem` (why a row is not estimable, '' if it is; judged with the
other rows by `marrow.frequentist.estimable`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marrow.data import TrialData

LEVEL = 0.95
COLUMNS = ["key", "label", "element", "estimate", "lower", "upper", "n", "p_value", "method", "flag", "problem"]


@dataclass(frozen=True)
class Separation:
    """Whether the responders can be (quasi-)completely separated by a linear combination of covariates."""

    separated: bool
    reason: str = ""


def _design(data: TrialData, covariates: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    patients = data.patients
    X = np.column_stack([np.ones(len(patients))] + [patients[c].to_numpy(dtype=float) for c in covariates])
    y = patients["responder"].to_numpy(dtype=float)
    return X, y, ("intercept",) + tuple(covariates)


def _is_binary(values: np.ndarray) -> bool:
    return set(np.unique(values)) <= {0.0, 1.0}


def detect_separation(X: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> Separation:
    """Complete or quasi-complete separation of 0/1 `y` by the columns of `X` (intercept first).

    First the readable cause: a level of a binary covariate with all or no responders. Then the
    general test of Konis (2007), a linear programme: the data are separated if and only if some
    beta gives s_i x_i' beta >= 0 for every patient (s_i = +1 responder, -1 not) with at least
    one strict inequality, i.e. the LP max sum_i s_i x_i' beta over that cone (|beta_j| <= 1)
    is positive.
    """
    from scipy.optimize import linprog

    reasons = []
    for j, name in enumerate(names):
        if j == 0 or not _is_binary(X[:, j]):
            continue
        for level in (1.0, 0.0):
            mine = X[:, j] == level
            if mine.any() and y[mine].min() == y[mine].max():
                outcome = "no responders" if y[mine].max() == 0 else "only responders"
                count = int(mine.sum())
                reasons.append(f"{name}={level:g}: {outcome} ({count} patient{'' if count == 1 else 's'})")
    s = np.where(y > 0, 1.0, -1.0)
    A = s[:, None] * X
    result = linprog(-A.sum(axis=0), A_ub=-A, b_ub=np.zeros(len(y)), bounds=[(-1, 1)] * X.shape[1], method="highs")
    lp_separated = bool(result.status == 0 and -result.fun > 1e-7)
    if reasons:
        return Separation(True, "; ".join(reasons))
    if lp_separated:
        return Separation(True, "a linear combination of covariates predicts response perfectly (LP test)")
    return Separation(False)


def logit_mle(X: np.ndarray, y: np.ndarray, names: tuple[str, ...]):
    """Plain maximum-likelihood logistic regression (statsmodels Logit). Warnings are returned, not raised."""
    import statsmodels.api as sm

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sm.Logit(y, pd.DataFrame(X, columns=list(names))).fit(disp=0, maxiter=200)
    return result, [str(w.message) for w in caught]


def profile_interval(
    X: np.ndarray, y: np.ndarray, j: int, mle: float, se: float, loglik: float, level: float = LEVEL
) -> tuple[float, float]:
    """Profile-likelihood interval of coefficient j of a logistic regression (log-odds).

    The profile log-likelihood at beta_j = b is the maximum over the other coefficients, fitted
    by statsmodels GLM (binomial) with b * x_j as an offset; the bounds are the roots, found
    with scipy's brentq, of 2 (l_max - l_profile(b)) = chi2_1(level). A side where no root is
    found within mle +/- 50 SE is returned as -inf or +inf.
    """
    import statsmodels.api as sm
    from scipy.optimize import brentq
    from scipy.stats import chi2

    others = np.delete(X, j, axis=1)
    threshold = chi2.ppf(level, 1) / 2.0

    def gap(b: float) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = sm.GLM(y, others, family=sm.families.Binomial(), offset=b * X[:, j]).fit()
        return loglik - fitted.llf - threshold

    bounds = []
    for direction in (-1.0, 1.0):
        inner, step = mle, max(se, 1e-3)
        outer = mle + direction * step
        found = float(direction * np.inf)
        while abs(outer - mle) <= 50 * max(se, 1e-3):
            if gap(outer) > 0:
                found = float(brentq(gap, min(inner, outer), max(inner, outer), xtol=1e-8))
                break
            inner, outer = outer, outer + direction * step
        bounds.append(found)
    return bounds[0], bounds[1]


def gee_logit(data: TrialData, covariates: tuple[str, ...]):
    """GEE logistic regression, exchangeable working correlation within center, robust (sandwich) SEs."""
    import statsmodels.api as sm

    X, y, names = _design(data, covariates)
    model = sm.GEE(
        y,
        pd.DataFrame(X, columns=list(names)),
        groups=data.patients["center"].to_numpy(),
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Exchangeable(),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = model.fit(maxiter=100)
    return result, [str(w.message) for w in caught]


def fisher_table(data: TrialData, covariate: str) -> np.ndarray:
    """2x2 table [[x=1 responders, x=1 non-responders], [x=0 responders, x=0 non-responders]]."""
    x = data.patients[covariate].to_numpy(dtype=float)
    y = data.patients["responder"].to_numpy(dtype=int)
    return np.array(
        [
            [np.sum((x == 1) & (y == 1)), np.sum((x == 1) & (y == 0))],
            [np.sum((x == 0) & (y == 1)), np.sum((x == 0) & (y == 0))],
        ]
    )


def fisher(data: TrialData, covariate: str, level: float = LEVEL) -> dict:
    """Fisher's exact test (two-sided p) with the conditional-MLE odds ratio and its exact interval
    (as R's fisher.test)."""
    from scipy.stats import fisher_exact
    from scipy.stats.contingency import odds_ratio

    table = fisher_table(data, covariate)
    _, p_value = fisher_exact(table, alternative="two-sided")
    conditional = odds_ratio(table, kind="conditional")
    ci = conditional.confidence_interval(confidence_level=level)
    return {
        "estimate": float(conditional.statistic),
        "lower": float(ci.low),
        "upper": float(ci.high),
        "p_value": float(p_value),
        "table": table,
    }


def _short(messages: list[str]) -> str:
    text = "; ".join(dict.fromkeys(m.split("\n")[0][:80] for m in messages))
    return f"warning: {text}" if text else ""


def logistic_effects(data: TrialData, covariates: tuple[str, ...] | None = None, level: float = LEVEL) -> pd.DataFrame:
    """Odds ratios per covariate by every method (see module docstring); empty without covariates."""
    from scipy.stats import norm

    covariates = tuple(data.covariates if covariates is None else covariates)
    if not covariates:
        return pd.DataFrame(columns=COLUMNS)
    X, y, names = _design(data, covariates)
    n = len(y)
    separation = detect_separation(X, y, names)
    rows = []

    def add(
        covariate: str, estimate, lower, upper, method: str, flag: str = "", p_value=np.nan, problem: str = ""
    ) -> None:
        rows.append(
            {
                "key": "odds_ratio",
                "label": f"Odds ratio, {covariate}",
                "element": covariate,
                "estimate": estimate,
                "lower": lower,
                "upper": upper,
                "n": n,
                "p_value": p_value,
                "method": method,
                "flag": flag,
                "problem": problem,
            }
        )

    z = norm.ppf(0.5 + level / 2)
    if separation.separated:
        from marrow.frequentist.firth import firth_logit

        firth = firth_logit(X, y, names, level)
        # Penalised likelihood-ratio p-values, as logistf reports them.
        flag = f"separation: Firth used ({separation.reason})"
        for j, covariate in enumerate(covariates, start=1):
            add(
                covariate,
                float(np.exp(firth.coef[j])),
                float(np.exp(firth.lower[j])),
                float(np.exp(firth.upper[j])),
                "Firth penalised logistic, profile penalised likelihood",
                flag,
                _firth_p(X, y, firth, j),
            )
    else:
        result, messages = logit_mle(X, y, names)
        note = _short(messages)
        problem = "" if result.mle_retvals.get("converged", True) else "optimiser did not converge"
        params, bse = np.asarray(result.params), np.asarray(result.bse)
        pvalues = np.asarray(result.pvalues)
        for j, covariate in enumerate(covariates, start=1):
            add(
                covariate,
                float(np.exp(params[j])),
                float(np.exp(params[j] - z * bse[j])),
                float(np.exp(params[j] + z * bse[j])),
                "logistic regression (Logit), Wald",
                note,
                float(pvalues[j]),
                problem,
            )
            low, high = profile_interval(X, y, j, params[j], bse[j], float(result.llf), level)
            lr = _lr_p(X, y, j, float(result.llf))
            add(
                covariate,
                float(np.exp(params[j])),
                float(np.exp(low)),
                float(np.exp(high)),
                "logistic regression (Logit), profile likelihood",
                note,
                lr,
                problem,
            )
    n_centers = data.patients["center"].nunique()
    if separation.separated:
        for covariate in covariates:
            add(
                covariate,
                np.nan,
                np.nan,
                np.nan,
                "GEE logistic, exchangeable within center, robust SE",
                problem="separation: no finite estimate",
            )
    elif n_centers > 1:
        result, messages = gee_logit(data, covariates)
        gee_problem = "optimiser did not converge" if any("converge" in m.lower() for m in messages) else ""
        params, bse, pvalues = np.asarray(result.params), np.asarray(result.bse), np.asarray(result.pvalues)
        few = f"few clusters ({n_centers})" if n_centers < 10 else ""
        for j, covariate in enumerate(covariates, start=1):
            flag = "; ".join(f for f in (few, _short(messages)) if f)
            add(
                covariate,
                float(np.exp(params[j])),
                float(np.exp(params[j] - z * bse[j])),
                float(np.exp(params[j] + z * bse[j])),
                "GEE logistic, exchangeable within center, robust SE",
                flag,
                float(pvalues[j]),
                gee_problem,
            )
    for j, covariate in enumerate(covariates, start=1):
        if not _is_binary(X[:, j]):
            continue
        result = fisher(data, covariate, level)
        add(
            covariate,
            result["estimate"],
            result["lower"],
            result["upper"],
            f"Fisher exact test (conditional MLE, unadjusted), p = {result['p_value']:.3g}",
            "",
            result["p_value"],
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _lr_p(X: np.ndarray, y: np.ndarray, j: int, loglik: float) -> float:
    """Likelihood-ratio p-value for coefficient j = 0."""
    import statsmodels.api as sm
    from scipy.stats import chi2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reduced = sm.GLM(y, np.delete(X, j, axis=1), family=sm.families.Binomial()).fit()
    return float(chi2.sf(max(2 * (loglik - reduced.llf), 0.0), 1))


def _firth_p(X: np.ndarray, y: np.ndarray, firth, j: int) -> float:
    """Penalised likelihood-ratio p-value for coefficient j = 0 (logistf's test)."""
    from scipy.stats import chi2

    from marrow.frequentist.firth import maximise_penalized

    free = np.ones(X.shape[1], dtype=bool)
    free[j] = False
    start = firth.coef.copy()
    start[j] = 0.0
    _, value, _, _ = maximise_penalized(X, y, start, free)
    return float(chi2.sf(max(2 * (firth.penalized_loglik - value), 0.0), 1))
