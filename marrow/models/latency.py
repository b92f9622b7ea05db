"""Latency families of the recovery model, written once for numpy and for PyTensor.

A family is parametrised by its location mu (log median, log days) and shape k through the
standardised log time u = k (log t - mu):

  weibull:     log S = -ln2 * exp(u)        log h = log k - log t + log ln2 + u
  loglogistic: log S = -softplus(u)         log h = log k - log t - softplus(-u)
  lognormal:   log S = log Phi(-u)          log h = log f - log S,  log f = log k - log t + log phi(u)

log f = log h + log S (each family's own closed form is used, see `log_density`). The probability of
an interval (L, R], S(L) - S(R), is computed on the log scale as log S(L) + log1mexp(log S(R) - log S(L))
(the stable log-diff-exp; S(0) = 1, so L = 0 gives log1mexp(log S(R)) = log F(R)).

Every function takes `ops`: `NUMPY` or `pytensor_ops()`, so the formulas exist once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

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


def _numpy_ops() -> Ops:
    import numpy as np
    from scipy.special import log_ndtr

    def log1mexp(x):
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > -LN2, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))

    return Ops(exp=np.exp, log=np.log, softplus=lambda x: np.logaddexp(0.0, x), log_norm_sf=lambda x: log_ndtr(-x),
               log1mexp=log1mexp, where=np.where, clip_u=lambda u: np.minimum(u, 700.0))


def pytensor_ops() -> Ops:
    """PyTensor's operations (imported on first use: numpy callers never load PyTensor)."""
    import pytensor.tensor as pt
    from pymc.distributions.dist_math import normal_lccdf

    return Ops(exp=pt.exp, log=pt.log, softplus=pt.softplus, log_norm_sf=lambda x: normal_lccdf(0.0, 1.0, x),
               log1mexp=pt.log1mexp, where=pt.switch, clip_u=lambda u: u)


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


def scipy_distribution(family: str, median: float, k: float) -> Any:
    """The same latency distribution as a frozen scipy.stats distribution (for tests and checks)."""
    from scipy import stats

    _check(family)
    if family == "weibull":
        return stats.weibull_min(k, scale=median / LN2 ** (1 / k))
    if family == "loglogistic":
        return stats.fisk(k, scale=median)
    return stats.lognorm(1 / k, scale=median)
