"""Choosing decision cut-offs from stored records, without refitting.

The records keep the posterior functionals of every simulated trial at every analysis, so moving a
cut-off only re-applies the rules (`marrow.simulate.oc.decide`):
- `calibrate_go`: the smallest cut-off c of the go rule's `P(q > t) > c` that keeps P(go) under the null
  scenario at most alpha (the type I error), with the power under every other scenario at it;
- `calibrate_futility`: the largest cut-off c of the interims' futility rule `P(q > t) < c` that stops
  at most `max_stop` of the trials under a target scenario for futility (the power it may cost).
P(go) can only fall as the go cut-off rises (and/or are monotone, and the interims do not change), so a
bisection over the distinct stored values of the term finds the cut-off exactly. The type I error at a
cut-off chosen on the same replicates is slightly optimistic; check it on a fresh study (`--add N`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from marrow.errors import UsageError
from marrow.simulate.oc import OcTable, TermReader, decide, mcse_proportion, n_analyses, oc_table, recorded_quantities
from marrow.simulate.rules import (
    Compare,
    DecisionRules,
    Interim,
    Prob,
    Rule,
    as_rules,
    comparisons,
    decision_rules,
    replace_cutoff,
)

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Calibration:
    """A cut-off chosen on stored records: which term, the old and new value, the constraint met, the
    probability it bounds (with MCSE), and the OC of the calibrated rules."""

    kind: str  # "go" or "futility"
    term: str
    original: float
    cutoff: float
    scenario: str  # the scenario the constraint is on
    limit: float
    achieved: float
    achieved_mcse: float
    feasible: bool
    rules: DecisionRules
    oc: OcTable

    def describe(self) -> str:
        what = "P(go) under '{}' (the type I error)" if self.kind == "go" else "P(stop for futility) under '{}'"
        verdict = "" if self.feasible else " (NO cut-off meets the limit: the most extreme one is shown)"
        return (
            f"{self.kind} rule: {self.term} cut-off {self.original:g} -> {self.cutoff:.4g}; "
            f"{what.format(self.scenario)} = {self.achieved:.3f} (MCSE {self.achieved_mcse:.3f}), "
            f"limit {self.limit:g}{verdict}"
        )


def _pick(rule: Rule, term: str | None, ops: Sequence[str], what: str) -> Compare:
    candidates = [c for c in comparisons(rule) if isinstance(c.term, Prob) and c.op in ops]
    if term is not None:
        candidates = [c for c in candidates if c.term.key == term.replace(" ", "") or c.term.key == term]
        if not candidates:
            keys = ", ".join(c.term.key for c in comparisons(rule)) or "none"
            raise UsageError(f"the {what} rule {rule.text!r} has no comparison of {term} (its terms: {keys})")
    if len({c.term.key for c in candidates}) != 1:
        raise UsageError(
            f"the {what} rule {rule.text!r} needs exactly one P(...) {' or '.join(ops)} cut-off to calibrate; "
            f"found {len({c.term.key for c in candidates})}: name the term"
        )
    return candidates[0]


def _scenario_rows(records: pd.DataFrame, scenario: str) -> pd.DataFrame:
    names = [str(s) for s in dict.fromkeys(records["scenario"])]
    if scenario not in names:
        raise UsageError(f"no scenario named {scenario!r}; the study has {', '.join(names)}")
    return records[records["scenario"].astype(str) == scenario]


def _candidates(values: np.ndarray, op: str, upward: bool) -> np.ndarray:
    """Cut-offs between which the decisions differ: the distinct values (shifted for >= and <=)."""
    values = np.unique(values[np.isfinite(values)])
    if op in (">=", "<="):
        values = np.nextafter(values, np.inf if op == ">=" else -np.inf)
    edge = np.array([0.0 if upward else 1.0])
    return np.unique(np.concatenate([edge, values]))


def _bisect(cands: np.ndarray, prob: Callable[[float], float], limit: float, smallest: bool) -> tuple[float, bool]:
    """The smallest (or largest) candidate with prob <= limit; prob is monotone in the candidate."""
    lo, hi = 0, len(cands) - 1
    if smallest:  # prob falls as the cut-off rises
        if prob(cands[hi]) > limit:
            return float(cands[hi]), False
        while lo < hi:
            mid = (lo + hi) // 2
            if prob(cands[mid]) <= limit:
                hi = mid
            else:
                lo = mid + 1
        return float(cands[lo]), True
    if prob(cands[lo]) > limit:  # prob rises with the cut-off
        return float(cands[lo]), False
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if prob(cands[mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return float(cands[lo]), True


def calibrate_go(
    records: pd.DataFrame, design: DecisionRules | object, null: str, alpha: float, term: str | None = None
) -> Calibration:
    """The smallest cut-off of the go rule's `P(...) >` comparison (or `term`'s) with P(go | null) <= alpha.
    `design`: a DecisionRules or a design with rule texts."""
    rules = as_rules(design, recorded_quantities(records))
    if not 0.0 < alpha < 1.0:
        raise UsageError(f"alpha must be between 0 and 1, got {alpha}")
    target = _pick(rules.go, term, (">", ">="), "go")
    part = _scenario_rows(records, null)
    reader = TermReader(part)
    values = reader(n_analyses(records), target.term)

    def p_go(cutoff: float) -> float:
        trial = replace(rules, go=replace_cutoff(rules.go, target.term.key, cutoff))
        decisions = decide(part, trial, reader)
        usable = decisions["usable"].to_numpy()
        return float((decisions["decision"].to_numpy()[usable] == "go").mean())

    cutoff, feasible = _bisect(_candidates(values, target.op, upward=True), p_go, alpha, smallest=True)
    calibrated = replace(rules, go=replace_cutoff(rules.go, target.term.key, cutoff))
    return _result("go", target, cutoff, null, alpha, feasible, records, calibrated, p_go(cutoff), part)


def calibrate_futility(
    records: pd.DataFrame, design: DecisionRules | object, scenario: str, max_stop: float, term: str | None = None
) -> Calibration:
    """The largest cut-off of the interims' futility `P(...) <` comparison (the same at every interim)
    that stops at most `max_stop` of the trials under `scenario` for futility."""
    rules = as_rules(design, recorded_quantities(records))
    futility = [i.futility for i in rules.interims if i.futility is not None]
    if not futility:
        raise UsageError("the design has no interim futility rule to calibrate")
    if not 0.0 <= max_stop < 1.0:
        raise UsageError(f"the futility limit must be in 0..1, got {max_stop}")
    target = _pick(futility[0], term, ("<", "<="), "futility")
    part = _scenario_rows(records, scenario)
    reader = TermReader(part)
    values = np.concatenate(
        [reader(k, target.term) for k, i in enumerate(rules.interims, start=1) if i.futility is not None]
    )

    def moved(cutoff: float) -> DecisionRules:
        interims = tuple(
            Interim(replace_cutoff(i.futility, target.term.key, cutoff) if i.futility else None, i.efficacy)
            for i in rules.interims
        )
        return replace(rules, interims=interims)

    def p_stop(cutoff: float) -> float:
        decisions = decide(part, moved(cutoff), reader)
        usable = decisions["usable"].to_numpy()
        return float((decisions["reason"].to_numpy()[usable] == "futility").mean())

    cutoff, feasible = _bisect(_candidates(values, target.op, upward=False), p_stop, max_stop, smallest=False)
    return _result(
        "futility", target, cutoff, scenario, max_stop, feasible, records, moved(cutoff), p_stop(cutoff), part
    )


def _result(
    kind: str,
    target: Compare,
    cutoff: float,
    scenario: str,
    limit: float,
    feasible: bool,
    records: pd.DataFrame,
    rules: DecisionRules,
    achieved: float,
    part: pd.DataFrame,
) -> Calibration:
    table = oc_table(records, rules)
    usable = int(table.table.loc[table.table["scenario"] == scenario, "replicates"].iloc[0])
    return Calibration(
        kind,
        target.term.key,
        target.value,
        cutoff,
        scenario,
        limit,
        achieved,
        mcse_proportion(achieved, usable),
        feasible,
        rules,
        table,
    )


def reevaluate(
    records: pd.DataFrame,
    quantities: Sequence[str],
    go: str,
    no_go: str | None = None,
    interims: Sequence[tuple[str | None, str | None]] = (),
) -> OcTable:
    """The OC of other rule texts on the stored records (terms not stored exactly come from the grid)."""
    return oc_table(records, decision_rules(go, quantities, no_go=no_go, interims=interims))
