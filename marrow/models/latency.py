"""Latency families of the recovery and survival models, written once for numpy and for PyTensor.

A family is parametrised by its location mu (log median, log days) and shape k through the
standardised log time u = k (log t - mu):

  weibull:     log S = -ln2 * exp(u)        log h = log k - log t + log ln2 + u
  loglogistic: log S = -softplus(u)         log h = log k - log t - softplus(-u)
  lognormal:   log S = log Phi(-u)          log h = log f - log S,  log f = log k - log t + log phi(u)

log f = log h + log S (each family's own closed form is used, see `log_density`). The probability of
an interval (L, R], S(L) - S(R), is computed on the log scale as log S(L) + log1mexp(log S(R) - log S(L))
(the stable log-diff-exp; S(0) = 1, so L = 0 gives log1mexp(log S(R)) = log F(R)).

The restricted mean E[min(T, tau)] = integral_0^tau S(t) dt (`restricted_mean`) is closed-form for the
Weibull (regularised incomplete gamma) and the log-normal (normal CDFs); the log-logistic's needs a
hypergeometric function, so it is Gauss-Legendre quadrature (`RMST_NODES` nodes on each side of the median).
`log_time_at_log_survival` inverts S (numpy only: it draws replicated event times).

Every function takes `ops`: `NUMPY` or `pytensor_ops()`, so the formulas exist once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FAMILIES = ("weibull", "lognormal", "loglogistic")
LN2 = math.log(2.0)
LN2_LOG = math.log(LN2)
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class Ops:
    """The elementwise operations the formulas need, from one array library."""

    exp: Callable
    log: Callable
    softplus: Callable
    log_norm_sf: Callable  # log(1 - Phi(x))
    log1mexp: Callable  # log(1 - exp(x)) for x <= 0
    where: Callable
    clip_u: Callable  # bound u before exp in numpy (overflow); identity in PyTensor
    gammaln: Callable  # log Gamma(x)
    gammainc: Callable  # regularised lower incomplete gamma P(a, x)


def _numpy_ops() -> Ops:
    import numpy as np
    from scipy.special import gammainc, gammaln, log_ndtr

    def log1mexp(x):
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > -LN2, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))

    return Ops(
        exp=np.exp,
        log=np.log,
        softplus=lambda x: np.logaddexp(0.0, x),
        log_norm_sf=lambda x: log_ndtr(-x),
        log1mexp=log1mexp,
        where=np.where,
        clip_u=lambda u: np.minimum(u, 700.0),
        gammaln=gammaln,
        gammainc=gammainc,
    )


def sum_softplus(x):
    """softplus(x) = log(1 + exp(x)) in PyTensor with one exp and one log, for terms that are summed:
    max(x, 0) + log(1 + exp(-|x|)), the log written log(2 + 2y) - ln 2 so that PyTensor does not turn it
    into log1p. PyTensor's own softplus (two exps and a log1p, with its gradient) took 3 times as long
    in the numba backend. Exact to an absolute rounding error (about 1e-16), not a relative one where
    softplus(x) is that small (x < -35): right for a sum of log-likelihood terms, wrong for differences
    of tiny survival probabilities (`log_interval` keeps `pytensor_ops()`). Its gradient is the
    sigmoid, also at x = 0 (the x branch of exp(-|x|) is taken there)."""
    import pytensor.tensor as pt

    positive = x > 0
    y = pt.exp(pt.switch(positive, -x, x))
    return pt.switch(positive, x, 0.0) + (pt.log(2.0 + 2.0 * y) - LN2)


def pytensor_ops(sums: bool = False) -> Ops:
    """PyTensor's operations (imported on first use: numpy callers never load PyTensor). `sums`: terms
    summed into a log-likelihood, where `sum_softplus` replaces PyTensor's slower softplus."""
    import pytensor.tensor as pt
    from pymc.distributions.dist_math import normal_lccdf

    return Ops(
        exp=pt.exp,
        log=pt.log,
        softplus=sum_softplus if sums else pt.softplus,
        log_norm_sf=lambda x: normal_lccdf(0.0, 1.0, x),
        log1mexp=pt.log1mexp,
        where=pt.switch,
        clip_u=lambda u: u,
        gammaln=pt.gammaln,
        gammainc=pt.gammainc,
    )


NUMPY = _numpy_ops()


