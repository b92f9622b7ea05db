"""Firth's penalised logistic regression (Jeffreys-prior penalty), with profile penalised-likelihood intervals.

statsmodels has no Firth estimator, so this is a compact numpy/scipy implementation of
Heinze & Schemper (2002), the method of R's `logistf`:

    l*(beta) = l(beta) + 0.5 * log det I(beta),   I(beta) = X' W X,  W = diag(p (1 - p)).

Its gradient is Firth's modified score U*_r = sum_i x_ir (y_i - p_i + h_i (0.5 - p_i)), h_i the
diagonal of the hat matrix W^1/2 X I^-1 X' W^1/2. It is maximised by Newton steps with I(beta) as
the curvature and step halving whenever l* does not increase. The estimate is finite even under
complete or quasi-complete separation.

Intervals are profile penalised-likelihood intervals (logistf's default): the values b of one
coefficient where 2 (l*(beta_hat) - max_{beta: beta_j = b} l*(beta)) = chi2_1(0.95). The
constrained maximum keeps the penalty of the full design and updates only the free coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ITER = 100
TOL = 1e-9


@dataclass(frozen=True)
class FirthResult:
    """Fitted Firth model: coefficients (log-odds), Wald SEs, profile intervals, maximised penalised log-likelihood."""

    names: tuple[str, ...]
    coef: np.ndarray
    se: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    penalized_loglik: float
    iterations: int
    converged: bool


def penalized_loglik(beta: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """l(beta) + 0.5 log det(X' W X) for a logistic model (natural log units)."""
    eta = X @ beta
    # log p = -log(1 + e^-eta), log(1 - p) = -log(1 + e^eta): stable for large |eta|.
    loglik = float(np.sum(-y * np.logaddexp(0.0, -eta) - (1 - y) * np.logaddexp(0.0, eta)))
    p = 1.0 / (1.0 + np.exp(-eta))
    w = p * (1.0 - p)
    sign, logdet = np.linalg.slogdet(X.T @ (X * w[:, None]))
    if sign <= 0:
        return -np.inf
    return loglik + 0.5 * logdet


def maximise_penalized(
    X: np.ndarray, y: np.ndarray, start: np.ndarray, free: np.ndarray
) -> tuple[np.ndarray, float, int, bool]:
    """Maximise l* over the coefficients flagged in `free`, the others held at their `start` values."""
    beta = start.astype(float).copy()
    current = penalized_loglik(beta, X, y)
    for iteration in range(1, MAX_ITER + 1):
        p = 1.0 / (1.0 + np.exp(-(X @ beta)))
        w = p * (1.0 - p)
        info = X.T @ (X * w[:, None])
        info_inv = np.linalg.pinv(info)
        # Hat diagonal h_i = w_i x_i' I^-1 x_i (full design, also when some coefficients are fixed).
        h = w * np.einsum("ij,jk,ik->i", X, info_inv, X)
        score = X.T @ (y - p + h * (0.5 - p))
        if not free.any():
            return beta, current, iteration, True
        sub = info[np.ix_(free, free)]
        step = np.zeros_like(beta)
        step[free] = np.linalg.solve(sub, score[free])
        # Cap the step as logistf does (maxstep), then halve until l* does not decrease.
        largest = np.max(np.abs(step))
        if largest > 5.0:
            step *= 5.0 / largest
        for _ in range(30):
            candidate = beta + step
            value = penalized_loglik(candidate, X, y)
            if value >= current - 1e-12:
                break
            step /= 2.0
        beta, previous, current = candidate, current, value
        if np.max(np.abs(step)) < TOL and abs(current - previous) < TOL:
            return beta, current, iteration, True
        if np.max(np.abs(score[free])) < TOL:
            return beta, current, iteration, True
    return beta, current, MAX_ITER, False


def _profile_bound(X, y, beta_hat, target, j, direction, se) -> float:
    """The value of coefficient j, on one side of its estimate, where the profile l* drops to `target`."""
    from scipy.optimize import brentq

    free = np.ones(len(beta_hat), dtype=bool)
    free[j] = False
    warm = {"beta": beta_hat.copy()}

    def gap(b: float) -> float:
        start = warm["beta"].copy()
        start[j] = b
        beta, value, _, _ = maximise_penalized(X, y, start, free)
        warm["beta"] = beta
        return value - target

    scale = se if np.isfinite(se) and se > 0 else 1.0
    inner = beta_hat[j]
    outer = inner + direction * scale
    for _ in range(60):
        if gap(outer) < 0:
            warm["beta"] = beta_hat.copy()
            return float(brentq(gap, min(inner, outer), max(inner, outer), xtol=1e-8))
        inner, outer = outer, outer + direction * scale
        scale *= 1.5
    return float(direction * np.inf)


def firth_logit(X: np.ndarray, y: np.ndarray, names: tuple[str, ...] | None = None, level: float = 0.95) -> FirthResult:
    """Firth logistic regression of 0/1 `y` on design `X` (include an intercept column yourself).

    Returns log-odds coefficients with Wald SEs from the inverse of I(beta_hat) and profile
    penalised-likelihood intervals at `level`.
    """
    from scipy.stats import chi2

    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    k = X.shape[1]
    names = tuple(names) if names is not None else tuple(f"x{j}" for j in range(k))
    free = np.ones(k, dtype=bool)
    beta, value, iterations, converged = maximise_penalized(X, y, np.zeros(k), free)
    p = 1.0 / (1.0 + np.exp(-(X @ beta)))
    cov = np.linalg.pinv(X.T @ (X * (p * (1 - p))[:, None]))
    se = np.sqrt(np.diag(cov))
    target = value - chi2.ppf(level, 1) / 2.0
    lower = np.array([_profile_bound(X, y, beta, target, j, -1.0, se[j]) for j in range(k)])
    upper = np.array([_profile_bound(X, y, beta, target, j, +1.0, se[j]) for j in range(k)])
    return FirthResult(names, beta, se, lower, upper, value, iterations, converged)
