"""What the report shows: its sections, headline rows and figure titles, and the tables it writes.

The tables are pandas DataFrames of plain values, written to `tables/` by `marrow.report.run` and
shown by both renderers through `marrow.report.view`. Nothing here fits, reads or writes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from marrow.descriptor import REGISTRY, Headline


def sections() -> dict[str, str]:
    """Endpoint sections in report order: model name -> title (each model's descriptor's `section`)."""
    return {d.name: d.section or d.name for d in REGISTRY}


def headline_rows() -> list[Headline]:
    """The headline table's rows: each model's descriptor's `headline`, in registry order."""
    return [row for d in REGISTRY for row in d.headline]


FIGURE_TITLES = {
    "ppc": "Posterior predictive check: responders by center and in total",
    "centers": "Center response rates: observed (exact 95% CI) and partially pooled (95% CrI)",
    "recovery": "Cumulative incidence of recovery by lineage: Kaplan-Meier and model (95% CrI)",
    "survival": "Overall survival: Kaplan-Meier and model (95% CrI)",
    "effects": "Covariate effects: Bayesian and frequentist",
    "prior-posterior": "Prior and posterior densities",
    "trace": "Trace plots",
    "rank": "Rank plots",
    "energy": "Energy plot",
    "loo-pit": "LOO-PIT calibration",
}
ENDPOINT_FIGURES = ("ppc", "centers", "recovery", "survival", "effects")
HEADLINE_COLUMNS = ["endpoint", "posterior median", "95% CrI", "posterior probability", "frequentist (95% CI)", "model"]


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The posterior summary's reported columns (95% equal-tailed interval as 2.5% and 97.5%)."""
    return summary[["quantity", "median", "lower", "upper", "sd", "ess_bulk", "ess_tail", "r_hat"]].rename(
        columns={"lower": "2.5%", "upper": "97.5%"}
    )


def checks_table(checks: list) -> pd.DataFrame:
    """One row per diagnostic check (`marrow.diagnostics.Check`)."""
    return pd.DataFrame(
        [
            {"check": c.name, "value": c.value, "threshold": c.threshold, "status": c.status, "where": c.detail}
            for c in checks
        ]
    )


def comparison_display(table: pd.DataFrame) -> pd.DataFrame:
    """The frequentist comparison as shown (estimate and interval in one column); the raw table if that fails."""
    try:
        from marrow.frequentist.table import display_table

        return display_table(table)
    except Exception:  # the display helper is a convenience; the raw table is still right
        return table


def section_name(model: str) -> str:
    """The comparison table's `section` value for a model's rows (its descriptor's `section`)."""
    return sections().get(model, model)


def fmt_value(value: float, scale: str) -> str:
    """A number for people: rates as percentages, days and counts whole, ratios to 2-3 digits."""
    if value is None or not np.isfinite(value):
        return "-"
    if scale in ("rate", "probability"):
        return f"{100 * value:.0f}%"
    if scale in ("days", "count"):
        return f"{value:.0f}"
    if scale in ("weeks", "months"):
        return f"{value:.1f}"
    if scale == "ratio":
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{value:.2f}"


def fmt_interval(lower: float, upper: float, scale: str) -> str:
    if scale in ("rate", "probability"):
        return f"{100 * lower:.0f}\u2013{100 * upper:.0f}%"
    return f"{fmt_value(lower, scale)}\u2013{fmt_value(upper, scale)}"


def headline_table(steps: Sequence[Any], comparison: pd.DataFrame | None) -> pd.DataFrame:
    """The report's first table: the key estimates of every model that ran, with frequentist counterparts.

    `steps` are the report's step records (name, model, label, status, fit, summary, probabilities)."""
    rows = []
    by_name = {s.name: s for s in steps if s.status == "ok"}
    for row_spec in headline_rows():
        name, variable, element, label = row_spec.step, row_spec.variable, row_spec.element, row_spec.label
        step = by_name.get(name)
        if step is None or step.summary is None:
            continue
        table = step.summary[step.summary["variable"] == variable]
        if element == "12 months":
            from marrow.time_units import one_year, same_time

            year = one_year(step.fit.spec.time_unit)
            table = table[[_is_number(e) and same_time(float(e), year) for e in table["element"]]]
        elif element is not None:
            table = table[[_same(e, element) for e in table["element"]]]
        for _, row in table.iterrows():
            probability = ""
            if row_spec.probability:
                probability = "; ".join(
                    f"{text} = {value:.2f}" for text, value in step.probabilities if row_spec.probability in text
                )
            freq, _ = _freq_for(steps, comparison, step.model, variable, row["element"])
            rows.append(
                {
                    "endpoint": label or row["quantity"],
                    "posterior median": fmt_value(row["median"], row["scale"]),
                    "95% CrI": fmt_interval(row["lower"], row["upper"], row["scale"]),
                    "posterior probability": probability,
                    "frequentist (95% CI)": freq,
                    "model": step.label,
                }
            )
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


def _freq_for(
    steps: Sequence[Any], table: pd.DataFrame | None, model: str, variable: str, element: str
) -> tuple[str, str]:
    """(frequentist estimate (95% CI), method) for a posterior quantity, from the comparison table."""
    if table is None or "variable" not in table:
        return "", ""
    rows = table[(table["variable"] == variable) & (table["section"] == section_name(model))]
    if "element" in rows:
        rows = rows[[_same(e, element) for e in rows["element"]]]
    rows = rows[rows["freq"].notna()] if "freq" in rows else rows.iloc[0:0]
    if rows.empty:
        return "", ""
    # Profile-likelihood intervals where offered: better than Wald in trials this small.
    preferred = [i for i, m in enumerate(rows.get("method", pd.Series([""] * len(rows)))) if "profile" in str(m)]
    row = rows.iloc[preferred[0] if preferred else 0]
    scale = _scale_of(steps, variable)
    return (
        f"{fmt_value(row['freq'], scale)} ({fmt_interval(row['freq_lower'], row['freq_upper'], scale)})",
        str(row.get("method", "")),
    )


def _same(a, b) -> bool:
    if str(a) == str(b):
        return True
    try:
        return abs(float(a) - float(b)) < 1e-6
    except (TypeError, ValueError):
        return False


def _is_number(text) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _scale_of(steps: Sequence[Any], variable: str) -> str:
    for step in steps:
        if step.summary is not None and variable in set(step.summary["variable"]):
            return str(step.summary[step.summary["variable"] == variable]["scale"].iloc[0])
    return "ratio"
