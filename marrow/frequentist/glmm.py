"""Random-intercept logistic regression by maximum likelihood with adaptive Gauss-Hermite quadrature.

The frequentist fit of marrow's hierarchical response model itself, lme4's
`glmer(cbind(y, n - y) ~ x + (1 | center), family = binomial, nAGQ = k)`:

    y_j ~ Binomial(n_j, logistic(x_j' beta + b_c(j))),   b_c ~ Normal(0, sd^2),

over binomial cells j (one per center and covariate pattern). The marginal log-likelihood is a sum
over centers of log integral exp(h_c(b)) db, with h_c(b) = sum_j log Binomial(y_j | n_j, p_j(b)) +
log Normal(b | 0, sd). Each integral is taken by adaptive Gauss-Hermite quadrature: centred at the
mode b_c of h_c and scaled by s_c = (-h_c''(b_c))^(-1/2),

    integral ~= sqrt(2) s_c sum_k w_k exp(x_k^2) exp(h_c(b_c + sqrt(2) s_c x_k))

(x_k, w_k from numpy's `hermgauss`); one node is the Laplace approximation (lme4's nAGQ = 1). The
log-likelihood includes the binomial coefficients, as lme4's `logLik` does. No Python library
fits GLMMs by AGQ (statsmodels has only variational Bayes mixed GLMs), hence this module: pure
numpy/scipy, no PyMC. Estimates maximise over (beta, log sd) with scipy's BFGS; standard errors
come from the inverse numerical Hessian (statsmodels `approx_hess3`) and the sd's Wald interval is
taken on the log-sd scale. An sd that runs to 0 is a boundary fit (lme4's "singular fit"): the
fixed effects are then those of the plain logistic regression and the sd has no interval.

The optimiser works on centred, sd-scaled covariate columns (z = (x - mean) / sd): uncentred
covariates (age ~ 47) make intercept and slope nearly collinear and the optimiser stalls. The
estimates, their covariance (by the linear map back, which is the delta method exactly) and
intervals are reported in the original, uncentred parameterisation, as glmer reports them; the
log-likelihood and center sd do not depend on it. Convergence is judged on the scaled problem.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import expit, gammaln

from marrow.formatting import plural

LEVEL = 0.95
DEFAULT_NODES = 25  # lme4's maximum for a scalar random effect
BOUNDARY_SD = 1e-4  # below this the center sd is at the boundary (0)
GRADIENT_TOLERANCE = 1e-3  # max |d loglik / d theta| at a converged optimum


@dataclass(frozen=True)
class BinomialCells:
    """Binomial counts per cell: `successes` of `trials`, design row `X` (intercept first), `group` index."""

    successes: np.ndarray
    trials: np.ndarray
    X: np.ndarray
    group: np.ndarray
    names: tuple[str, ...]
    groups: tuple[str, ...]

    @property
    def log_choose(self) -> float:
        n, y = self.trials, self.successes
        return float(np.sum(gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)))


@dataclass(frozen=True)
class GLMMFit:
    """The MLE: `coef` (log-odds, intercept first) with `se` and `covariance`, the center sd with
    `log_sd_se`, and checks."""

    names: tuple[str, ...]
    coef: np.ndarray
    se: np.ndarray
    covariance: np.ndarray  # of coef
    sd: float
    log_sd_se: float
    loglik: float
    nodes: int
    converged: bool
    hessian_pd: bool
    boundary: bool
    message: str

    def interval(self, j: int, level: float = LEVEL) -> tuple[float, float]:
        """Wald interval of coefficient j (log-odds)."""
        z = _z(level)
        return float(self.coef[j] - z * self.se[j]), float(self.coef[j] + z * self.se[j])

    def sd_interval(self, level: float = LEVEL) -> tuple[float, float]:
        """Wald interval of the center sd on the log-sd scale (NaN at the boundary)."""
        if self.boundary or not np.isfinite(self.log_sd_se):
            return math.nan, math.nan
        z = _z(level)
        return float(self.sd * math.exp(-z * self.log_sd_se)), float(self.sd * math.exp(z * self.log_sd_se))


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def cells_from_frame(
    frame, group: str, successes: str, trials: str | None, covariates: tuple[str, ...]
) -> BinomialCells:
    """Aggregate a table into binomial cells per (group, covariate pattern).

    `successes` is a 0/1 column (one row per patient) when `trials` is None, else a count with
    `trials` the number of trials per row (as cbind(incidence, size - incidence) in R)."""
    import pandas as pd

    work = pd.DataFrame(
        {
            "_group": frame[group].astype(str).to_numpy(),
            "_y": frame[successes].to_numpy(dtype=float),
            "_n": 1.0 if trials is None else frame[trials].to_numpy(dtype=float),
        }
    )
    for c in covariates:
        work[c] = frame[c].to_numpy(dtype=float)
    keys = ["_group", *covariates]
    cells = work.groupby(keys, sort=True, as_index=False)[["_y", "_n"]].sum()
    groups = tuple(sorted(work["_group"].unique()))
    lookup = {g: i for i, g in enumerate(groups)}
    X = np.column_stack([np.ones(len(cells))] + [cells[c].to_numpy(dtype=float) for c in covariates])
    return BinomialCells(
        cells["_y"].to_numpy(),
        cells["_n"].to_numpy(),
        X,
        cells["_group"].map(lookup).to_numpy(dtype=np.int64),
        ("intercept", *covariates),
        groups,
    )


def cells_from_trial(data, covariates: tuple[str, ...]) -> BinomialCells:
    """Responders per (center, covariate pattern) of a TrialData (its `responder` column)."""
    return cells_from_frame(data.patients, "center", "responder", None, tuple(covariates))


# --- the integrand and its modes ---------------------------------------------------------------------


def _group_sum_matrix(cells: BinomialCells):
    """Sparse (group, cell) indicator: its product with a (cell, ...) array sums cells by group."""
    from scipy.sparse import csr_matrix

    n = len(cells.group)
    return csr_matrix((np.ones(n), (cells.group, np.arange(n))), shape=(len(cells.groups), n))


def _conditional(eta: np.ndarray, cells: BinomialCells) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell: binomial log-likelihood (without the coefficient), its first and (negative) second
    derivative in eta."""
    y, n = cells.successes, cells.trials
    if eta.ndim == 2:
        y, n = y[:, None], n[:, None]
    loglik = y * eta - n * np.logaddexp(0.0, eta)
    p = expit(eta)
    return loglik, y - n * p, n * p * (1.0 - p)


