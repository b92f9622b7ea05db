"""Meta-analytic-predictive (MAP) priors for the response intercept, from historical studies.

Method (Neuenschwander et al. 2010; Schmidli et al. 2014, as in RBesT):
1. A hierarchical logistic model of the historical studies j = 1..J:
       responders_j ~ Binomial(n_j, logistic(theta_j)),  theta_j = mu + tau * z_j,  z_j ~ Normal(0, 1),
       mu ~ Normal(0, 2)          (vague on the log-odds: typical rate anywhere from 2% to 98%),
       tau ~ HalfNormal(tau_sd)   (between-study sd on the log-odds; tau_sd = 1 by default, which
                                   allows large heterogeneity, as RBesT's examples for binary data).
2. The predictive distribution of a NEW study's log-odds, theta_new = mu + tau * z, from the draws.
3. Approximated by a mixture of 1..K normals on the log-odds fitted by EM; K chosen by BIC.
4. Optionally robustified: weight `robust_weight` moved to a vague component Normal(0, 1.5)
   (the weakly-informative intercept; nearly uniform on the rate, worth about 3.6 patients),
   so that a trial that conflicts with history can discount it (Schmidli et al. 2014).
5. Prior effective sample size (ESS), in patients, two ways:
   - ELIR (expected local information ratio, Neuenschwander et al. 2020, RBesT's default):
     E_prior[ -d^2 log pi(theta) / d theta^2 / i(theta) ] with i the Fisher information of one
     Bernoulli observation; it equals a + b for a Beta(a, b) prior on the rate;
   - moment matching: the Beta(a, b) with the rate's prior mean and variance has a + b patients.
The mixture becomes `response.intercept` in a prior set with base "weakly-informative".

The intercept of the response model is the log-odds of response for a typical center at
covariates = 0: the MAP prior fits it directly when the model has no covariates, or when the
historical patients resemble patients with covariates = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from marrow.errors import UsageError
from marrow.formatting import plural
from marrow.priors.prior import Prior

MU_PRIOR = Prior("Normal", {"mu": 0.0, "sigma": 2.0}, "vague on the log-odds of a study's typical rate")
ROBUST_COMPONENT = (0.0, 1.5)  # mean and sd on the log-odds of the vague robust component
DEFAULT_TAU_SD = 1.0


# ----------------------------------------------------------------------------------------------
# the historical model's draws (sampled by marrow.fits.map_prior)
@dataclass(frozen=True)
class HistoryFit:
    """Posterior draws of the historical model and the predictive log-odds of a new study."""

    mu: np.ndarray
    tau: np.ndarray
    theta_new: np.ndarray
    divergences: int
    tau_sd: float


# ----------------------------------------------------------------------------------------------
# mixture approximation
@dataclass(frozen=True)
class Mixture:
    """A mixture of normals on the log-odds: weights, means, sds (equal lengths)."""

    w: tuple[float, ...]
    mu: tuple[float, ...]
    sigma: tuple[float, ...]
    loglik: float = float("nan")
    bic: float = float("nan")

    @property
    def k(self) -> int:
        return len(self.w)

    def prior(self, reason: str = "") -> Prior:
        """As a validated `Prior` (one Normal when a single component)."""
        if self.k == 1:
            return Prior.from_dict(
                "response.intercept", {"dist": "Normal", "mu": self.mu[0], "sigma": self.sigma[0], "reason": reason}
            )
        return Prior.from_dict(
            "response.intercept",
            {
                "dist": "NormalMixture",
                "w": list(self.w),
                "mu": list(self.mu),
                "sigma": list(self.sigma),
                "reason": reason,
            },
        )

    def rounded(self, digits: int = 4) -> Mixture:
        """Rounded for a readable TOML file; weights re-normalised to sum to 1 exactly."""
        w = [round(x, digits) for x in self.w]
        w[-1] = round(1.0 - sum(w[:-1]), digits + 2)
        return Mixture(
            tuple(w),
            tuple(round(x, digits) for x in self.mu),
            tuple(max(round(x, digits), 10.0**-digits) for x in self.sigma),
            self.loglik,
            self.bic,
        )


def _normal_logpdf(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * math.log(2 * math.pi)


def _log_responsibilities(
    x: np.ndarray, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """log w_k N(x | mu_k, sigma_k) per draw and component, and the log mixture density per draw."""
    log_terms = np.log(w) + _normal_logpdf(x[:, None], mu, sigma)
    peak = log_terms.max(axis=1, keepdims=True)
    log_total = peak[:, 0] + np.log(np.exp(log_terms - peak).sum(axis=1))
    return log_terms, log_total


def fit_mixture(x: np.ndarray, k: int, iterations: int = 500, tol: float = 1e-8) -> Mixture:
    """Maximum-likelihood mixture of `k` normals to draws `x` by EM (deterministic start at quantiles).

    Stops when the log-likelihood changes by less than `tol` relative, or after `iterations`.
    """
    x = np.asarray(x, dtype="float64").reshape(-1)
    n = x.size
    order = np.sort(x)
    # start: equal weights, means at the centres of k equal-count slices, the overall sd
    mu = np.array([order[int((i + 0.5) * n / k)] for i in range(k)])
    sigma = np.full(k, x.std())
    w = np.full(k, 1.0 / k)
    floor = 1e-3 * x.std() + 1e-12
    previous = -np.inf
    for _ in range(iterations):
        log_terms, log_total = _log_responsibilities(x, w, mu, sigma)
        loglik = float(log_total.sum())
        if abs(loglik - previous) < tol * max(1.0, abs(loglik)):
            break
        previous = loglik
        resp = np.exp(log_terms - log_total[:, None])
        nk = resp.sum(axis=0) + 1e-300
        w = nk / n
        mu = (resp * x[:, None]).sum(axis=0) / nk
        sigma = np.maximum(np.sqrt((resp * (x[:, None] - mu) ** 2).sum(axis=0) / nk), floor)
    loglik = float(_log_responsibilities(x, w, mu, sigma)[1].sum())
    bic = -2 * loglik + (3 * k - 1) * math.log(n)
    order_by_weight = np.argsort(-w)
    return Mixture(
        tuple(float(v) for v in w[order_by_weight]),
        tuple(float(v) for v in mu[order_by_weight]),
        tuple(float(v) for v in sigma[order_by_weight]),
        loglik,
        bic,
    )


def choose_mixture(x: np.ndarray, max_components: int = 3) -> tuple[Mixture, list[Mixture]]:
    """Fit 1..max_components normals by EM; the one with the smallest BIC, and all of them."""
    if not 1 <= max_components <= 5:
        raise UsageError(f"--max-components must be between 1 and 5, got {max_components}")
    fits = [fit_mixture(x, k) for k in range(1, max_components + 1)]
    return min(fits, key=lambda m: m.bic), fits


def robustify(mixture: Mixture, weight: float) -> Mixture:
    """Give `weight` to the vague component Normal(0, 1.5) on the log-odds, the rest pro rata."""
    if not 0 <= weight < 1:
        raise UsageError(f"--robust-weight must be in [0, 1), got {weight:g}")
    if weight == 0:
        return mixture
    mean, sd = ROBUST_COMPONENT
    return Mixture(tuple((1 - weight) * w for w in mixture.w) + (weight,), mixture.mu + (mean,), mixture.sigma + (sd,))


# ----------------------------------------------------------------------------------------------
# effective sample size
def ess_moment(rate_draws: np.ndarray) -> float:
    """ESS in patients by moment matching: a + b of the Beta with the draws' mean and variance."""
    rate = np.asarray(rate_draws, dtype="float64").reshape(-1)
    mean, var = float(rate.mean()), float(rate.var())
    if var <= 0:
        return float("inf")
    return mean * (1 - mean) / var - 1


