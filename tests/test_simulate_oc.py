"""Operating characteristics from a study's records: decisions, the OC table with MCSEs, the grid
fallback, diagnostic failures and errors, and agreement with the exact beta-binomial answer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from simulate_records import conjugate_records

from marrow.errors import UsageError
from marrow.simulate import exact, oc
from marrow.simulate import rules as R

Q = ["response_rate"]
TERM = "P(response_rate > 0.2)"


def handmade(p1, p2, n=(10, 30), mean1=None, mean2=None, true=0.3) -> pd.DataFrame:
    """Records with given P(response_rate > 0.2) at analyses 1 and 2 (exact rule columns only)."""
    size = len(p1)
    mean1 = np.full(size, 0.5) if mean1 is None else np.asarray(mean1)
    mean2 = np.full(size, 0.5) if mean2 is None else np.asarray(mean2)
    frame = pd.DataFrame(
        {
            "scenario": "s",
            "scenario_index": 0,
            "replicate": np.arange(size),
            "a1:n": n[0],
            f"a1:rule:{TERM}": p1,
            "a1:mean:response_rate": mean1,
            "a1:quantile:0.025:response_rate": mean1 - 0.15,
            "a1:quantile:0.5:response_rate": mean1,
            "a1:quantile:0.975:response_rate": mean1 + 0.15,
            "a2:n": n[1],
            f"a2:rule:{TERM}": p2,
            "a2:mean:response_rate": mean2,
            "a2:quantile:0.025:response_rate": mean2 - 0.15,
            "a2:quantile:0.5:response_rate": mean2,
            "a2:quantile:0.975:response_rate": mean2 + 0.15,
            "true:response_rate": true,
            "diagnostics_failed": False,
        }
    )
    return frame


RULES = R.decision_rules(f"{TERM} > 0.9", Q, no_go=f"{TERM} < 0.3", interims=[(f"{TERM} < 0.25", f"{TERM} > 0.95")])


def test_decisions_follow_the_rules_analysis_by_analysis():
    p1 = [0.1, 0.2, 0.99, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    p2 = [0.99, 0.99, 0.1, 0.95, 0.95, 0.92, 0.1, 0.2, 0.5, 0.6]  # later analyses of stopped trials are ignored
    table = oc.oc_table(handmade(p1, p2), RULES)
    decisions = table.decisions
    assert decisions["reason"].tolist() == [
        "futility", "futility", "efficacy", "go", "go", "go", "no-go", "no-go", "gray", "gray"
    ]  # fmt: skip
    assert decisions["stage"].tolist() == [1, 1, 1, 2, 2, 2, 2, 2, 2, 2]
    assert decisions["n"].tolist() == [10, 10, 10, 30, 30, 30, 30, 30, 30, 30]
    row = table.table.iloc[0]
    assert row["P(go)"] == pytest.approx(0.4) and row["P(no-go)"] == pytest.approx(0.4)
    assert row["P(gray)"] == pytest.approx(0.2)
    assert row["P(stop futility @1)"] == pytest.approx(0.2) and row["P(stop efficacy @1)"] == pytest.approx(0.1)
    assert row["P(go) mcse"] == pytest.approx(math.sqrt(0.4 * 0.6 / 10))
    assert row["E[N]"] == pytest.approx(3 * 0.1 * 10 + 0.7 * 30)
    n = np.array([10] * 3 + [30] * 7)
    assert row["E[N] mcse"] == pytest.approx(n.std(ddof=1) / math.sqrt(10))
    assert row["N 10%"] == pytest.approx(np.quantile(n, 0.1)) and row["N 50%"] == 30


def test_estimation_uses_the_analysis_where_the_trial_ended():
    # trial 0 stops at interim 1 (estimate 0.4); the others reach the final (estimates 0.2, 0.6, 0.3)
    p1, p2 = [0.1, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]
    mean1, mean2 = [0.4, 9.0, 9.0, 9.0], [9.0, 0.2, 0.6, 0.3]
    table = oc.oc_table(handmade(p1, p2, mean1=mean1, mean2=mean2, true=0.3), RULES)
    row = table.estimation.iloc[0]
    error = np.array([0.1, -0.1, 0.3, 0.0])
    assert row["bias"] == pytest.approx(error.mean())
    assert row["bias mcse"] == pytest.approx(error.std(ddof=1) / 2)
    assert row["RMSE"] == pytest.approx(math.sqrt(np.mean(error**2)))
    assert row["RMSE mcse"] == pytest.approx((error**2).std(ddof=1) / 2 / (2 * row["RMSE"]))
    # intervals are mean +/- 0.15: 0.3 lies in [0.25, 0.55], [0.05, 0.35], not in [0.45, 0.75], in [0.15, 0.45]
    assert row["coverage 95%"] == pytest.approx(0.75)
    assert row["coverage mcse"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))


def test_diagnostic_failures_are_counted_and_left_out_of_the_second_table_and_errors_of_both():
    frame = handmade([0.5] * 6, [0.99, 0.99, 0.99, 0.1, 0.1, 0.1])
    frame["diagnostics_failed"] = [True, True, False, False, False, None]  # object dtype, as after an error row
    frame.loc[5, [c for c in frame.columns if c.startswith("a")]] = np.nan
    frame["error"] = [None, None, None, None, None, "RuntimeError: boom"]
    table = oc.oc_table(frame, RULES)
    assert table.errors == 1 and table.diagnostics_failed == 2
    assert table.table.iloc[0]["replicates"] == 5 and table.table_passed.iloc[0]["replicates"] == 3
    assert table.table.iloc[0]["P(go)"] == pytest.approx(3 / 5)
    assert table.table_passed.iloc[0]["P(go)"] == pytest.approx(1 / 3)
    assert table.table_passed.iloc[0]["diagnostics failed"] == 2  # the count is shown in both tables
    assert table.decisions["usable"].tolist() == [True] * 5 + [False]


def test_a_missing_value_makes_a_replicate_unusable_not_a_no_go():
    frame = handmade([0.5, 0.5], [np.nan, 0.99])
    table = oc.oc_table(frame, RULES)
    assert table.errors == 1 and table.table.iloc[0]["P(go)"] == 1.0


def grid_records(shift: np.ndarray) -> pd.DataFrame:
    """One analysis with P(q > t) = clip(1 - t + shift): linear in t, so interpolation is exact."""
    t = np.round(np.arange(0, 1.0001, 0.01), 2)
    values = np.clip(1 - t[None, :] + shift[:, None], 0, 1)
    columns = {f"a1:exceed:{v:.2f}:response_rate": values[:, j] for j, v in enumerate(t)}
    frame = pd.DataFrame({"scenario": "s", "replicate": np.arange(len(shift)), "a1:n": 20, **columns})
    return frame


def test_grid_values_exact_at_grid_points_and_interpolated_between_them_and_flagged():
    shift = np.array([-0.2, -0.15, -0.1, -0.05, 0.0])
    frame = grid_records(shift)
    reader = oc.TermReader(frame)
    on_grid = reader(1, R.Prob("response_rate", ">", 0.5))
    assert np.allclose(on_grid, 0.5 + shift) and not reader.interpolated
    between = reader(1, R.Prob("response_rate", ">", 0.555))
    assert np.allclose(between, 0.445 + shift) and reader.interpolated == {"P(response_rate > 0.555)"}
    below = reader(1, R.Prob("response_rate", "<", 0.555))
    assert np.allclose(below, 1 - (0.445 + shift))
    rules = R.decision_rules("P(response_rate > 0.555) > 0.3", Q)
    table = oc.oc_table(frame, rules, quantities=[])
    assert table.interpolated == ("P(response_rate > 0.555)",)
    assert table.table.iloc[0]["P(go)"] == pytest.approx(0.6)  # 0.445 + shift > 0.3 for the last three


def test_an_exact_rule_column_wins_over_the_grid():
    frame = grid_records(np.zeros(4))
    frame["a1:rule:P(response_rate > 0.555)"] = [0.0, 1.0, 1.0, 1.0]  # disagrees with the grid on purpose
    table = oc.oc_table(frame, R.decision_rules("P(response_rate > 0.555) > 0.5", Q), quantities=[])
    assert table.table.iloc[0]["P(go)"] == pytest.approx(0.75) and table.interpolated == ()


def test_terms_the_records_cannot_answer_are_usage_errors():
    frame = grid_records(np.zeros(3))
    with pytest.raises(UsageError, match="needs a new simulation"):
        oc.oc_table(frame, R.decision_rules("P(center_sd > 0.5) > 0.5", ["center_sd"]), quantities=[])
    frame = frame.drop(columns=["a1:exceed:1.00:response_rate"])
    with pytest.raises(UsageError, match="outside the stored grid"):
        oc.oc_table(frame, R.decision_rules("P(response_rate > 0.995) > 0.5", Q), quantities=[])
    with pytest.raises(UsageError, match="no column 'a1:mean:response_rate'"):
        oc.oc_table(frame, R.decision_rules("mean(response_rate) > 0.5", Q), quantities=[])
    with pytest.raises(UsageError, match="1 analyses but the rules describe 2"):
        oc.oc_table(frame, RULES, quantities=[])


def test_mean_and_median_rules_read_the_stored_summaries():
    frame = handmade([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], mean2=[0.1, 0.3, 0.5])
    rules = R.decision_rules("mean(response_rate) > 0.25 and median(response_rate) < 0.4", Q, interims=[(None, None)])
    assert oc.oc_table(frame, rules).decisions["decision"].tolist() == ["no-go", "go", "no-go"]


@pytest.mark.parametrize("grid", [False, True])
def test_simulated_oc_agrees_with_the_exact_answer_within_3_mcse(grid):
    """Records analysed by the conjugate model, read through the rules (exact columns or, for thresholds on
    the grid, the grid): every OC agrees with `exact.operating_characteristics` within 3 MCSE."""
    rules = R.decision_rules(
        "P(response_rate > 0.15) > 0.9", Q, no_go="P(response_rate > 0.15) < 0.5",
        interims=[("P(response_rate > 0.3) < 0.1", "P(response_rate > 0.15) > 0.995")],
    )  # fmt: skip
    scenarios = {"null": 0.15, "middle": 0.25, "target": 0.35}
    records = conjugate_records(scenarios, [12, 30], 1500, seed=7, rules=None if grid else rules, grid=grid)
    table = oc.oc_table(records, rules).table.set_index("scenario")
    for name, rate in scenarios.items():
        truth = exact.operating_characteristics([12, 30], rules, rate, 1.0, 1.0)
        row = table.loc[name]
        for label, value in (
            ("P(go)", truth.go),
            ("P(no-go)", truth.no_go),
            ("P(gray)", truth.gray),
            ("P(stop futility @1)", truth.stop_futility[0]),
            ("P(stop efficacy @1)", truth.stop_efficacy[0]),
        ):
            mcse = math.sqrt(value * (1 - value) / 1500)
            assert abs(row[label] - value) <= 3 * mcse + 1e-9, (name, label, row[label], value)
        assert abs(row["E[N]"] - truth.expected_n) <= 3 * row["E[N] mcse"] + 1e-9
    assert oc.oc_table(records, rules).interpolated == ()


def test_conjugate_intervals_cover_at_about_95_percent_when_no_trial_stops():
    records = conjugate_records({"a": 0.2}, [40], 2000, seed=3, grid=False)
    records["true:response_rate"] = np.random.default_rng(5).beta(1, 1, len(records))  # truth from the prior
    # redraw data from each replicate's own truth so the prior is the data-generating process
    rng = np.random.default_rng(6)
    x = rng.binomial(40, records["true:response_rate"].to_numpy())
    from scipy import stats

    post = stats.beta(1 + x, 41 - x)
    records["a1:mean:response_rate"] = post.mean()
    records["a1:quantile:0.025:response_rate"] = post.ppf(0.025)
    records["a1:quantile:0.975:response_rate"] = post.ppf(0.975)
    rules = R.decision_rules("mean(response_rate) > 0.5", Q)
    row = oc.oc_table(records, rules).estimation.iloc[0]
    assert abs(row["coverage 95%"] - 0.95) <= 3 * row["coverage mcse"]
    assert abs(row["bias"]) <= 3 * row["bias mcse"]  # calibrated: unbiased on average over the prior


def test_rules_from_a_design_with_rule_texts_are_checked_against_the_recorded_quantities():
    from types import SimpleNamespace

    p1, p2 = [0.1, 0.5, 0.5], [0.5, 0.99, 0.1]
    design = SimpleNamespace(
        interims=(SimpleNamespace(n=10, futility=f"{TERM} < 0.25", efficacy=None),), go=f"{TERM} > 0.9", no_go=None
    )
    table = oc.oc_table(handmade(p1, p2), design)
    assert table.decisions["reason"].tolist() == ["futility", "go", "no-go"]
    design.go = "P(response_rte > 0.2) > 0.9"
    with pytest.raises(UsageError, match="did you mean 'response_rate'"):
        oc.oc_table(handmade(p1, p2), design)
    with pytest.raises(UsageError, match="cannot read decision rules from a str"):
        oc.oc_table(handmade(p1, p2), "P(response_rate > 0.2) > 0.9")


def test_quantile_mcse_matches_the_asymptotic_standard_error():
    rng = np.random.default_rng(4)
    # the median of R uniforms on 0..100 has standard error 100 / (2 sqrt(R)); averaged over 40 studies
    estimates = [oc.quantile_mcse(rng.uniform(0, 100, 2000), 0.5) for _ in range(40)]
    assert np.mean(estimates) == pytest.approx(100 / (2 * math.sqrt(2000)), rel=0.08)
    # and the 10% quantile: sqrt(p (1 - p) / R) / density
    estimates = [oc.quantile_mcse(rng.uniform(0, 100, 2000), 0.1) for _ in range(40)]
    assert np.mean(estimates) == pytest.approx(100 * math.sqrt(0.09 / 2000), rel=0.08)
    assert oc.quantile_mcse(np.full(50, 30.0), 0.9) == 0.0