def _check(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown latency family '{family}'; choose one of {', '.join(FAMILIES)}")


def log_survival(family: str, log_t, mu, k, ops: Ops = NUMPY):
    """log S(t) for location mu (log median) and shape k; broadcasting."""
    _check(family)
    u = k * (log_t - mu)
    if family == "weibull":
        return -LN2 * ops.exp(ops.clip_u(u))
    if family == "loglogistic":
        return -ops.softplus(u)
    return ops.log_norm_sf(u)


def weighted_log_survival_grid(family: str, weight, log_t, mu, k, ops: Ops = NUMPY):
    """Sum of `weight` (pattern, lineage, day) times log S on that grid: log days `log_t` (lineage, day),
    locations `mu` (pattern, lineage), shapes `k` (lineage). The Weibull's exp(u) factorises as
    exp(k (r - mu)) exp(k (log t - r)) (r: each lineage's mean log day, which keeps both factors in range),
    so the sum is one exp per day and per location and a weighted sum over days; written as that
    contraction, because PyTensor turns a product of exps back into one exp per grid point. The other
    families evaluate `log_survival` at every point."""
    _check(family)
    if family != "weibull":
        return (weight * log_survival(family, log_t[None, :, :], mu[:, :, None], k[None, :, None], ops)).sum()
    ref = log_t.mean(axis=-1)
    per_day = ops.exp(ops.clip_u(k[:, None] * (log_t - ref[:, None])))
    per_location = ops.exp(ops.clip_u(k[None, :] * (ref[None, :] - mu)))
    return -LN2 * (per_location * (weight * per_day[None, :, :]).sum(axis=-1)).sum()


def log_hazard(family: str, log_t, mu, k, ops: Ops = NUMPY):
    """log h(t) = log f(t) - log S(t)."""
    _check(family)
    u = k * (log_t - mu)
    if family == "weibull":
        return ops.log(k) - log_t + LN2_LOG + u
    if family == "loglogistic":
        return ops.log(k) - log_t - ops.softplus(-u)
    return ops.log(k) - log_t - 0.5 * u**2 - HALF_LOG_2PI - ops.log_norm_sf(u)


def log_density(family: str, log_t, mu, k, ops: Ops = NUMPY):
    """(log f(t), log S(t)), each family's closed form (the recovery model's graph is built from these)."""
    log_s = log_survival(family, log_t, mu, k, ops)
    u = k * (log_t - mu)
    if family == "weibull":
        log_f = ops.log(k) - log_t + LN2_LOG + u + log_s
    elif family == "loglogistic":
        log_f = ops.log(k) - log_t + u + 2.0 * log_s
    else:
        log_f = ops.log(k) - log_t - 0.5 * u**2 - HALF_LOG_2PI
    return log_f, log_s


def log_diff_survival(log_s_lower, log_s_upper, ops: Ops = NUMPY):
    """log(S(L) - S(R)) from log S(L) >= log S(R), stably: log S(L) + log1mexp(log S(R) - log S(L))."""
    return log_s_lower + ops.log1mexp(log_s_upper - log_s_lower)


def log_interval(family: str, log_lower, log_upper, has_lower, mu, k, ops: Ops = NUMPY):
    """log P(L < T <= R) = log(S(L) - S(R)); where `has_lower` is 0 the lower end is 0 (S(0) = 1) and
    `log_lower` must still be finite (any placeholder: it is not used there, and keeps gradients finite)."""
    log_s_lower = ops.where(has_lower > 0, log_survival(family, log_lower, mu, k, ops), 0.0)
    return log_diff_survival(log_s_lower, log_survival(family, log_upper, mu, k, ops), ops)


RMST_NODES = 48


def _rmst_nodes():
    """Gauss-Legendre nodes and weights on [0, 1] (`RMST_NODES` of them)."""
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(RMST_NODES)
    return 0.5 * (x + 1.0), 0.5 * w


def restricted_mean(family: str, log_tau: float, mu, k, ops: Ops = NUMPY):
    """E[min(T, tau)] = integral_0^tau S(t) dt for location mu (log median) and shape k; broadcasting
    over mu and k (the quadrature of the log-logistic adds a trailing axis and sums it away).

      weibull:     lambda Gamma(1 + 1/k) P(1/k, (tau / lambda)^k),  lambda = exp(mu) / ln2^(1/k)
      lognormal:   exp(mu + 1/(2 k^2)) Phi(u_tau - 1/k) + tau Phi(-u_tau),  u_tau = k (log tau - mu)
      loglogistic: Gauss-Legendre on [0, t1] with t = t1 x^2 and on [t1, tau] with log t linear,
                   t1 = min(median, tau) (smooth pieces for any shape)
    """
    _check(family)
    if family == "weibull":
        log_scale = mu - ops.log(LN2) / k
        x_tau = ops.exp(k * (log_tau - log_scale))
        return ops.exp(log_scale + ops.gammaln(1.0 + 1.0 / k)) * ops.gammainc(1.0 / k, x_tau)
    if family == "lognormal":
        u = k * (log_tau - mu)
        return ops.exp(mu + 0.5 / k**2 + ops.log_norm_sf(1.0 / k - u)) + ops.exp(log_tau + ops.log_norm_sf(u))
    import numpy as np

    x, w = _rmst_nodes()
    mu, k = mu[..., None], (k[..., None] if getattr(k, "ndim", 0) else k)
    log_t1 = ops.where(mu < log_tau, mu, log_tau)  # the median, or tau when the median is later
    # [0, t1]: t = t1 x^2 (S >= 1/2 there); [t1, tau]: t = t1 exp(y x), y = log(tau / t1) >= 0.
    below = 2.0 * ops.exp(log_t1 + np.log(x)) * ops.exp(log_survival(family, log_t1 + 2.0 * np.log(x), mu, k, ops))
    span = log_tau - log_t1
    log_t = log_t1 + span * x
    above = span * ops.exp(log_t + log_survival(family, log_t, mu, k, ops))
    return (w * (below + above)).sum(axis=-1)


def log_time_at_log_survival(family: str, log_s, mu, k):
    """log t at which log S(t) = `log_s` (numpy; replicated event times from log_s = log U, U uniform)."""
    import numpy as np
    from scipy.special import ndtri_exp

    _check(family)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        if family == "weibull":
            u = np.log(-log_s / LN2)
        elif family == "loglogistic":
            u = np.log(-np.expm1(log_s)) - log_s
        else:
            u = -ndtri_exp(log_s)
        return mu + u / k


def scipy_distribution(family: str, median: float, k: float) -> Any:
    """The same latency distribution as a frozen scipy.stats distribution (for tests and checks)."""
    from scipy import stats

    _check(family)
    if family == "weibull":
        return stats.weibull_min(k, scale=median / LN2 ** (1 / k))
    if family == "loglogistic":
        return stats.fisk(k, scale=median)
    return stats.lognorm(1 / k, scale=median)
