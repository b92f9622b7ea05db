"""The self-contained HTML report: CSS inline, figures inline as base64 PNG, no external URLs.

Renders a `marrow.report.view.ReportView` (plain values only) with Jinja2 with autoescaping on, so
every piece of user text (center, lineage and covariate names, file paths, the plan) is HTML-escaped.
"""

from __future__ import annotations

import base64
from pathlib import Path

from marrow.report.view import ReportView

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


def render_html(view: ReportView) -> str:
    plan_text = view.plan.text or "# no plan file: the documented defaults\n" + view.plan_json
    return _environment().get_template("report.html").render(report=view, plan=view.plan, plan_text=plan_text)