def _logit_grid(n: int = 20001, half_width: float = 25.0) -> np.ndarray:
    return np.linspace(-half_width, half_width, n)


def ess_elir(prior: Prior) -> float:
    """ESS in patients by the expected local information ratio (Neuenschwander et al. 2020).

    ELIR = E_prior[ i_prior(theta) / i_F(theta) ] with i_prior = -d^2 log pi / d theta^2 and i_F
    the Fisher information of one Bernoulli observation in the same parametrisation: p(1 - p) on
    the log-odds (Normal, StudentT, NormalMixture priors on an intercept) or 1 / (p(1 - p)) on the
    rate (Beta). Computed by quadrature on a fine grid; exactly a + b for Beta(a, b).
    """
    if prior.dist == "Beta":
        a, b = prior.args["alpha"], prior.args["beta"]
        # On the log-odds a Beta(a, b) has log density a log p + b log(1 - p) + const, so
        # -d2/dtheta2 = (a + b) p (1 - p) and the ratio is a + b everywhere.
        theta = _logit_grid()
        p = 1 / (1 + np.exp(-theta))
        log_density = a * np.log(p) + b * np.log1p(-p)
    elif prior.dist in ("Normal", "StudentT", "NormalMixture"):
        theta = _logit_grid()
        log_density = prior.scipy().logpdf(theta)
    else:
        raise UsageError(f"ELIR needs a prior on a log-odds or a rate, not {prior.dist}")
    step = theta[1] - theta[0]
    density = np.exp(log_density - log_density.max())
    density /= density.sum() * step
    second = np.gradient(np.gradient(log_density, step), step)
    p = 1 / (1 + np.exp(-theta))
    info = p * (1 - p)
    inner = slice(2, -2)  # the finite differences are one-sided at the edges
    ratio = -second[inner] / info[inner]
    return float((density[inner] * ratio).sum() * step)


