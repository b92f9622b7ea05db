"""The decision-rule grammar: parsing, normalised terms, evaluation, and hostile or malformed input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marrow.errors import UsageError
from marrow.simulate import rules as R

Q = ["response_rate", "center_sd"]


def test_term_key_is_the_normalised_text_of_a_term():
    assert R.term_key("response_rate", ">", 0.15) == "P(response_rate > 0.15)"
    assert R.term_key("median_months", "<=", 12.0) == "P(median_months <= 12)"
    rule = R.parse("P( response_rate>0.150 )>0.95", Q)
    assert [t.key for t in R.terms(rule)] == ["P(response_rate > 0.15)"]
    assert str(rule) == "P(response_rate > 0.15) > 0.95"


def test_terms_are_distinct_and_in_order():
    rule = R.parse(
        "P(response_rate > 0.15) > 0.9 and (mean(response_rate) >= 0.2 or P(response_rate > 0.15) > 0.99) "
        "or median(center_sd) < 1e-1",
        Q,
    )
    keys = ["P(response_rate > 0.15)", "mean(response_rate)", "median(center_sd)"]
    assert [t.key for t in R.all_terms(rule)] == keys
    assert [t.key for t in R.terms(rule)] == ["P(response_rate > 0.15)"]  # what a study stores exactly


def test_and_binds_tighter_than_or_and_parentheses_override():
    values = {"P(response_rate > 0.1)": 0.99, "P(response_rate > 0.2)": 0.0, "P(response_rate > 0.3)": 0.0}
    a, b, c = "P(response_rate > 0.1) > 0.5", "P(response_rate > 0.2) > 0.5", "P(response_rate > 0.3) > 0.5"
    # a or (b and c) is true; (a or b) and c is false
    assert R.evaluate(R.parse(f"{a} or {b} and {c}", Q), values) is True
    assert R.evaluate(R.parse(f"({a} or {b}) and {c}", Q), values) is False
    assert R.evaluate(R.parse(f"{a} OR {b} AND {c}", Q), values) is True


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        (">", 0.95, False),
        (">=", 0.95, True),
        ("<", 0.95, False),
        ("<=", 0.95, True),
        (">", 0.9, True),
        ("<", 0.99, True),
    ],
)
def test_comparison_operators(op, value, expected):
    rule = R.parse(f"P(response_rate > 0.15) {op} {value}", Q)
    assert R.evaluate(rule, {"P(response_rate > 0.15)": 0.95}) is expected


def test_evaluate_broadcasts_over_replicates_and_nan_is_false():
    rule = R.parse("P(response_rate > 0.15) > 0.9 and mean(response_rate) > 0.2", Q)
    values = {
        "P(response_rate > 0.15)": np.array([0.95, 0.95, 0.5, np.nan]),
        "mean(response_rate)": np.array([0.3, 0.1, 0.3, 0.3]),
    }
    assert R.evaluate_array(rule, values).tolist() == [True, False, False, False]
    # a callable lookup receives the term object
    assert R.evaluate(rule, lambda term: 0.95 if isinstance(term, R.Prob) else 0.25) is True


def test_negative_numbers_and_exponents():
    rule = R.parse("mean(center_sd) > -1.5e-1", Q)
    assert rule.node.value == pytest.approx(-0.15)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("__import__('os').system('ls')", 12, "unexpected character"),
        ('__import__("os")', 12, "unexpected character"),
        ("P(response_rate.__class__ > 0.1) > 0.5", 16, "unexpected character '.'"),
        ("P(P(response_rate > 0.1) > 0.2) > 0.1", 3, "unknown quantity 'P'"),
        ("mean(mean(response_rate)) > 0.1", 6, "unknown quantity 'mean'"),
        ("exec(response_rate) > 0", 1, "expected P(...)"),
        ("P(response_rate > 0.1) > 0.5; rm -rf /", 29, "unexpected character ';'"),
        ("P(response_rate > 0.1) > 0.5 and", 33, "the end of the rule"),
        ("P(response_rate > 0.1) > 0.5 0.3", 30, "expected 'and', 'or'"),
        ("(P(response_rate > 0.1) > 0.5", 30, "expected ')'"),
        ("P(response_rate > 0.1)", 23, "a comparison"),
        ("P(response_rate > 0.1) > 1.5", 26, "outside 0..1"),
        ("P(response_rate = 0.1) > 0.5", 17, "unexpected character '='"),
        ("P(response_rate > x) > 0.5", 19, "a number"),
        ("   ", 1, "empty"),
        ("lambda: 1", 7, "unexpected character ':'"),
    ],
)
def test_hostile_and_malformed_rules_are_usage_errors_with_the_column(text, column, words):
    with pytest.raises(UsageError) as info:
        R.parse(text, Q)
    message = str(info.value)
    assert f"column {column}:" in message, message
    assert words in message
    assert repr(text) in message
    assert message.splitlines()[-1].index("^") - 4 == column - 1  # the pointer under the column


def test_unknown_quantity_suggests_the_closest_name():
    with pytest.raises(UsageError, match=r"unknown quantity 'respons_rate'; did you mean 'response_rate'\?"):
        R.parse("P(respons_rate > 0.15) > 0.95", Q)
    with pytest.raises(UsageError, match=r"known: response_rate, center_sd"):
        R.parse("P(zzz > 0.15) > 0.95", Q)


def test_rule_text_must_be_a_string():
    with pytest.raises(UsageError, match="must be text"):
        R.parse(0.95, Q)  # type: ignore[arg-type]


def test_interim_futility_takes_precedence_over_efficacy():
    interim = R.Interim(R.parse("P(response_rate > 0.3) < 0.5", Q), R.parse("P(response_rate > 0.1) > 0.5", Q))
    values = {"P(response_rate > 0.3)": np.array([0.1, 0.9, 0.9]), "P(response_rate > 0.1)": np.array([0.9, 0.9, 0.1])}
    futility, efficacy = R.interim_outcome(interim, values)
    assert futility.tolist() == [True, False, False]
    assert efficacy.tolist() == [False, True, False]


def test_final_outcome_go_no_go_gray():
    rules = R.decision_rules("P(response_rate > 0.15) > 0.9", Q, no_go="P(response_rate > 0.15) < 0.2")
    p = np.array([0.95, 0.5, 0.1])
    go, no_go = R.final_outcome(rules, {"P(response_rate > 0.15)": p})
    assert go.tolist() == [True, False, False]
    assert no_go.tolist() == [False, False, True]
    without = R.decision_rules("P(response_rate > 0.15) > 0.9", Q)
    go, no_go = R.final_outcome(without, {"P(response_rate > 0.15)": p})
    assert no_go.tolist() == [False, True, True]


def test_decision_rules_terms_per_analysis_and_cutoff_replacement():
    rules = R.decision_rules(
        "P(response_rate > 0.15) > 0.95",
        Q,
        interims=[("P(response_rate > 0.25) < 0.1", None), (None, "P(response_rate > 0.15) > 0.999")],
    )
    assert rules.n_analyses == 3
    assert [t.key for t in rules.terms_at(1)] == ["P(response_rate > 0.25)"]
    assert [t.key for t in rules.terms_at(2)] == ["P(response_rate > 0.15)"]
    moved = R.replace_cutoff(rules.go, "P(response_rate > 0.15)", 0.9)
    assert str(moved) == moved.text == "P(response_rate > 0.15) > 0.9"
    assert R.evaluate(moved, {"P(response_rate > 0.15)": 0.92}) and not R.evaluate(
        rules.go, {"P(response_rate > 0.15)": 0.92}
    )
    assert rules.described()[0] == ("interim 1: stop for futility", "P(response_rate > 0.25) < 0.1")


_PIECES = ["P", "(", ")", "response_rate", "center_sd", ">", ">=", "<", "<=", "and", "or", "mean", "median", "0.15",
           "0.95", "-", "1e-3", ".", "__import__", "'os'", ";", "=", "[", "]", ",", " "]  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(_PIECES), max_size=14) | st.text(max_size=40))
def test_any_text_parses_or_is_a_usage_error_never_anything_else(pieces):
    text = " ".join(pieces) if isinstance(pieces, list) else pieces
    try:
        rule = R.parse(text, Q)
    except UsageError as exc:
        assert "column" in str(exc)
        return
    # a rule that parses round-trips through its normalised text to the same tree
    assert R.parse(str(rule), Q).node == rule.node


_OPS = {">": lambda x, y: x > y, ">=": lambda x, y: x >= y, "<": lambda x, y: x < y, "<=": lambda x, y: x <= y}
_atoms = st.tuples(
    st.sampled_from(["P(response_rate > 0.15)", "P(center_sd <= 0.5)", "mean(response_rate)"]),
    st.sampled_from(list(_OPS)),
    st.sampled_from([0.1, 0.5, 0.9]),
)
_trees = st.recursive(_atoms, lambda kids: st.tuples(st.sampled_from(["and", "or"]), kids, kids), max_leaves=6)


def _text(tree) -> str:
    if len(tree) == 3 and isinstance(tree[2], float):
        return f"{tree[0]} {tree[1]} {tree[2]}"
    return f"({_text(tree[1])}) {tree[0].upper() if len(str(tree)) % 2 else tree[0]} ({_text(tree[2])})"


def _truth(tree, values) -> bool:
    if len(tree) == 3 and isinstance(tree[2], float):
        return _OPS[tree[1]](values[tree[0]], tree[2])
    left, right = _truth(tree[1], values), _truth(tree[2], values)
    return (left and right) if tree[0] == "and" else (left or right)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_trees, st.lists(st.sampled_from([0.05, 0.1, 0.5, 0.7, 0.95]), min_size=3, max_size=3))
def test_random_rules_evaluate_as_their_structure_says(tree, numbers):
    values = dict(zip(["P(response_rate > 0.15)", "P(center_sd <= 0.5)", "mean(response_rate)"], numbers, strict=True))
    rule = R.parse(_text(tree), Q)
    assert R.evaluate(rule, values) is _truth(tree, values)
