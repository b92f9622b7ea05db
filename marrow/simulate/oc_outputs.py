"""What `marrow simulate` shows and writes: the OC tables (terminal, CSV, Markdown, LaTeX), the OC figure
(P(go) against the true value, +/- 2 MCSE) and an HTML page in the style of the report."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from marrow.formatting import plural, render

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from marrow.simulate.calibrate import Calibration
    from marrow.simulate.oc import OcTable
    from marrow.simulate.rules import DecisionRules

FILES = ("oc.csv", "oc_passed.csv", "estimation.csv", "decisions.csv", "oc.md", "oc.tex", "oc.png", "oc.pdf", "oc.html")


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def display(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The table for reading: each value with its MCSE as `0.050 (0.007)`, counts as integers."""
    import pandas as pd

    out = {}
    columns = list(table.columns)
    paired = {"coverage 95%": "coverage mcse"}
    for column in columns:
        if column.endswith(" mcse"):
            continue
        mcse = paired.get(column, f"{column} mcse")
        places = 1 if column.startswith(("E[N]", "N ")) else digits
        if mcse in columns:
            out[column] = [
                f"{_fmt(v, places)} ({_fmt(m, places)})" for v, m in zip(table[column], table[mcse], strict=True)
            ]
        elif column in ("replicates", "diagnostics failed", "errors"):
            out[column] = [str(int(v)) for v in table[column]]
        elif pd.api.types.is_float_dtype(table[column]):
            out[column] = [_fmt(float(v), places) for v in table[column]]
        else:
            out[column] = [str(v) for v in table[column]]
    return pd.DataFrame(out)


def notes(oc: OcTable) -> list[str]:
    """Plain sentences the reader must see (diagnostic failures, errors, interpolated terms)."""
    lines = []
    if oc.diagnostics_failed:
        reasons = "; ".join(f"{reason}: {n}" for reason, n in oc.failure_reasons if n)
        lines.append(
            f"{plural(oc.diagnostics_failed, 'replicate')} failed a sampler diagnostic at some analysis"
            + (f" ({reasons})" if reasons else "")
            + ": the second table leaves them out. If the two tables differ materially, raise the draws "
            "(or target_accept, for divergences) in [sampler]."
        )
    p_columns = [c for c in oc.table.columns if c.startswith("P(") and not c.endswith(" mcse")]
    extreme = oc.table[p_columns].isin([0.0, 1.0]).to_numpy().any()
    if not oc.estimation.empty:
        extreme = extreme or oc.estimation["coverage 95%"].isin([0.0, 1.0]).any()
    if extreme:
        lines.append(
            "A probability or coverage of 0 or 1 has an MCSE of 0 (every replicate agreed); with R "
            "replicates, the one-sided 95% bound on a probability never observed is about 3/R."
        )
    if oc.errors:
        lines.append(
            f"{plural(oc.errors, 'replicate')} failed to run or lacked a value; they are left out of every table."
        )
    if oc.interpolated:
        lines.append(
            "Interpolated between the stored exceedance grid points (not stored exactly): " + ", ".join(oc.interpolated)
        )
    return lines


def by_scenario(table: pd.DataFrame) -> pd.DataFrame:
    """The displayed OC table turned: one row per characteristic, one column per scenario (a terminal
    holds a few scenarios side by side, not a dozen characteristics)."""
    import pandas as pd

    shown = display(table).set_index("scenario")
    return pd.DataFrame({"": list(shown.columns), **{str(s): list(shown.loc[s]) for s in shown.index}})


def _without_totals(parts: list[tuple[pd.DataFrame, str]]) -> list[tuple[pd.DataFrame, str]]:
    """The OC tables, the second (without the failures) without the counts of failures and errors,
    which are the first table's."""
    return [(t.drop(columns=["diagnostics failed", "errors"]) if i else t, c) for i, (t, c) in enumerate(parts)]


