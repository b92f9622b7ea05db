"""Operating characteristics of a design from the records of a simulation study.

Each record (one simulated trial; columns in docs/simulate.md) holds posterior functionals at every
analysis. The rules are applied afterwards, analysis by analysis: at interim k a trial still running
stops for futility or efficacy (`rules.interim_outcome`); one that reaches the final analysis ends in
go, no-go or the gray zone (`rules.final_outcome`). A trial stopped at interim k is counted as stopped
there, although its later analyses exist.

A term P(q > t) is read from the exact column `a{k}:rule:P(q > t)` when the study stored it, else from
the exceedance grid `a{k}:exceed:{t}:{q}`: exactly at a grid point, by linear interpolation between
the two nearest grid points otherwise (`OcTable.interpolated` names such terms; the output flags them).

Per scenario, with R usable replicates and Monte Carlo standard errors (MCSE):
- P(go) = P(stop for efficacy at an interim) + P(go at the final); P(no-go) likewise with futility;
  P(gray); P(stop at interim k for futility / for efficacy); MCSE sqrt(p (1 - p) / R);
- E[N], the mean number of patients analysed at the analysis where the trial ended (MCSE sd(N)/sqrt(R)),
  and the 10/50/90% quantiles of N (MCSE from the order statistics of their 95% interval);
- for each headline quantity q (those with a `true:{q}` column), with e = posterior mean - true value at
  the analysis where the trial ended: bias mean(e) (MCSE sd(e)/sqrt(R)), RMSE sqrt(mean(e^2)) (MCSE
  sd(e^2)/(2 RMSE sqrt(R)), the delta method), and coverage of the 95% equal-tailed interval
  (MCSE sqrt(c (1 - c) / R)).
Replicates with an `error` are left out (and counted); replicates whose fit failed a diagnostic are
counted, and the tables are given both with them (`table`) and without them (`table_passed`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from marrow.errors import UsageError
from marrow.simulate.rules import (
    GO,
    GRAY,
    NO_GO,
    DecisionRules,
    Prob,
    Stat,
    Term,
    as_rules,
    final_outcome,
    interim_outcome,
)

if TYPE_CHECKING:
    import pandas as pd

N_QUANTILES = (0.1, 0.5, 0.9)
_EXCEED = re.compile(r"^a(\d+):exceed:([^:]+):(.+)$")
_QUANTILE = re.compile(r"^a(\d+):quantile:([^:]+):(.+)$")


def mcse_proportion(p: float, r: int) -> float:
    """Monte Carlo standard error of a proportion p over r replicates."""
    return math.sqrt(p * (1.0 - p) / r) if r > 0 else float("nan")


def quantile_mcse(values: np.ndarray, p: float) -> float:
    """MCSE of the p-quantile of `values`: the half-width of its distribution-free 95% interval (order
    statistics R p -/+ 1.96 sqrt(R p (1 - p))) divided by 1.96."""
    r = len(values)
    if r < 2:
        return float("nan")
    ordered = np.sort(values)
    spread = 1.96 * math.sqrt(r * p * (1.0 - p))
    lo = int(np.clip(math.floor(r * p - spread), 0, r - 1))
    hi = int(np.clip(math.ceil(r * p + spread), 0, r - 1))
    return float(ordered[hi] - ordered[lo]) / (2 * 1.96)


def n_analyses(records: pd.DataFrame) -> int:
    """K, the number of analyses in the records (`a1:n` .. `aK:n`)."""
    ks = [int(m.group(1)) for c in records.columns if (m := re.match(r"^a(\d+):n$", str(c)))]
    if not ks:
        raise UsageError("the records hold no analyses (no a1:n column)")
    return max(ks)


def recorded_quantities(records: pd.DataFrame) -> list[str]:
    """The quantities whose posterior summaries the records hold (`a1:mean:{q}`): what rules may name."""
    return [str(c)[len("a1:mean:") :] for c in records.columns if str(c).startswith("a1:mean:")]


def headline_quantities(records: pd.DataFrame) -> list[str]:
    """The quantities with a true value in the records (`true:{q}`), in column order."""
    return [str(c)[len("true:") :] for c in records.columns if str(c).startswith("true:")]


@dataclass
class TermReader:
    """Reads a term's value at analysis k from the records, exactly or from the grid; notes interpolation."""

    records: pd.DataFrame
    interpolated: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._grid: dict[tuple[int, str], list[tuple[float, str]]] = {}
        self._quantile: dict[tuple[int, str], dict[float, str]] = {}
        for column in self.records.columns:
            if m := _EXCEED.match(str(column)):
                self._grid.setdefault((int(m.group(1)), m.group(3)), []).append((float(m.group(2)), str(column)))
            elif m := _QUANTILE.match(str(column)):
                self._quantile.setdefault((int(m.group(1)), m.group(3)), {})[float(m.group(2))] = str(column)
        for points in self._grid.values():
            points.sort()

    def column(self, name: str) -> np.ndarray:
        return self.records[name].to_numpy(dtype=np.float64)

    def __call__(self, k: int, term: Term) -> np.ndarray:
        if isinstance(term, Stat):
            if term.stat == "mean":
                name = f"a{k}:mean:{term.quantity}"
            else:
                name = self._quantile.get((k, term.quantity), {}).get(0.5, f"a{k}:quantile:0.5:{term.quantity}")
            if name not in self.records.columns:
                raise UsageError(f"the records have no column {name!r} for {term.key} at analysis {k}")
            return self.column(name)
        exact = f"a{k}:rule:{term.key}"
        if exact in self.records.columns:
            return self.column(exact)
        above = self._grid_value(k, term)
        return above if term.op in (">", ">=") else 1.0 - above

    def _grid_value(self, k: int, term: Prob) -> np.ndarray:
        points = self._grid.get((k, term.quantity))
        if not points:
            raise UsageError(
                f"the records hold neither a{k}:rule:{term.key} nor an exceedance grid for {term.quantity!r} at "
                f"analysis {k}: this rule needs a new simulation"
            )
        ts = np.array([t for t, _ in points])
        i = int(np.searchsorted(ts, term.threshold))
        if i < len(ts) and math.isclose(ts[i], term.threshold, abs_tol=1e-9):
            return self.column(points[i][1])
        if i > 0 and math.isclose(ts[i - 1], term.threshold, abs_tol=1e-9):
            return self.column(points[i - 1][1])
        if i == 0 or i == len(ts):
            raise UsageError(
                f"{term.key} at analysis {k}: the threshold is outside the stored grid ({ts[0]:g} to {ts[-1]:g})"
            )
        self.interpolated.add(term.key)
        w = (term.threshold - ts[i - 1]) / (ts[i] - ts[i - 1])
        return (1.0 - w) * self.column(points[i - 1][1]) + w * self.column(points[i][1])