def rate_draws(prior: Prior, n: int = 200_000, seed: int = 1) -> np.ndarray:
    """Draws of the response rate implied by a prior on the log-odds (or on the rate for Beta)."""
    draws = np.asarray(prior.scipy().rvs(size=n, random_state=seed))
    return draws if prior.dist == "Beta" else 1 / (1 + np.exp(-draws))


# ----------------------------------------------------------------------------------------------
# the whole derivation
@dataclass
class MapResult:
    history: pd.DataFrame
    fit: HistoryFit
    mixture: Mixture
    candidates: list[Mixture]
    robust: Mixture
    robust_weight: float
    source: str
    sha256: str
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def prior(self) -> Prior:
        return self.robust.rounded().prior(self.reason())

    def reason(self) -> str:
        h = self.history
        text = (
            f"MAP prior from {plural(len(h), 'historical study', 'historical studies')} "
            f"({plural(int(h['n'].sum()), 'patient')}, "
            f"{plural(int(h['responders'].sum()), 'responder')}) in {Path(self.source).name}"
        )
        if self.robust_weight > 0:
            text += (
                f", robustified with weight {self.robust_weight:g} "
                f"on Normal({ROBUST_COMPONENT[0]:g}, {ROBUST_COMPONENT[1]:g})"
            )
        return text


def _describe_rate(label: str, rates: np.ndarray, prior: Prior | None) -> dict:
    q = np.quantile(rates, [0.025, 0.5, 0.975])
    return {
        "distribution": label,
        "components": np.size(prior.args["w"])  # the mixture weights: a tuple
        if prior is not None and prior.dist == "NormalMixture"
        else (1 if prior else "-"),
        "rate mean": float(rates.mean()),
        "rate sd": float(rates.std()),
        "rate 2.5%": float(q[0]),
        "rate median": float(q[1]),
        "rate 97.5%": float(q[2]),
        "ESS (ELIR)": ess_elir(prior) if prior is not None else float("nan"),
        "ESS (moment)": ess_moment(rates),
    }