def render_tables(oc: OcTable, fmt: str, title: str = "Operating characteristics", estimation: bool = True) -> str:
    """The OC table, without the diagnostic failures when there are any, and the estimation table(s)
    unless `estimation` is False. In the terminal ("table") the OC tables have one column per scenario."""
    if fmt == "csv":
        return render(oc.table, "csv")
    parts = [(oc.table, title)]
    if oc.diagnostics_failed:
        parts.append(
            (
                oc.table_passed,
                f"OC without the {plural(oc.diagnostics_failed, 'replicate')} that failed a diagnostic",
            )
        )
    shown = [by_scenario(t) if fmt == "table" else display(t) for t, _ in _without_totals(parts)]
    if estimation and not oc.estimation.empty:
        caption = "Estimation at the analysis where each trial ended (value (MCSE))"
        parts.append((oc.estimation, caption))
        if oc.diagnostics_failed:
            parts.append((oc.estimation_passed, f"{caption}, without the failed diagnostics"))
        shown += [display(t) for t, _ in parts[len(shown) :]]
    text = "\n".join(render(t, fmt, title=caption) for t, (_, caption) in zip(shown, parts, strict=True))
    extra = notes(oc)
    if extra and fmt != "latex":
        text += "\n" + "\n".join(f"Note: {line}" for line in extra) + "\n"
    return text


def figure(oc: OcTable, title: str = "", width: float = 4.5) -> Figure:
    """P(go) (and P(no-go)) per scenario against the scenario's true value of the first headline
    quantity, with +/- 2 MCSE bars; scenarios by name when there is no true value."""
    import numpy as np

    from marrow.plots import style

    table = oc.table
    quantity = oc.quantities[0] if oc.quantities else None
    with style.context():
        fig = style.new_figure(width, 3.0)
        ax = fig.add_subplot(1, 1, 1)
        if quantity is not None:
            x = table[f"true {quantity}"].to_numpy(dtype=float)
            ax.set_xlabel(f"true {style.plain(quantity)}")
        else:
            x = np.arange(len(table), dtype=float)
            ax.set_xticks(x, [style.plain(s) for s in table["scenario"]])
        order = np.argsort(x, kind="stable")
        for label, color in (("P(go)", style.BAYES), ("P(no-go)", style.FREQ)):
            y = table[label].to_numpy(dtype=float)
            err = 2 * table[f"{label} mcse"].to_numpy(dtype=float)
            # points only: a line between scenarios would read as the OC between them, never simulated
            ax.errorbar(x[order], y[order], yerr=err[order], fmt="o", color=color, capsize=2.5, label=label)
        if quantity is not None:
            for xi, yi, name in zip(x, table["P(go)"], table["scenario"], strict=True):
                ax.annotate(style.plain(name), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=6)
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("probability (+/- 2 MCSE)")
        style.light_grid(ax, "y")
        ax.legend(loc="best")
        if title:
            style.suptitle(fig, title, width)
        style.freeze_layout(fig)
    return fig