def _errors(records: pd.DataFrame) -> np.ndarray:
    if "error" not in records.columns:
        return np.zeros(len(records), dtype=bool)
    return records["error"].notna().to_numpy() & (records["error"].astype(str) != "")


def _failed(records: pd.DataFrame) -> np.ndarray:
    if "diagnostics_failed" not in records.columns:
        return np.zeros(len(records), dtype=bool)
    return records["diagnostics_failed"].eq(True).to_numpy()  # error rows hold None/NaN there


def failure_reasons(records: pd.DataFrame) -> tuple[tuple[str, int], ...]:
    """How many replicates (without an error) failed each of marrow's diagnostic thresholds at some
    analysis (a replicate can fail several); empty when the records hold no diagnostics."""
    from marrow.diagnostics import Thresholds

    limits = Thresholds()
    K = n_analyses(records)
    checks = (
        (f"divergences > {limits.max_divergences}", "divergences", lambda v: v > limits.max_divergences),
        (f"R-hat > {limits.max_rhat:g}", "max_rhat", lambda v: v > limits.max_rhat),
        (f"bulk ESS < {limits.min_ess:g}", "min_ess_bulk", lambda v: v < limits.min_ess),
        (f"tail ESS < {limits.min_ess:g}", "min_ess_tail", lambda v: v < limits.min_ess),
    )
    ok = ~_errors(records)
    out = []
    for label, name, fails in checks:
        columns = [f"a{k}:{name}" for k in range(1, K + 1) if f"a{k}:{name}" in records.columns]
        if columns:
            values = records[columns].to_numpy(dtype=np.float64)
            out.append((label, int((fails(values).any(axis=1) & ok).sum())))
    return tuple(out)