def summarise(result: MapResult) -> pd.DataFrame:
    """Rows: the exact predictive (draws), its mixture approximation, the robust mixture."""
    predictive_rates = 1 / (1 + np.exp(-result.fit.theta_new))
    rows = [_describe_rate("predictive (MCMC draws)", predictive_rates, None)]
    mixture_prior = result.mixture.prior()
    rows.append(_describe_rate(f"MAP, {result.mixture.k}-component mixture", rate_draws(mixture_prior), mixture_prior))
    if result.robust_weight > 0:
        robust_prior = result.robust.rounded().prior()
        rows.append(
            _describe_rate(
                f"robust MAP (weight {result.robust_weight:g} vague)", rate_draws(robust_prior), robust_prior
            )
        )
    return pd.DataFrame(rows)


def hyper_summary(result: MapResult) -> pd.DataFrame:
    """Posterior median and 95% interval of mu and tau, and the BIC of each candidate mixture."""
    rows = []
    for name, draws in (("mu (log-odds)", result.fit.mu), ("tau (log-odds sd)", result.fit.tau)):
        q = np.quantile(draws, [0.025, 0.5, 0.975])
        rows.append({"quantity": name, "median": float(q[1]), "2.5%": float(q[0]), "97.5%": float(q[2])})
    for m in result.candidates:
        chosen = " (chosen)" if m is result.mixture else ""
        rows.append(
            {
                "quantity": f"BIC, {m.k} component(s){chosen}",
                "median": m.bic,
                "2.5%": float("nan"),
                "97.5%": float("nan"),
            }
        )
    return pd.DataFrame(rows)


def _toml_list(values) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def prior_set_toml(result: MapResult, name: str) -> str:
    """A prior set file usable by `fit --prior`: base weakly-informative, response.intercept = the MAP mixture."""
    prior = result.prior
    summary = result.summary.set_index("distribution")
    final = summary.iloc[-1]
    h = result.history
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    q = np.quantile(result.fit.tau, [0.025, 0.5, 0.975])
    lines = [
        f"# Meta-analytic-predictive (MAP) prior written by `marrow priors map` on {created}.",
        f"# History: {result.source} (sha256 {result.sha256}), {plural(len(h), 'study', 'studies')}, "
        f"{plural(int(h['n'].sum()), 'patient')}.",
        f"# Model: responders_j ~ Binomial(n_j, logistic(mu + tau z_j)); mu ~ {MU_PRIOR.describe()}; "
        f"tau ~ HalfNormal({result.fit.tau_sd:g}).",
        f"# Posterior tau (between-study sd, log-odds): median {q[1]:.3f}, 95% interval {q[0]:.3f} to {q[2]:.3f}.",
        f"# Predictive of a new study's log-odds approximated by {plural(result.mixture.k, 'normal component')} "
        "(EM, BIC).",
        f"# Robust weight {result.robust_weight:g} on Normal({ROBUST_COMPONENT[0]:g}, {ROBUST_COMPONENT[1]:g}).",
        f"# Implied response rate: mean {final['rate mean']:.3f}, 95% interval {final['rate 2.5%']:.3f} to "
        f"{final['rate 97.5%']:.3f}; effective sample size {final['ESS (ELIR)']:.1f} patients (ELIR), "
        f"{final['ESS (moment)']:.1f} (moment-matched Beta).",
        "# response.intercept is the log-odds for a typical center at covariates = 0.",
        f"name = {_toml_string(name)}",
        f"description = {_toml_string(f'MAP prior for the response rate from {len(h)} historical studies')}",
        'base = "weakly-informative"',
        "",
        "[response.intercept]",
        f"dist = {_toml_string(prior.dist)}",
    ]
    for arg, value in prior.args.items():
        lines.append(f"{arg} = {_toml_list(value) if isinstance(value, tuple) else f'{value:.6g}'}")
    lines.append(f"reason = {_toml_string(prior.reason)}")
    return "\n".join(lines) + "\n"
