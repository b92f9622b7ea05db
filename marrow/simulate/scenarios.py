"""Simulate one trial of a design from a scenario's truth (pure numpy, one Generator per replicate).

The truth is the model's hierarchical logistic regression: patient i of center c has
P(response) = logistic(alpha + u_c + x_i' beta), with beta the scenario's log odds ratios and
- `response_rate` + `center_sd`: u_c ~ Normal(0, center_sd) drawn afresh in every replicate, and alpha
  chosen so that the *expected* population response rate (over center effects, covariates drawn by
  their prevalences and centers by their planned shares) equals `response_rate`;
- `center_rates`: u_c = 0 and a fixed alpha_c per center, chosen so that the center's expected rate
  (over covariates) equals its rate.

The true headline quantity of a replicate, `response_rate`, is defined as the model's `response_rate`
is (marrow/models/response.py: the cell-count-weighted mean of the cells' response probabilities):
the mean, over the trial's simulated patients, of their true response probabilities given the
replicate's center effects. It is what the final analysis estimates, and it varies around the
scenario's `response_rate` from replicate to replicate.

Patients are enrolled in a random order; an interim analysis sees the first n of them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from marrow.simulate.design import Design, Scenario

QUADRATURE_NODES = 40  # Gauss-Hermite nodes for the expectation over a Normal center effect
INTERCEPT_BOUNDS = (-40.0, 40.0)


@dataclass(frozen=True)
class Trial:
    """One simulated trial, patients in enrolment order: center index, covariates (n, K) and 0/1
    response; `probability` is each patient's true response probability."""

    center: np.ndarray
    x: np.ndarray
    responder: np.ndarray
    probability: np.ndarray

    @property
    def true_response_rate(self) -> float:
        """The model's `response_rate` at the truth: the mean true probability over the trial's patients."""
        return float(self.probability.mean())


def covariate_patterns(design: Design) -> tuple[np.ndarray, np.ndarray]:
    """Every 0/1 covariate pattern (P, K) and its probability (P,) under independent prevalences."""
    k = len(design.covariates)
    patterns = np.array(list(itertools.product((0.0, 1.0), repeat=k)), dtype=np.float64).reshape(2**k, k)
    prevalence = np.array([p for _, p in design.covariates])
    weights = np.prod(np.where(patterns == 1.0, prevalence, 1.0 - prevalence), axis=1)
    return patterns, weights


def _solve(target: float, rate_at) -> float:
    """The intercept alpha with rate_at(alpha) == target (rate_at increases in alpha)."""
    return float(brentq(lambda a: rate_at(a) - target, *INTERCEPT_BOUNDS, xtol=1e-12))


def intercepts(design: Design, scenario: Scenario) -> np.ndarray:
    """The truth's intercept per center (all equal unless the scenario fixes center rates)."""
    patterns, pattern_w = covariate_patterns(design)
    beta = np.array([scenario.log_odds_ratio(c) for c in design.covariate_names])
    shift = patterns @ beta  # (P,)
    if scenario.center_rates:
        return np.array(
            [_solve(rate, lambda a: float(pattern_w @ expit(a + shift))) for _, rate in scenario.center_rates]
        )
    nodes, weights = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)  # E over a standard Normal
    weights = weights / weights.sum()
    u = scenario.center_sd * nodes
    assert scenario.response_rate is not None
    alpha = _solve(scenario.response_rate, lambda a: float(weights @ expit(a + u[:, None] + shift) @ pattern_w))
    return np.full(len(design.centers), alpha)


def scenario_rate(design: Design, scenario: Scenario) -> float:
    """The scenario's nominal population response rate (its `response_rate`, or the centers' rates
    weighted by their planned shares)."""
    if scenario.response_rate is not None:
        return scenario.response_rate
    return float(np.dot(design.center_weights, [rate for _, rate in scenario.center_rates]))


def enrolment(design: Design, rng: np.random.Generator) -> np.ndarray:
    """Center index of each patient in enrolment order: the planned sizes, or a multinomial draw of
    the total by accrual weights, in a random order."""
    if design.fixed_sizes:
        counts = np.array(design.center_values, dtype=np.int64)
    else:
        counts = rng.multinomial(design.n_total, np.array(design.center_weights))
    return rng.permutation(np.repeat(np.arange(len(design.centers)), counts))


def simulate_trial(
    design: Design, scenario: Scenario, rng: np.random.Generator, alpha: np.ndarray | None = None
) -> Trial:
    """One trial from the scenario's truth (`alpha`: `intercepts(design, scenario)`, passed to reuse it)."""
    if alpha is None:
        alpha = intercepts(design, scenario)
    center = enrolment(design, rng)
    prevalence = np.array([p for _, p in design.covariates])
    x = (rng.random((len(center), len(prevalence))) < prevalence).astype(np.float64)
    beta = np.array([scenario.log_odds_ratio(c) for c in design.covariate_names])
    u = np.zeros(len(design.centers))
    if not scenario.center_rates and scenario.center_sd > 0:
        u = scenario.center_sd * rng.standard_normal(len(design.centers))
    probability = expit(alpha[center] + u[center] + x @ beta)
    responder = (rng.random(len(center)) < probability).astype(np.int64)
    return Trial(center, x, responder, probability)