def _report_css() -> str:
    """The report's stylesheet (one source: marrow/report/report.html)."""
    template = Path(__file__).resolve().parent.parent / "report" / "report.html"
    match = re.search(r"<style>(.*?)</style>", template.read_text(encoding="utf-8"), re.S)
    return match.group(1) if match else ""


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="marrow {{ version }}">
<title>{{ title }}</title>
<style>{{ css | safe }}</style>
</head>
<body>
<header id="top">
<h1>{{ title }}</h1>
<p class="meta">marrow {{ version }}{% for key, value in meta %} &middot; {{ key }}: {{ value }}{% endfor %}</p>
{% if warnings %}
<div class="box warn" id="warnings"><b>Warnings</b><ul>
{% for line in warnings %}<li>{{ line }}</li>{% endfor %}
</ul></div>
{% endif %}
</header>
<h2>Decision rules</h2>
<table><thead><tr><th>when</th><th>rule</th></tr></thead><tbody>
{% for when, text in rules %}<tr><td>{{ when }}</td><td><code>{{ text }}</code></td></tr>{% endfor %}
</tbody></table>
{% if calibration %}
<div class="box" id="calibration"><b>Calibration</b><ul>
{% for line in calibration %}<li>{{ line }}</li>{% endfor %}
</ul></div>
{% endif %}
{% for t in tables %}
<h2 id="{{ t.id }}">{{ t.title }}</h2>
<div class="scroll"><table>
<thead><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in t.rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table></div>
{% endfor %}
<h2>Figure</h2>
<figure id="fig-oc"><img alt="P(go) against the true value" src="data:image/png;base64,{{ png }}">
<figcaption>P(go) and P(no-go) per scenario with +/- 2 Monte Carlo standard errors.
Files: <code>oc.png</code>, <code>oc.pdf</code>.</figcaption></figure>
<h2>Definitions</h2>
<p>P(go) counts early stops for efficacy and final go decisions; P(no-go) early stops for futility and final
no-go decisions; P(gray) the rest. E[N] is the mean number of patients at the analysis where the trial ended.
Bias, RMSE and coverage compare the posterior mean and 95% interval at that analysis with the true value.
Each value is followed by its Monte Carlo standard error in parentheses. See docs/simulate.md.</p>
</body>
</html>
"""


def html_page(
    oc: OcTable,
    rules: DecisionRules,
    png: bytes,
    title: str = "Operating characteristics",
    meta: dict[str, object] | None = None,
    calibration: Calibration | None = None,
) -> str:
    """The self-contained HTML page (autoescaped: scenario names and rule texts are shown literally)."""
    import base64

    import jinja2

    from marrow import __version__

    def block(table: pd.DataFrame, title_: str, ident: str) -> dict:
        shown = display(table)
        return {"title": title_, "id": ident, "columns": list(shown.columns), "rows": shown.values.tolist()}

    tables = [block(oc.table, "Operating characteristics (all replicates that ran)", "oc")]
    if oc.diagnostics_failed:
        passed = oc.table_passed.drop(columns=["diagnostics failed", "errors"])
        tables.append(block(passed, "Without the replicates that failed a diagnostic", "oc-passed"))
    if not oc.estimation.empty:
        tables.append(block(oc.estimation, "Estimation at the analysis where each trial ended", "estimation"))
        if oc.diagnostics_failed:
            tables.append(
                block(oc.estimation_passed, "Estimation, without the replicates that failed a diagnostic", "est-passed")
            )
    if calibration is not None:
        tables.append(
            block(
                calibration.oc.table,
                f"At the calibrated cut-off: {calibration.term} > {calibration.cutoff:.4g}",
                "oc-cal",
            )
        )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_PAGE).render(
        version=__version__,
        title=title,
        css=_report_css(),
        meta=[(str(k), str(v)) for k, v in (meta or {}).items()],
        warnings=notes(oc),
        rules=rules.described(),
        calibration=[calibration.describe()] if calibration else [],
        tables=tables,
        png=base64.b64encode(png).decode("ascii"),
    )


def write_outputs(
    out_dir: Path | str,
    oc: OcTable,
    rules: DecisionRules,
    title: str = "Operating characteristics",
    meta: dict[str, object] | None = None,
    calibration: Calibration | None = None,
) -> list[Path]:
    """Write FILES into `out_dir` (created if needed), each atomically; existing ones are replaced."""
    from marrow.fits.io import write_bytes, write_text
    from marrow.plots.style import figure_bytes

    out = Path(out_dir)
    fig = figure(oc, title)
    png = figure_bytes(fig, "png", 150)
    texts = {
        "oc.csv": render(oc.table, "csv"),
        "oc_passed.csv": render(oc.table_passed, "csv"),
        "estimation.csv": render(oc.estimation, "csv") if not oc.estimation.empty else "",
        "decisions.csv": render(oc.decisions, "csv"),
        "oc.md": render_tables(oc, "markdown", title),
        "oc.tex": render_tables(oc, "latex", title),
        "oc.html": html_page(oc, rules, png, title, meta, calibration),
    }
    written = []
    for name, text in texts.items():
        write_text(out / name, text, force=True)
        written.append(out / name)
    write_bytes(out / "oc.png", png, force=True)
    write_bytes(out / "oc.pdf", figure_bytes(fig, "pdf"), force=True)
    written += [out / "oc.png", out / "oc.pdf"]
    return written