def decide(records: pd.DataFrame, rules: DecisionRules, reader: TermReader | None = None) -> pd.DataFrame:
    """One row per record: `stage` (the analysis where the trial ended), `reason` (futility, efficacy,
    go, no-go, gray), `decision` (go, no-go or gray), `n` (patients analysed there), `usable` (no error
    and every term needed was a number) and `diagnostics_failed`."""
    import pandas as pd

    reader = reader or TermReader(records)
    K = n_analyses(records)
    if K != rules.n_analyses:
        raise UsageError(f"the records have {K} analyses but the rules describe {rules.n_analyses}")
    size = len(records)
    stage = np.full(size, K, dtype=np.int64)
    reason = np.full(size, "", dtype=object)
    running = np.ones(size, dtype=bool)
    usable = ~_errors(records)
    for k in range(1, K + 1):
        values = {t.key: reader(k, t) for t in rules.terms_at(k)}
        if values:
            missing = ~np.all([np.isfinite(v) for v in values.values()], axis=0)
            usable &= ~(missing & running)
        if k < K:
            fut, eff = (np.broadcast_to(m, (size,)) for m in interim_outcome(rules.interims[k - 1], values))
            fut, eff = fut & running, eff & running
            reason[fut], reason[eff] = "futility", "efficacy"
            stage[fut | eff] = k
            running &= ~(fut | eff)
        else:
            go, no_go = (np.broadcast_to(m, (size,)) for m in final_outcome(rules, values))
            reason[running & go] = GO
            reason[running & no_go] = NO_GO
            reason[running & ~go & ~no_go] = GRAY
    decision = np.where(reason == "efficacy", GO, np.where(reason == "futility", NO_GO, reason))
    n_at = np.column_stack([reader.column(f"a{k}:n") for k in range(1, K + 1)])
    out = pd.DataFrame(
        {
            "scenario": records["scenario"].to_numpy() if "scenario" in records else np.full(size, "scenario"),
            "replicate": records["replicate"].to_numpy() if "replicate" in records else np.arange(size),
            "stage": stage,
            "reason": reason,
            "decision": decision,
            "n": n_at[np.arange(size), stage - 1],
            "usable": usable,
            "diagnostics_failed": _failed(records),
        }
    )
    out.loc[~usable, ["reason", "decision"]] = ""
    return out


def _scenarios(records: pd.DataFrame) -> list[str]:
    if "scenario" not in records.columns:
        return ["scenario"]
    if "scenario_index" in records.columns:
        order = records.drop_duplicates("scenario").sort_values("scenario_index")
        return [str(s) for s in order["scenario"]]
    return [str(s) for s in dict.fromkeys(records["scenario"])]


def _estimation(records: pd.DataFrame, stage: np.ndarray, quantity: str, K: int) -> dict[str, float]:
    """Bias, RMSE and 95% coverage of q at the analysis where each trial ended, with MCSEs."""
    true = records[f"true:{quantity}"].to_numpy(dtype=np.float64)
    rows = np.arange(len(records))

    def at_stage(template: str) -> np.ndarray:
        columns = [template.format(k=k) for k in range(1, K + 1)]
        missing = [c for c in columns if c not in records.columns]
        if missing:
            raise UsageError(f"the records have no column {missing[0]!r}")
        return records[columns].to_numpy(dtype=np.float64)[rows, stage - 1]

    mean = at_stage(f"a{{k}}:mean:{quantity}")
    lower = at_stage(f"a{{k}}:quantile:0.025:{quantity}")
    upper = at_stage(f"a{{k}}:quantile:0.975:{quantity}")
    r = len(true)
    error = mean - true
    rmse = math.sqrt(float(np.mean(error**2))) if r else float("nan")
    cover = float(np.mean((lower <= true) & (true <= upper))) if r else float("nan")

    def sd(v: np.ndarray) -> float:
        return float(np.std(v, ddof=1)) / math.sqrt(r) if r > 1 else float("nan")

    return {
        "true": float(np.mean(true)) if r else float("nan"),
        "bias": float(np.mean(error)) if r else float("nan"),
        "bias mcse": sd(error),
        "RMSE": rmse,
        "RMSE mcse": sd(error**2) / (2.0 * rmse) if r > 1 and rmse > 0 else float("nan"),
        "coverage 95%": cover,
        "coverage mcse": mcse_proportion(cover, r),
    }


@dataclass(frozen=True)
class OcTable:
    """The OC of a study: per scenario (`table`, and `table_passed` without the replicates whose fit
    failed a diagnostic), the estimation table of the headline quantities (long: scenario x quantity),
    the per-replicate decisions, and the terms read by interpolating the exceedance grid."""

    table: pd.DataFrame
    table_passed: pd.DataFrame
    estimation: pd.DataFrame
    estimation_passed: pd.DataFrame
    decisions: pd.DataFrame
    interpolated: tuple[str, ...]
    n_interims: int
    quantities: tuple[str, ...]
    failure_reasons: tuple[tuple[str, int], ...] = ()  # (threshold, replicates failing it), `failure_reasons`

    @property
    def diagnostics_failed(self) -> int:
        return int(self.table["diagnostics failed"].sum())

    @property
    def errors(self) -> int:
        return int(self.table["errors"].sum())


