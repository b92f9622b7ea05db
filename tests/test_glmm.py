"""The random-intercept logistic MLE (adaptive Gauss-Hermite) against independent computations and lme4.

No sampling: the quadrature is checked against a separately written Laplace approximation, scipy's
adaptive `quad` per center and 200-point non-adaptive Gauss-Hermite; the fit against lme4's
published cbpp estimates.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize
from scipy.special import gammaln, logsumexp

from marrow.frequentist import glmm

CBPP = Path(__file__).parent / "data" / "cbpp.csv"
# lme4's documented fit: glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), binomial, cbpp)
LME4_LAPLACE = {"intercept": -1.3983, "period2": -0.9919, "period3": -1.1282, "period4": -1.5797, "sd": 0.6421}


@pytest.fixture(scope="module")
def cbpp() -> glmm.BinomialCells:
    frame = pd.read_csv(CBPP)
    assert len(frame) == 56 and frame["herd"].nunique() == 15
    for level in (2, 3, 4):
        frame[f"period{level}"] = (frame["period"] == level).astype(float)
    return glmm.cells_from_frame(frame, "herd", "incidence", "size", ("period2", "period3", "period4"))


@pytest.fixture(scope="module")
def fits(cbpp):
    return {nodes: glmm.fit_glmm(cbpp, nodes) for nodes in (1, 25)}


def _log_binomial(cells, eta):
    """log Binomial(y | n, logistic(eta)) per cell (eta may have a trailing node axis), by its formula."""
    y, n = cells.successes, cells.trials
    if np.ndim(eta) == 2:
        y, n = y[:, None], n[:, None]
    choose = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
    return choose + y * eta - n * np.log1p(np.exp(eta))


def _group_integrand(cells, beta, sd, g):
    """log of center g's integrand, b -> sum log Binomial + log Normal(b | 0, sd)."""
    mine = cells.group == g
    y, n, base = cells.successes[mine], cells.trials[mine], cells.X[mine] @ beta
    choose = float(np.sum(gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)))
    log_norm = -math.log(sd) - 0.5 * math.log(2 * math.pi)

    def log_h(b: float) -> float:
        eta = base + b
        return choose + float(np.sum(y * eta - n * np.log1p(np.exp(eta)))) - 0.5 * (b / sd) ** 2 + log_norm

    return log_h


def laplace_loglik(cells, beta, sd) -> float:
    """Laplace approximation written independently: scalar mode by scipy, curvature by finite differences."""
    total = 0.0
    for g in range(len(cells.groups)):
        log_h = _group_integrand(cells, beta, sd, g)
        mode = optimize.minimize_scalar(
            lambda b, log_h=log_h: -log_h(b),
            bounds=(-10 * sd - 5, 10 * sd + 5),
            method="bounded",
            options={"xatol": 1e-10},
        ).x
        step = 1e-4
        curvature = -(log_h(mode + step) - 2 * log_h(mode) + log_h(mode - step)) / step**2
        total += log_h(mode) + 0.5 * math.log(2 * math.pi / curvature)
    return total


def quad_loglik(cells, beta, sd) -> float:
    """Brute force: scipy's adaptive quadrature of each center's integral (scaled by its maximum)."""
    total = 0.0
    for g in range(len(cells.groups)):
        log_h = _group_integrand(cells, beta, sd, g)
        peak = -optimize.minimize_scalar(lambda b, log_h=log_h: -log_h(b), bounds=(-10, 10), method="bounded").fun
        value, _ = integrate.quad(
            lambda b, log_h=log_h, peak=peak: math.exp(log_h(b) - peak),
            -12 * sd - 5,
            12 * sd + 5,
            epsabs=0,
            epsrel=1e-12,
            limit=400,
        )
        total += peak + math.log(value)
    return total


def plain_gh_loglik(cells, beta, sd, nodes=200) -> float:
    """Non-adaptive Gauss-Hermite: b = sqrt(2) sd x, integral = sum_k w_k L(b_k) / sqrt(pi)."""
    x, w = np.polynomial.hermite.hermgauss(nodes)
    per_cell = _log_binomial(cells, (cells.X @ beta)[:, None] + math.sqrt(2) * sd * x[None, :])  # (cell, node)
    per_group = np.stack([per_cell[cells.group == g].sum(axis=0) for g in range(len(cells.groups))])
    return float(np.sum(logsumexp(per_group + np.log(w)[None, :], axis=1) - 0.5 * math.log(math.pi)))


def test_published_lme4_cbpp_estimates(fits):
    laplace = fits[1]
    assert laplace.converged and laplace.hessian_pd and not laplace.boundary
    for j, name in enumerate(("intercept", "period2", "period3", "period4")):
        assert laplace.coef[j] == pytest.approx(LME4_LAPLACE[name], abs=1e-3), name
    assert laplace.sd == pytest.approx(LME4_LAPLACE["sd"], abs=1e-3)
    assert laplace.loglik == pytest.approx(-92.03, abs=0.01)  # lme4: logLik -92.03 (AIC 194.1)
    # 25-node AGQ moves the estimates a little (the Laplace approximation is good here, not exact).
    agq = fits[25]
    assert 1e-4 < abs(agq.coef[0] - laplace.coef[0]) < 0.01 and agq.sd > laplace.sd


