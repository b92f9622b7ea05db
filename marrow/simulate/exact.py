"""Exact operating characteristics of a single-arm design analysed with a conjugate beta-binomial model.

With a Beta(a, b) prior and x responders among n patients the posterior is Beta(a + x, b + n - x), so
every posterior functional is a known function of (x, n): P(p > t | x) = I_{1-t}(b + n - x, a + x).
It increases with x, so a rule `P(p > t) > prob` holds exactly when x reaches a critical number of
responders, and P(go) at a true rate is a binomial tail (RBesT's `oc1S`/`decision1S_boundary`).

With interim analyses at n_1 < ... < n_K, the responders among the trials still running are carried
from one analysis to the next as a distribution over x (the increment of each stage is binomial), and
each analysis removes the mass that stops there; the same rules and the same order of checks as the
simulation (`marrow.simulate.rules.interim_outcome` / `final_outcome`) decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from marrow.errors import UsageError
from marrow.simulate.rules import DecisionRules, Prob, Stat, Term, final_outcome, interim_outcome


def posterior_value(term: Term, x: np.ndarray, n: int, a: float, b: float) -> np.ndarray:
    """The term's value under the Beta(a + x, b + n - x) posterior, for each x (any quantity name)."""
    from scipy import stats

    post = stats.beta(a + x, b + n - x)
    if isinstance(term, Prob):
        above = post.sf(term.threshold)
        return above if term.op in (">", ">=") else 1.0 - above
    if isinstance(term, Stat) and term.stat == "mean":
        return (a + x) / (a + b + n)
    return post.median()


def critical_responders(n: int, a: float, b: float, threshold: float, prob: float) -> int | None:
    """The smallest x in 0..n with P(p > threshold | x responders of n) > prob, or None if none does."""
    _check(n, a, b)
    x = np.arange(n + 1)
    holds = posterior_value(Prob("p", ">", threshold), x, n, a, b) > prob
    return int(np.argmax(holds)) if holds.any() else None


def go_probability(n: int, rate: float, a: float, b: float, threshold: float, prob: float) -> float:
    """P(go) of the rule `P(p > threshold) > prob` after n patients at true response rate `rate`:
    the binomial tail P(X >= x_crit), 0 when no number of responders reaches the rule."""
    from scipy import stats

    crit = critical_responders(n, a, b, threshold, prob)
    return 0.0 if crit is None else float(stats.binom.sf(crit - 1, n, rate))


@dataclass(frozen=True)
class ExactOc:
    """Exact operating characteristics at one true rate (probabilities over trials)."""

    rate: float
    go: float
    no_go: float
    gray: float
    stop_futility: tuple[float, ...]  # at each interim
    stop_efficacy: tuple[float, ...]
    sample_sizes: tuple[int, ...]  # n at each analysis
    n_distribution: tuple[float, ...]  # P(the trial ends at analysis k)

    @property
    def expected_n(self) -> float:
        return float(np.dot(self.sample_sizes, self.n_distribution))

    @property
    def final_go(self) -> float:
        """P(go at the final analysis) (`go` adds the early stops for efficacy)."""
        return self.go - sum(self.stop_efficacy)


def operating_characteristics(
    sample_sizes: Sequence[int], rules: DecisionRules, rate: float, a: float = 1.0, b: float = 1.0
) -> ExactOc:
    """Exact OC of the design with analyses after `sample_sizes` patients (interims then final) and
    `rules` (every term read as a functional of the single response rate, whatever its name).

    P(go) counts early stops for efficacy and final go decisions; P(no-go) early stops for futility
    and final no-go decisions; P(gray) the rest (as `marrow.simulate.oc` does)."""
    from scipy import stats

    sizes = [int(s) for s in sample_sizes]
    if len(sizes) != rules.n_analyses:
        raise UsageError(f"{len(sizes)} sample sizes for {rules.n_analyses} analyses")
    if any(s2 <= s1 for s1, s2 in zip(sizes, sizes[1:], strict=False)) or sizes[0] < 1:
        raise UsageError(f"the sample sizes must increase from at least 1: {sizes}")
    if not 0.0 <= rate <= 1.0:
        raise UsageError(f"the true rate must be in 0..1, got {rate}")
    _check(sizes[-1], a, b)
    mass = np.array([1.0])  # P(x responders so far and still running)
    previous = 0
    futility, efficacy, ends = [], [], []
    go = no_go = 0.0
    for k, n in enumerate(sizes, start=1):
        mass = np.convolve(mass, stats.binom.pmf(np.arange(n - previous + 1), n - previous, rate))
        previous = n
        x = np.arange(n + 1)

        def lookup(term: Term, x=x, n=n) -> np.ndarray:
            return posterior_value(term, x, n, a, b)

        if k < rules.n_analyses:
            fut, eff = (np.broadcast_to(m, x.shape) for m in interim_outcome(rules.interims[k - 1], lookup))
            futility.append(float(mass[fut].sum()))
            efficacy.append(float(mass[eff].sum()))
            ends.append(futility[-1] + efficacy[-1])
            mass = np.where(fut | eff, 0.0, mass)
        else:
            g, ng = (np.broadcast_to(m, x.shape) for m in final_outcome(rules, lookup))
            go, no_go = float(mass[g].sum()), float(mass[ng].sum())
            ends.append(float(mass.sum()))
    total_go = go + sum(efficacy)
    total_no_go = no_go + sum(futility)
    return ExactOc(
        rate,
        total_go,
        total_no_go,
        max(0.0, 1.0 - total_go - total_no_go),
        tuple(futility),
        tuple(efficacy),
        tuple(sizes),
        tuple(ends),
    )


def _check(n: int, a: float, b: float) -> None:
    if n < 1:
        raise UsageError(f"the sample size must be at least 1, got {n}")
    if not (a > 0 and b > 0):
        raise UsageError(f"the Beta prior needs a > 0 and b > 0, got a={a}, b={b}")


def exact_table(
    sample_sizes: Sequence[int], rules: DecisionRules, rates: dict[str, float], a: float = 1.0, b: float = 1.0
):
    """The exact OC per scenario (name -> true rate) with the OC table's column names (no MCSE: exact),
    to print beside a simulated table of a beta-binomial design."""
    import pandas as pd

    rows = []
    for name, rate in rates.items():
        oc = operating_characteristics(sample_sizes, rules, rate, a, b)
        row: dict[str, object] = {"scenario": name, "true response_rate": rate}
        row.update({"P(go)": oc.go, "P(no-go)": oc.no_go, "P(gray)": oc.gray})
        for k, (fut, eff) in enumerate(zip(oc.stop_futility, oc.stop_efficacy, strict=True), start=1):
            row[f"P(stop futility @{k})"], row[f"P(stop efficacy @{k})"] = fut, eff
        row["E[N]"] = oc.expected_n
        rows.append(row)
    return pd.DataFrame(rows)
