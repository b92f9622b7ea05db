"""Exact operating characteristics of a beta-binomial single-arm design: against enumeration of every
trial outcome, against a plain Monte Carlo, and against Simon's (1989) published two-stage designs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from simulate_records import conjugate_records

from marrow.errors import UsageError
from marrow.simulate import exact, oc
from marrow.simulate import rules as R

Q = ["response_rate"]


def test_critical_responders_is_the_first_x_meeting_the_rule():
    n, a, b, t, prob = 20, 1.0, 1.0, 0.15, 0.95
    crit = exact.critical_responders(n, a, b, t, prob)
    assert crit is not None
    assert stats.beta(a + crit, b + n - crit).sf(t) > prob
    assert stats.beta(a + crit - 1, b + n - crit + 1).sf(t) <= prob
    assert exact.critical_responders(5, 1.0, 1.0, 0.9, 0.999) is None
    assert exact.go_probability(5, 0.5, 1.0, 1.0, 0.9, 0.999) == 0.0


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.4])
def test_go_probability_equals_enumeration_of_every_patient_sequence(rate):
    n, a, b, t, prob = 12, 0.5, 0.5, 0.2, 0.8
    meets = {x: stats.beta(a + x, b + n - x).sf(t) > prob for x in range(n + 1)}
    total = 0.0
    for outcome in itertools.product((0, 1), repeat=n):
        x = sum(outcome)
        if meets[x]:
            total += rate**x * (1 - rate) ** (n - x)
    assert exact.go_probability(n, rate, a, b, t, prob) == pytest.approx(total, abs=1e-12)


def _interim_rules() -> R.DecisionRules:
    return R.decision_rules(
        "P(response_rate > 0.2) > 0.9",
        Q,
        no_go="P(response_rate > 0.2) < 0.3",
        interims=[("P(response_rate > 0.3) < 0.15", "P(response_rate > 0.2) > 0.98")],
    )


@pytest.mark.parametrize("rate", [0.15, 0.35])
def test_interim_design_equals_enumeration_of_every_patient_sequence(rate):
    """Every sequence of 12 outcomes (interim after 6), decided patient by patient with the rules."""
    rules, a, b, n1, n = _interim_rules(), 1.0, 1.0, 6, 12
    seqs = np.array(list(itertools.product((0, 1), repeat=n)))
    x1, x = seqs[:, :n1].sum(axis=1), seqs.sum(axis=1)
    weight = rate**x * (1 - rate) ** (n - x)

    def at(xs, size):
        return lambda term: exact.posterior_value(term, xs, size, a, b)

    fut = R.evaluate_array(rules.interims[0].futility, at(x1, n1))
    eff = R.evaluate_array(rules.interims[0].efficacy, at(x1, n1)) & ~fut
    go = R.evaluate_array(rules.go, at(x, n))
    no_go = R.evaluate_array(rules.no_go, at(x, n)) & ~go
    going = ~fut & ~eff
    oc = exact.operating_characteristics([n1, n], rules, rate, a, b)
    assert oc.stop_futility[0] == pytest.approx(weight[fut].sum(), abs=1e-12)
    assert oc.stop_efficacy[0] == pytest.approx(weight[eff].sum(), abs=1e-12)
    assert oc.go == pytest.approx(weight[eff].sum() + weight[going & go].sum(), abs=1e-12)
    assert oc.no_go == pytest.approx(weight[fut].sum() + weight[going & no_go].sum(), abs=1e-12)
    assert oc.go + oc.no_go + oc.gray == pytest.approx(1.0)
    assert oc.expected_n == pytest.approx(n1 * weight[fut | eff].sum() + n * weight[going].sum(), abs=1e-10)
    assert oc.go > 0.0 and oc.stop_futility[0] > 0.0 and oc.gray > 0.0  # every branch is exercised


def monte_carlo(rules: R.DecisionRules, sizes, rate, a, b, trials, seed):
    """A plain simulation: binomial draws per stage, the posterior from scipy's beta, rules applied in order."""
    rng = np.random.default_rng(seed)
    x = np.zeros(trials, dtype=np.int64)
    running = np.ones(trials, dtype=bool)
    go = np.zeros(trials, dtype=bool)
    futility = np.zeros(trials, dtype=bool)
    n_used = np.full(trials, sizes[-1])
    previous = 0
    for k, n in enumerate(sizes, start=1):
        x = x + rng.binomial(n - previous, rate, size=trials)
        previous = n
        post = stats.beta(a + x, b + n - x)
        values = {
            t.key: (post.sf(t.threshold) if t.op == ">" else post.cdf(t.threshold))
            for t in rules.terms_at(k)
            if isinstance(t, R.Prob)
        }
        if k < len(sizes):
            interim = rules.interims[k - 1]
            fut = R.evaluate_array(interim.futility, values) & running
            eff = R.evaluate_array(interim.efficacy, values) & running & ~fut
            futility |= fut
            go |= eff
            n_used[fut | eff] = n
            running &= ~(fut | eff)
        else:
            go |= running & R.evaluate_array(rules.go, values)
    return go, futility, n_used


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.3, 0.45])
def test_exact_agrees_with_monte_carlo_within_3_mcse(rate):
    rules, sizes, a, b, trials = _interim_rules(), [10, 25], 1.0, 1.0, 20000
    go, futility, n_used = monte_carlo(rules, sizes, rate, a, b, trials, seed=int(rate * 1000))
    oc = exact.operating_characteristics(sizes, rules, rate, a, b)
    for simulated, exact_value in ((go.mean(), oc.go), (futility.mean(), oc.stop_futility[0])):
        mcse = math.sqrt(max(exact_value * (1 - exact_value), 1e-12) / trials)
        assert abs(simulated - exact_value) <= 3 * mcse + 1e-12, (rate, simulated, exact_value)
    assert abs(n_used.mean() - oc.expected_n) <= 3 * n_used.std(ddof=1) / math.sqrt(trials) + 1e-12