def _by_group(values: np.ndarray, cells: BinomialCells) -> np.ndarray:
    return np.bincount(cells.group, weights=values, minlength=len(cells.groups))


def log_integrand(b: np.ndarray, beta: np.ndarray, sd: float, cells: BinomialCells) -> np.ndarray:
    """h_c(b_c) per group (binomial coefficients excluded): sum of cell log-likelihoods + log N(b | 0, sd)."""
    return _log_integrand(b, cells.X @ beta, sd, cells)


def _log_integrand(b: np.ndarray, base: np.ndarray, sd: float, cells: BinomialCells) -> np.ndarray:
    loglik, _, _ = _conditional(base + b[cells.group], cells)
    return _by_group(loglik, cells) - 0.5 * (b / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)


def group_modes(
    beta: np.ndarray, sd: float, cells: BinomialCells, tol: float = 1e-10, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """(mode b_c, curvature -h_c''(b_c)) of every group, by Newton's method with step halving
    (h_c is strictly concave: -h'' >= 1/sd^2)."""
    b = np.zeros(len(cells.groups))
    base = cells.X @ beta
    current = _log_integrand(b, base, sd, cells)
    for _ in range(max_iter):
        _, score, info = _conditional(base + b[cells.group], cells)
        step = (_by_group(score, cells) - b / sd**2) / (_by_group(info, cells) + 1.0 / sd**2)
        if np.max(np.abs(step)) < tol:
            break
        proposal = _log_integrand(b + step, base, sd, cells)
        for _ in range(60):
            worse = proposal < current - 1e-9 * (1.0 + np.abs(current))
            if not worse.any():
                break
            step = np.where(worse, step / 2, step)
            proposal = _log_integrand(b + step, base, sd, cells)
        b, current = b + step, proposal
    _, _, info = _conditional(base + b[cells.group], cells)
    return b, _by_group(info, cells) + 1.0 / sd**2


def marginal_loglik(beta: np.ndarray, sd: float, cells: BinomialCells, nodes: int = DEFAULT_NODES) -> float:
    """log L(beta, sd) by adaptive Gauss-Hermite quadrature with `nodes` points per center (1 = Laplace)."""
    from scipy.special import logsumexp

    beta = np.asarray(beta, dtype=float)
    if sd <= 0:
        loglik, _, _ = _conditional(cells.X @ beta, cells)
        return float(loglik.sum() + cells.log_choose)
    mode, curvature = group_modes(beta, sd, cells)
    scale = 1.0 / np.sqrt(curvature)
    x, w = np.polynomial.hermite.hermgauss(nodes)
    points = mode[:, None] + math.sqrt(2.0) * scale[:, None] * x[None, :]  # (group, node)
    eta = (cells.X @ beta)[:, None] + points[cells.group]  # (cell, node)
    loglik, _, _ = _conditional(eta, cells)
    h = _group_sum_matrix(cells) @ loglik - 0.5 * (points / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)
    per_group = np.log(math.sqrt(2.0) * scale) + logsumexp(np.log(w)[None, :] + x[None, :] ** 2 + h, axis=1)
    return float(per_group.sum() + cells.log_choose)


# --- the fit -----------------------------------------------------------------------------------------


def _start(cells: BinomialCells) -> np.ndarray:
    rate = np.clip(cells.successes.sum() / cells.trials.sum(), 0.01, 0.99)
    start = np.zeros(cells.X.shape[1] + 1)
    start[0] = math.log(rate / (1 - rate))
    start[-1] = math.log(0.5)
    return start


def _optimise(objective, start: np.ndarray, bounds=None):
    """Minimise with L-BFGS-B (bounds keep log sd finite, so a boundary fit stops quickly), then a
    BFGS polish from there when the optimum is interior."""
    from scipy.optimize import minimize

    with warnings.catch_warnings(), np.errstate(over="ignore", under="ignore"):
        warnings.simplefilter("ignore")
        result = minimize(
            objective, start, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000}
        )
        at_bound = bounds is not None and any(
            b[0] is not None and x <= b[0] + 1e-6 for x, b in zip(result.x, bounds, strict=True)
        )
        if not at_bound:
            result = minimize(objective, result.x, method="BFGS", options={"gtol": 1e-8, "maxiter": 1000})
    return result


