"""Choosing cut-offs on stored records: the chosen one meets the limit and is the least strict that does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from simulate_records import conjugate_records

from marrow.errors import UsageError
from marrow.simulate import calibrate, exact, oc
from marrow.simulate import rules as R

Q = ["response_rate"]
SCENARIOS = {"null": 0.15, "target": 0.35}


@pytest.fixture(scope="module")
def study():
    rules = R.decision_rules("P(response_rate > 0.15) > 0.8", Q, interims=[("P(response_rate > 0.3) < 0.2", None)])
    return conjugate_records(SCENARIOS, [12, 30], 1000, seed=11, rules=rules), rules


def p_go(records, rules, scenario):
    table = oc.oc_table(records, rules).table.set_index("scenario")
    return float(table.loc[scenario, "P(go)"])


def test_calibrated_go_cutoff_keeps_the_type_one_error_and_is_the_smallest_that_does(study):
    records, rules = study
    assert p_go(records, rules, "null") > 0.2  # the uncalibrated rule is far too liberal
    result = calibrate.calibrate_go(records, rules, "null", alpha=0.05)
    assert result.feasible and result.term == "P(response_rate > 0.15)" and result.original == 0.8
    assert result.achieved <= 0.05
    assert p_go(records, result.rules, "null") == pytest.approx(result.achieved)
    # the largest stored value below the cut-off would let more than alpha through
    final = records.loc[records["scenario"] == "null", "a2:rule:P(response_rate > 0.15)"].to_numpy()
    lower = final[final < result.cutoff].max()
    looser = replace(rules, go=R.replace_cutoff(rules.go, result.term, float(lower)))
    assert p_go(records, looser, "null") > 0.05
    power = result.oc.table.set_index("scenario").loc["target", "P(go)"]
    assert 0.5 < power < p_go(records, rules, "target")
    assert result.achieved_mcse == pytest.approx(np.sqrt(result.achieved * (1 - result.achieved) / 1000))
    assert "P(go) under 'null'" in result.describe()


def test_calibrated_cutoff_agrees_with_the_exact_type_one_error(study):
    """The exact type I error of the calibrated rule lies within 3 MCSE of alpha or below it."""
    records, rules = study
    result = calibrate.calibrate_go(records, rules, "null", alpha=0.05)
    truth = exact.operating_characteristics([12, 30], result.rules, 0.15)
    assert truth.go <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 1000)


def test_calibrated_futility_cutoff_limits_stops_under_the_target(study):
    records, rules = study
    result = calibrate.calibrate_futility(records, rules, "target", max_stop=0.05)
    assert result.feasible and result.achieved <= 0.05
    table = result.oc.table.set_index("scenario")
    assert table.loc["target", "P(stop futility @1)"] == pytest.approx(result.achieved)
    # the next larger stored value would stop more than 5% of the target trials
    values = records.loc[records["scenario"] == "target", "a1:rule:P(response_rate > 0.3)"].to_numpy()
    higher = values[values > result.cutoff].min()
    moved = replace(rules, interims=(R.Interim(R.replace_cutoff(rules.interims[0].futility, result.term, higher)),))
    stricter = oc.oc_table(records, moved).table.set_index("scenario")
    assert stricter.loc["target", "P(stop futility @1)"] > 0.05


def test_calibration_needs_one_cutoff_a_known_scenario_and_a_sensible_alpha(study):
    records, rules = study
    two = R.decision_rules("P(response_rate > 0.15) > 0.8 and P(response_rate > 0.1) > 0.9", Q, interims=[(None, None)])
    with pytest.raises(UsageError, match="name the term"):
        calibrate.calibrate_go(records, two, "null", 0.05)
    result = calibrate.calibrate_go(records, two, "null", 0.05, term="P(response_rate > 0.1)")
    assert result.term == "P(response_rate > 0.1)" and result.achieved <= 0.05
    with pytest.raises(UsageError, match="no scenario named 'nul'"):
        calibrate.calibrate_go(records, rules, "nul", 0.05)
    with pytest.raises(UsageError, match="alpha"):
        calibrate.calibrate_go(records, rules, "null", 1.5)
    with pytest.raises(UsageError, match="no interim futility rule"):
        calibrate.calibrate_futility(records, two, "target", 0.1)


def test_reevaluate_another_rule_on_stored_records(study):
    records, rules = study
    table = calibrate.reevaluate(
        records, Q, "P(response_rate > 0.205) > 0.6", interims=[("P(response_rate > 0.3) < 0.2", None)]
    )
    assert table.interpolated == ("P(response_rate > 0.205)",)
    truth = exact.operating_characteristics(
        [12, 30],
        R.decision_rules("P(response_rate > 0.205) > 0.6", Q, interims=[("P(response_rate > 0.3) < 0.2", None)]),
        0.35,
    )
    target = table.table.set_index("scenario").loc["target"]
    # grid interpolation is close to exact (linear between 0.20 and 0.21)
    assert abs(target["P(go)"] - truth.go) <= 3 * np.sqrt(truth.go * (1 - truth.go) / 1000) + 0.01
