"""The self-contained HTML report: CSS inline, figures inline as base64 PNG, no external URLs.

Rendered with Jinja2 with autoescaping on, so every piece of user text (center, lineage and
covariate names, file paths, the plan) is HTML-escaped.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd

TEMPLATE_DIR = Path(__file__).parent


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["b64"] = lambda payload: base64.b64encode(payload).decode("ascii")
    return env


def table_rows(table: pd.DataFrame | None, digits: int = 3) -> dict:
    """Columns and display strings of a table (numbers formatted; escaping is left to the template)."""
    from marrow.formatting import fmt_number

    if table is None or table.empty:
        return {"columns": [], "rows": []}
    rows = []
    for _, row in table.iterrows():
        cells = []
        for column, value in row.items():
            if isinstance(value, float):
                places = 0 if str(column).startswith("ess") else digits
                cells.append(fmt_number(value, places))
            else:
                cells.append("" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value))
        rows.append(cells)
    return {"columns": [str(c) for c in table.columns], "rows": rows}


def context(outcome) -> dict:
    """Everything the template shows, as plain values."""
    from marrow import __version__
    from marrow.report.run import ENDPOINT_FIGURES, _checks_table, _section_name, _summary_table
    from marrow.report.run import sections as section_titles

    plan = outcome.plan
    sections = []
    for key, title in section_titles().items():
        steps = []
        for step in outcome.section_steps(key):
            steps.append(
                {
                    "step": step,
                    "summary": table_rows(_summary_table(step.summary)) if step.summary is not None else None,
                    "figures": [f for f in step.figures if f.kind in ENDPOINT_FIGURES],
                }
            )
        freq_rows = None
        if outcome.comparison is not None and "section" in outcome.comparison:
            part = outcome.comparison[outcome.comparison["section"] == _section_name(key)]
            if not part.empty:
                try:
                    from marrow.frequentist.table import display_table

                    part = display_table(part)
                except Exception:  # show the raw columns
                    pass
                freq_rows = table_rows(part)
        sections.append({"id": key, "title": title, "steps": steps, "freq": freq_rows})
    diagnostics = [
        {
            "step": s,
            "checks": table_rows(_checks_table(s.checks)),
            "figures": [f for f in s.figures if f.kind not in ENDPOINT_FIGURES],
        }
        for s in outcome.steps
        if s.status == "ok"
    ]
    comparison = None
    if outcome.comparison is not None:
        try:
            from marrow.frequentist.table import display_table

            comparison = table_rows(display_table(outcome.comparison))
        except Exception:  # fall back to the raw table
            comparison = table_rows(outcome.comparison)
    import json

    return {
        "title": plan.title,
        "outcome": outcome,
        "plan": plan,
        "version": __version__,
        "headline": table_rows(outcome.headline),
        "sections": sections,
        "diagnostics": diagnostics,
        "comparison": comparison,
        "plan_text": plan.text or "# no plan file: the documented defaults\n" + json.dumps(plan.to_dict(), indent=2),
        "problems": [s for s in outcome.steps if s.status == "failed"],
        "skipped": [s for s in outcome.steps if s.status == "skipped"],
        "failed_diagnostics": outcome.diagnostics_failed,
        "figure_errors": [(s, f) for s in outcome.steps for f in s.figures if f.error],
    }


def render_html(outcome) -> str:
    return _environment().get_template("report.html").render(**context(outcome))
