"""Simulate one recovery trial from a scenario's truth, and what an analysis at a calendar time sees
(pure numpy, one Generator per replicate).

The truth is the recovery model's (marrow/models/recovery.py) with no covariate effect on latency:
patient i of center c, lineage l
- ever recovers with pi_il = logistic(a_l + u_c + x_i' gamma), u_c ~ Normal(0, center_sd) drawn afresh
  in every replicate, gamma the scenario's log odds ratios (on ever recovering); a_l is chosen so that
  the *expected* share who never recover (over center effects, covariates by their prevalences) equals
  the scenario's cure fraction of lineage l (Gauss-Hermite quadrature, as for response rates);
- recovers on day T_il from the design's latency family with median `median_days[l]` and shape k
  (`marrow.models.latency`: log S(t) at location log median and shape k), when it ever recovers.

Patients enter uniformly over `accrual_days` (sorted: the enrolment order) and are followed
`follow_up_days`. An analysis at calendar time s sees the patients enrolled by then, patient i for
min(follow-up, s - entry_i) days: recovered on day T when it recovers by then, otherwise censored
there. An interim after N patients is held when the N-th patient enters; the final analysis when
every patient has completed follow-up.

True headline values of a replicate, defined as the model's quantities are: `cure_fraction` of lineage
l is the mean over the trial's patients of 1 - pi_il (given the replicate's center effects);
`median_days` of l is the scenario's median (the latency of a trial-average patient: no covariate acts
on latency).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from marrow.models import latency
from marrow.simulate.design import Design, RecoveryScenario, Timing
from marrow.simulate.scenarios import QUADRATURE_NODES, covariate_patterns, enrolment

INTERCEPT_BOUNDS = (-40.0, 40.0)


@dataclass(frozen=True)
class RecoveryTrial:
    """One simulated recovery trial, patients in enrolment order: center index (n,), covariates (n, K),
    entry day (n,, nondecreasing); per (patient, lineage): ever recovers (n, L), recovery day if it does
    (n, L) and the true probability of never recovering (n, L)."""

    center: np.ndarray
    x: np.ndarray
    entry: np.ndarray
    recovers: np.ndarray
    latency: np.ndarray
    cure: np.ndarray

    @property
    def true_cure_fractions(self) -> np.ndarray:
        """(L,) the model's `cure_fraction` at the truth: mean over the trial's patients of P(never recovers)."""
        return self.cure.mean(axis=0)


@dataclass(frozen=True)
class Observed:
    """What an analysis sees, per (patient slot, lineage) of the whole trial: the day (recovery or
    censoring), whether it is a recovery, and each patient's weight (1: enrolled with some follow-up;
    0: not enrolled yet, or no follow-up at all, which adds nothing to the likelihood)."""

    day: np.ndarray
    recovered: np.ndarray
    weight: np.ndarray


def _timing(design: Design) -> Timing:
    if design.timing is None:
        raise ValueError("a recovery design has a [timing]")
    return design.timing


def cure_intercepts(design: Design, scenario: RecoveryScenario) -> np.ndarray:
    """(L,) intercepts a_l of the logit of ever recovering: the expected share never recovering
    (over Normal center effects and the covariate patterns) equals each lineage's cure fraction."""
    from scipy.optimize import brentq

    patterns, pattern_w = covariate_patterns(design)
    shift = patterns @ np.array([scenario.log_odds_ratio(c) for c in design.covariate_names])
    nodes, weights = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)
    weights = weights / weights.sum()
    u = scenario.center_sd * nodes

    def intercept(fraction: float) -> float:
        def cured(a: float) -> float:
            return float(weights @ expit(-(a + u[:, None] + shift)) @ pattern_w) - fraction

        return float(brentq(cured, *INTERCEPT_BOUNDS, xtol=1e-12))

    return np.array([intercept(fraction) for _, fraction in scenario.cure_fractions])


def simulate_recovery_trial(
    design: Design, scenario: RecoveryScenario, rng: np.random.Generator, intercepts: np.ndarray | None = None
) -> RecoveryTrial:
    """One trial from the scenario's truth (`intercepts`: `cure_intercepts(design, scenario)`, to reuse)."""
    assert design.analysis.spec is not None
    if intercepts is None:
        intercepts = cure_intercepts(design, scenario)
    timing = _timing(design)
    center = enrolment(design, rng)
    n, n_lineages = len(center), len(timing.lineages)
    prevalence = np.array([p for _, p in design.covariates])
    x = (rng.random((n, len(prevalence))) < prevalence).astype(np.float64)
    entry = np.sort(rng.uniform(0.0, timing.accrual_days, n))
    u = scenario.center_sd * rng.standard_normal(len(design.centers))
    gamma = np.array([scenario.log_odds_ratio(c) for c in design.covariate_names])
    eta = intercepts[None, :] + (u[center] + x @ gamma)[:, None]
    recovers = rng.random((n, n_lineages)) < expit(eta)
    log_median = np.log([m for _, m in scenario.median_days])
    family = design.analysis.spec.resolved_family
    assert family is not None
    log_u = np.log(rng.uniform(size=(n, n_lineages)))
    mu = np.broadcast_to(log_median, (n, n_lineages))
    days = np.exp(latency.log_time_at_log_survival(family, log_u, mu, scenario.shape))
    return RecoveryTrial(center, x, entry, recovers, days, expit(-eta))


def analysis_time(design: Design, trial: RecoveryTrial, n: int) -> float:
    """Calendar day of the analysis of the first `n` patients: when the n-th enters (an interim), or
    the end of everyone's follow-up (the final analysis, n = all): infinity."""
    return float("inf") if n >= len(trial.entry) else float(trial.entry[n - 1])


def observe(trial: RecoveryTrial, n: int, follow_up_days: float, time: float) -> Observed:
    """What an analysis at calendar day `time` of the first `n` patients sees: patient i < n followed
    min(follow-up, time - entry_i) days; later patients, and those with no follow-up yet, weight 0
    (their day is a placeholder, the follow-up)."""
    total = len(trial.entry)
    exposure = np.minimum(follow_up_days, time - trial.entry)
    weight = ((np.arange(total) < n) & (exposure > 0)).astype(np.float64)
    exposure = np.where(weight > 0, exposure, follow_up_days)[:, None]
    recovered = trial.recovers & (trial.latency <= exposure) & (weight[:, None] > 0)
    day = np.where(recovered, trial.latency, exposure)
    return Observed(day, recovered.astype(np.int64), weight)


def true_values(design: Design, scenario: RecoveryScenario, trial: RecoveryTrial) -> dict[str, float]:
    """The replicate's true headline values, by flat quantity name (`cure_fraction_{lineage}`,
    `median_days_{lineage}`)."""
    lineages = _timing(design).lineages
    out = {f"cure_fraction_{x}": float(v) for x, v in zip(lineages, trial.true_cure_fractions, strict=True)}
    out.update({f"median_days_{x}": float(m) for x, m in scenario.median_days})
    return out