@pytest.mark.parametrize(
    ("r1", "n1", "r", "n", "pet", "en"),
    [
        (1, 10, 5, 29, 0.74, 15.0),  # Simon (1989), Table 1, p0 = 0.10, p1 = 0.30, alpha 0.05, beta 0.20: optimal
        (1, 15, 5, 25, 0.55, 19.5),  # the same row: minimax
    ],
)
def test_simon_two_stage_designs_as_posterior_rules(r1, n1, r, n, pet, en):
    """Simon's rule "stop if at most r1 responders of n1; success if more than r of n" is a posterior rule:
    P(p > 0.1 | x) rises with x, so a cut-off between its values at r1 and r1 + 1 (and r, r + 1) reproduces it."""
    a = b = 1.0

    def between(x, size):
        return float(
            np.mean([stats.beta(a + x, b + size - x).sf(0.1), stats.beta(a + x + 1, b + size - x - 1).sf(0.1)])
        )

    rules = R.decision_rules(
        f"P(response_rate > 0.1) > {between(r, n)!r}",
        Q,
        interims=[(f"P(response_rate > 0.1) < {between(r1, n1)!r}", None)],
    )
    null = exact.operating_characteristics([n1, n], rules, 0.10, a, b)
    alternative = exact.operating_characteristics([n1, n], rules, 0.30, a, b)
    assert round(null.stop_futility[0], 2) == pet
    assert round(null.expected_n, 1) == en
    assert null.go <= 0.05  # type I error
    assert alternative.go >= 0.80  # power


def test_single_stage_operating_characteristics_match_go_probability():
    rules = R.decision_rules("P(response_rate > 0.15) > 0.95", Q)
    for rate in (0.1, 0.3):
        oc = exact.operating_characteristics([30], rules, rate, 1.0, 1.0)
        assert oc.go == pytest.approx(exact.go_probability(30, rate, 1.0, 1.0, 0.15, 0.95), abs=1e-12)
        assert oc.no_go == pytest.approx(1 - oc.go) and oc.expected_n == pytest.approx(30.0)


def test_bad_inputs_are_usage_errors():
    rules = R.decision_rules("P(response_rate > 0.15) > 0.95", Q)
    with pytest.raises(UsageError, match="sample sizes"):
        exact.operating_characteristics([10, 20], rules, 0.2)
    with pytest.raises(UsageError, match="a > 0"):
        exact.go_probability(10, 0.2, 0.0, 1.0, 0.15, 0.95)
    with pytest.raises(UsageError, match="must increase"):
        exact.operating_characteristics([20, 10], _interim_rules(), 0.2)


def test_exact_table_has_the_oc_tables_columns_and_values():
    rules = _interim_rules()
    table = exact.exact_table([10, 25], rules, {"null": 0.15, "target": 0.35})
    simulated = oc.oc_table(conjugate_records({"null": 0.15, "target": 0.35}, [10, 25], 50, 1, rules), rules).table
    shared = [c for c in simulated.columns if c in table.columns]
    assert set(table.columns) <= set(shared)
    truth = exact.operating_characteristics([10, 25], rules, 0.35)
    row = table.set_index("scenario").loc["target"]
    assert row["P(go)"] == truth.go and row["P(stop efficacy @1)"] == truth.stop_efficacy[0]
    assert row["E[N]"] == truth.expected_n