def test_quadrature_against_independent_computations(cbpp, fits):
    beta, sd = fits[25].coef, fits[25].sd
    exact = quad_loglik(cbpp, beta, sd)
    assert glmm.marginal_loglik(beta, sd, cbpp, 25) == pytest.approx(exact, abs=1e-6)
    assert plain_gh_loglik(cbpp, beta, sd) == pytest.approx(exact, abs=1e-6)
    # nodes = 1 is the Laplace approximation, written separately; it is not the exact integral.
    assert glmm.marginal_loglik(beta, sd, cbpp, 1) == pytest.approx(laplace_loglik(cbpp, beta, sd), abs=1e-6)
    assert abs(glmm.marginal_loglik(beta, sd, cbpp, 1) - exact) > 1e-3
    # sd = 0: the plain binomial log-likelihood.
    assert glmm.marginal_loglik(beta, 0.0, cbpp) == pytest.approx(
        float(np.sum(_log_binomial(cbpp, cbpp.X @ beta))), abs=1e-9
    )


def test_mle_maximises_the_exact_likelihood(cbpp, fits):
    fit = fits[25]
    assert fit.loglik == pytest.approx(quad_loglik(cbpp, fit.coef, fit.sd), abs=1e-6)
    # The maximum of the brute-force (200-point non-adaptive) likelihood is the same point: its
    # gradient there is ~0, and the Newton step to its maximum, -H^-1 g, is below 1e-4 in every
    # coordinate (g and H by central differences, independently of the module).
    from statsmodels.tools.numdiff import approx_hess3

    p = len(fit.coef)

    def loglik(theta):
        return plain_gh_loglik(cbpp, theta[:p], math.exp(theta[p]))

    theta = np.r_[fit.coef, math.log(fit.sd)]
    gradient = np.array([(loglik(theta + e) - loglik(theta - e)) / 2e-5 for e in np.eye(len(theta)) * 1e-5])
    hessian = approx_hess3(theta, loglik)
    assert np.all(np.linalg.eigvalsh(hessian) < 0)
    step = -np.linalg.solve(hessian, gradient)
    assert np.max(np.abs(step)) < 1e-4
    assert loglik(theta + np.r_[0.05, np.zeros(p)]) < loglik(theta) - 1e-3  # a wrong point is worse


def test_standard_errors_and_intervals(cbpp, fits):
    fit = fits[25]
    assert np.all(fit.se > 0) and np.isfinite(fit.log_sd_se)
    low, high = fit.interval(1)
    assert low == pytest.approx(fit.coef[1] - 1.959964 * fit.se[1], abs=1e-5)
    sd_low, sd_high = fit.sd_interval()
    assert sd_low < fit.sd < sd_high
    assert math.log(sd_high) - math.log(fit.sd) == pytest.approx(1.959964 * fit.log_sd_se, abs=1e-5)


def test_boundary_sd_gives_plain_logistic():
    # Identical center rates: the MLE of the center sd is 0 (lme4's singular fit).
    frame = pd.DataFrame(
        {
            "center": np.repeat(["a", "b", "c", "d"], 20),
            "y": np.tile([1] * 5 + [0] * 15, 4),
            "x": np.tile([0, 1] * 10, 4),
        }
    )
    cells = glmm.cells_from_frame(frame, "center", "y", None, ("x",))
    fit = glmm.fit_glmm(cells, 5)
    assert fit.boundary and fit.sd == 0.0 and math.isnan(fit.sd_interval()[0])
    import statsmodels.api as sm

    logit = sm.Logit(frame["y"].to_numpy(float), sm.add_constant(frame[["x"]].to_numpy(float))).fit(disp=0)
    assert fit.coef == pytest.approx(np.asarray(logit.params), abs=1e-4)
    assert fit.se == pytest.approx(np.asarray(logit.bse), rel=1e-3)


def test_uncentred_covariates_give_the_transformed_fit(cbpp, fits):
    # Shifting period2 by +1000 and scaling period4 by 100 is a reparameterisation: the same
    # likelihood, beta2 and SE unchanged, beta4 and its SE divided by 100, the intercept moved by
    # -1000 beta2 with variance a' Cov a (a = (1, -1000, 0, 0)). The optimiser must converge on it.
    X = cbpp.X.copy()
    X[:, 1] += 1000.0
    X[:, 3] *= 100.0
    fit, base = glmm.fit_glmm(replace(cbpp, X=X), 25), fits[25]
    assert fit.converged and fit.hessian_pd and not fit.boundary, fit.message
    assert fit.loglik == pytest.approx(base.loglik, abs=1e-6)
    assert fit.sd == pytest.approx(base.sd, rel=1e-5) and fit.log_sd_se == pytest.approx(base.log_sd_se, rel=1e-4)
    T = np.diag([1.0, 1.0, 1.0, 0.01])
    T[0, 1] = -1000.0
    assert fit.coef == pytest.approx(T @ base.coef, rel=1e-5)
    assert fit.covariance == pytest.approx(T @ base.covariance @ T.T, rel=1e-4, abs=1e-12)
    assert fit.se == pytest.approx(np.sqrt(np.diag(T @ base.covariance @ T.T)), rel=1e-4)
    low, high = fit.interval(0)
    assert (low, high) == pytest.approx(
        (fit.coef[0] - 1.959964 * fit.se[0], fit.coef[0] + 1.959964 * fit.se[0]), rel=1e-6
    )
    # An already standardised design is left as it is (the map back is the identity).
    assert glmm._standardise(glmm._standardise(X)[0])[1] == pytest.approx(np.eye(4), abs=1e-12)