def _hessian(objective, theta: np.ndarray) -> tuple[np.ndarray, bool]:
    """Covariance (inverse Hessian of the negative log-likelihood) and whether the Hessian is positive definite."""
    from statsmodels.tools.numdiff import approx_hess3

    with warnings.catch_warnings(), np.errstate(over="ignore", under="ignore"):
        warnings.simplefilter("ignore")
        hessian = approx_hess3(theta, objective)
    try:
        np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:
        return np.full_like(hessian, np.nan), False
    return np.linalg.inv(hessian), True


def _max_gradient(objective, theta: np.ndarray) -> float:
    from scipy.optimize import approx_fprime

    with np.errstate(over="ignore", under="ignore"):
        return float(np.max(np.abs(approx_fprime(theta, objective, 1e-6))))


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Z, T): X with its covariate columns (all but the intercept, column 0) centred and divided by
    their sd, and the map T taking coefficients gamma on Z to beta on X (X beta = Z gamma, beta = T gamma).
    Constant columns are left as they are."""
    mean, sd = X[:, 1:].mean(axis=0), X[:, 1:].std(axis=0)
    constant = ~(sd > 0)
    mean, sd = np.where(constant, 0.0, mean), np.where(constant, 1.0, sd)
    T = np.eye(X.shape[1])
    T[0, 1:] = -mean / sd
    T[1:, 1:] = np.diag(1.0 / sd)
    return np.column_stack([X[:, 0], (X[:, 1:] - mean) / sd]), T


def fit_glmm(cells: BinomialCells, nodes: int = DEFAULT_NODES) -> GLMMFit:
    """Maximum-likelihood fit of the random-intercept logistic model (see module docstring): optimised
    on standardised covariates, reported in the original parameterisation."""
    if nodes < 1:
        raise ValueError("nodes must be >= 1")
    p = cells.X.shape[1]
    Z, T = _standardise(cells.X)
    cells = replace(cells, X=Z)

    def negative(theta: np.ndarray) -> float:
        value = marginal_loglik(theta[:p], math.exp(theta[p]), cells, nodes)
        return -value if np.isfinite(value) else 1e300

    def negative_fixed(beta: np.ndarray) -> float:
        value = marginal_loglik(beta, 0.0, cells)
        return -value if np.isfinite(value) else 1e300

    start = _start(cells)
    fixed = _optimise(negative_fixed, start[:p])
    start[:p] = fixed.x
    bounds = [(None, None)] * p + [(math.log(BOUNDARY_SD / 10), math.log(100.0))]
    result = _optimise(negative, start, bounds)
    boundary = math.exp(result.x[p]) < BOUNDARY_SD or -fixed.fun >= -result.fun - 1e-8
    if boundary:
        theta, objective, loglik = fixed.x, negative_fixed, -fixed.fun
    else:
        theta, objective, loglik = result.x, negative, -result.fun
    covariance, positive = _hessian(objective, theta)
    gradient = _max_gradient(objective, theta)
    converged = bool(np.isfinite(loglik) and gradient < GRADIENT_TOLERANCE)
    # Back to the original parameterisation: beta = T gamma, Cov(beta) = T Cov(gamma) T'; log sd as is.
    full = np.eye(len(theta))
    full[:p, :p] = T
    theta, covariance = full @ theta, full @ covariance @ full.T
    se = np.sqrt(np.where(np.diag(covariance) > 0, np.diag(covariance), np.nan))
    messages = []
    if not converged:
        messages.append(f"optimiser did not converge (max |gradient| {gradient:.2g})")
    if not positive:
        messages.append("Hessian not positive definite")
    if boundary:
        messages.append("center sd at the boundary (0): fixed effects are the plain logistic regression's")
    return GLMMFit(
        names=cells.names,
        coef=np.asarray(theta[:p], dtype=float),
        se=se[:p],
        covariance=covariance[:p, :p],
        sd=0.0 if boundary else math.exp(theta[p]),
        log_sd_se=math.nan if boundary else float(se[p]),
        loglik=float(loglik),
        nodes=nodes,
        converged=converged,
        hessian_pd=positive,
        boundary=bool(boundary),
        message="; ".join(messages),
    )


# --- rows for `marrow compare` -----------------------------------------------------------------------


def _exp(value: float) -> float:
    """exp without overflow (inf beyond float range, NaN kept): separated fits run to huge coefficients."""
    return math.nan if math.isnan(value) else (math.inf if value > 709 else math.exp(value))


ROW_COLUMNS = [
    "key",
    "label",
    "element",
    "estimate",
    "lower",
    "upper",
    "se",
    "n",
    "method",
    "flag",
    "problem",
    "working",
]


def glmm_rows(data, covariates: tuple[str, ...] = (), nodes: int = DEFAULT_NODES, level: float = LEVEL):
    """Intercept, coefficients (log-odds and odds ratios) and center sd of the random-intercept
    logistic MLE on the response, for `marrow compare`; empty with fewer than two centers or without
    a `responder` column. Covariates are reported uncentred, as marrow's response model uses them
    (the fit standardises them internally)."""
    import pandas as pd

    patients = data.patients
    if "responder" not in patients.columns or patients["center"].nunique() < 2:
        return pd.DataFrame(columns=ROW_COLUMNS)
    from marrow.frequentist.logistic import detect_separation

    usable = tuple(c for c in covariates if patients[c].nunique() > 1)
    n = len(patients)
    rows = []
    method = (
        f"random-intercept logistic MLE, adaptive Gauss-Hermite ({plural(nodes, 'node')}; glmer nAGQ = {nodes}), Wald"
    )
    X = np.column_stack([np.ones(n)] + [patients[c].to_numpy(dtype=float) for c in usable])
    separation = detect_separation(X, patients["responder"].to_numpy(dtype=float), ("intercept", *usable))
    if separation.separated:
        # The marginal likelihood then increases without bound along the separating direction: no MLE.
        problem = f"separation: no finite MLE ({separation.reason})"
        labels = [("intercept", "Intercept (log-odds)", "")] + [
            item
            for c in usable
            for item in (("beta", f"Coefficient (log-odds), {c}", c), ("odds_ratio", f"Odds ratio, {c}", c))
        ]
        for key, label, element in labels + [("center_sd", "Center sd (log-odds)", "")]:
            rows.append(
                {
                    "key": key,
                    "label": label,
                    "element": element,
                    "estimate": math.nan,
                    "lower": math.nan,
                    "upper": math.nan,
                    "se": math.nan,
                    "n": n,
                    "method": method,
                    "flag": "",
                    "problem": problem,
                    "working": None,
                }
            )
        return pd.DataFrame(rows, columns=ROW_COLUMNS)
    fit = fit_glmm(cells_from_trial(data, usable), nodes)
    if not fit.boundary:
        method += " (log sd)"
    shared = "; ".join(
        m
        for m in (
            ("" if fit.converged else "optimiser did not converge"),
            ("" if fit.hessian_pd else "Hessian not positive definite"),
        )
        if m
    )

    def add(key, label, element, estimate, lower, upper, se, working, problem=shared):
        rows.append(
            {
                "key": key,
                "label": label,
                "element": element,
                "estimate": estimate,
                "lower": lower,
                "upper": upper,
                "se": se,
                "n": n,
                "method": method,
                "flag": "",
                "problem": problem,
                "working": working,
            }
        )

    low, high = fit.interval(0, level)
    add("intercept", "Intercept (log-odds)", "", float(fit.coef[0]), low, high, float(fit.se[0]), "identity")
    for j, covariate in enumerate(usable, start=1):
        low, high = fit.interval(j, level)
        add(
            "beta",
            f"Coefficient (log-odds), {covariate}",
            covariate,
            float(fit.coef[j]),
            low,
            high,
            float(fit.se[j]),
            "identity",
        )
        add(
            "odds_ratio",
            f"Odds ratio, {covariate}",
            covariate,
            _exp(fit.coef[j]),
            _exp(low),
            _exp(high),
            math.nan,
            "log",
        )
    low, high = fit.sd_interval(level)
    boundary = "center sd at the boundary (0)" if fit.boundary else ""
    add(
        "center_sd",
        "Center sd (log-odds)",
        "",
        fit.sd,
        low,
        high,
        fit.log_sd_se,
        "log",
        "; ".join(m for m in (shared, boundary) if m),
    )
    return pd.DataFrame(rows, columns=ROW_COLUMNS)