def _scenario_row(
    name: str,
    part: pd.DataFrame,
    dec: pd.DataFrame,
    rules: DecisionRules,
    quantities: Sequence[str],
    totals: dict[str, int],
) -> tuple[dict, list[dict]]:
    """One scenario's OC. Columns exist only for outcomes the rules can produce: no P(gray) without a
    no-go rule (every final that is not go is then no-go), no interim stop without its rule."""
    r = len(dec)
    K = rules.n_analyses
    row: dict = {"scenario": name}
    if quantities:
        row[f"true {quantities[0]}"] = float(part[f"true:{quantities[0]}"].mean()) if r else float("nan")
    row["replicates"] = r
    outcomes = [(f"P({GO})", GO), (f"P({NO_GO})", NO_GO)] + ([(f"P({GRAY})", GRAY)] if rules.no_go else [])
    for label, value in outcomes:
        p = float((dec["decision"] == value).mean()) if r else float("nan")
        row[label], row[f"{label} mcse"] = p, mcse_proportion(p, r)
    for k in range(1, K):
        interim = rules.interims[k - 1]
        for why in [w for w, rule in (("futility", interim.futility), ("efficacy", interim.efficacy)) if rule]:
            p = float(((dec["stage"] == k) & (dec["reason"] == why)).mean()) if r else float("nan")
            row[f"P(stop {why} @{k})"], row[f"P(stop {why} @{k}) mcse"] = p, mcse_proportion(p, r)
    n = dec["n"].to_numpy(dtype=np.float64)
    row["E[N]"] = float(n.mean()) if r else float("nan")
    row["E[N] mcse"] = float(n.std(ddof=1)) / math.sqrt(r) if r > 1 else float("nan")
    for q in N_QUANTILES:
        row[f"N {q:.0%}"] = float(np.quantile(n, q)) if r else float("nan")
        row[f"N {q:.0%} mcse"] = quantile_mcse(n, q)
    row.update(totals)
    estimation = []
    stage = dec["stage"].to_numpy()
    for quantity in quantities:
        estimation.append(
            {"scenario": name, "quantity": quantity, "replicates": r, **_estimation(part, stage, quantity, K)}
        )
    return row, estimation


def oc_table(records: pd.DataFrame, rules: DecisionRules | object, quantities: Sequence[str] | None = None) -> OcTable:
    """The operating characteristics of `rules` on a study's `records` (see the module docstring).
    `rules`: a DecisionRules, or a design with rule texts (parsed against the recorded quantities).
    `quantities`: the headline quantities for bias/RMSE/coverage (default: every `true:{q}` column)."""
    import pandas as pd

    if len(records) == 0:
        raise UsageError("the study has no records")
    parsed = as_rules(rules, recorded_quantities(records))
    reader = TermReader(records)
    K = n_analyses(records)
    decisions = decide(records, parsed, reader)
    quantities = list(headline_quantities(records) if quantities is None else quantities)
    missing = [q for q in quantities if f"true:{q}" not in records.columns]
    if missing:
        raise UsageError(f"the records have no true value of {', '.join(missing)} (true:{missing[0]})")
    scenario = (
        records["scenario"].astype(str).to_numpy() if "scenario" in records else np.full(len(records), "scenario")
    )
    tables: dict[bool, tuple[list, list]] = {False: ([], []), True: ([], [])}
    for name in _scenarios(records):
        in_scenario = scenario == name
        usable = in_scenario & decisions["usable"].to_numpy()
        failed = usable & decisions["diagnostics_failed"].to_numpy()
        totals = {
            "diagnostics failed": int(failed.sum()),
            "errors": int((in_scenario & ~decisions["usable"].to_numpy()).sum()),
        }
        for passed_only in (False, True):
            keep = usable & ~failed if passed_only else usable
            row, estimation = _scenario_row(name, records[keep], decisions[keep], parsed, quantities, totals)
            tables[passed_only][0].append(row)
            tables[passed_only][1].extend(estimation)
    frames = {key: (pd.DataFrame(rows), pd.DataFrame(est)) for key, (rows, est) in tables.items()}
    return OcTable(
        frames[False][0],
        frames[True][0],
        frames[False][1],
        frames[True][1],
        decisions,
        tuple(sorted(reader.interpolated)),
        K - 1,
        tuple(quantities),
        failure_reasons(records),
    )
