"""The Markdown twin of the HTML report (figures linked from figures/, not embedded).

Renders a `marrow.report.view.ReportView` (plain values only)."""

from __future__ import annotations

from marrow.formatting import plural
from marrow.report.view import ReportView, Table


def _md_text(value: str) -> str:
    """Keep user text from breaking a Markdown table or injecting HTML."""
    import html

    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", " ")


def _table(t: Table | None) -> str:
    if t is None or not t.rows:
        return ""
    lines = ["| " + " | ".join(_md_text(c) for c in t.columns) + " |", "|" + "---|" * len(t.columns)]
    lines += ["| " + " | ".join(_md_text(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"


def render_markdown(view: ReportView) -> str:
    plan = view.plan
    out = [f"# {_md_text(plan.title)}", ""]
    out.append(
        f"{plural(plan.settings.chains, 'chain')} x {plural(plan.settings.draws, 'draw')} "
        f"(tune {plan.settings.tune}, seed {plan.settings.seed}); prior set `{plan.prior}`; "
        f"{view.created_utc}; {view.seconds:.0f} s."
    )
    out.append("")
    if view.synthetic:
        out += [
            "> **SYNTHETIC DATA**: the bundled synthetic trial (74 patients, 7 centers), reconstructed from "
            "published aggregates; no patient records, no clinical conclusions.",
            "",
        ]
    warnings = []
    for s in view.failed_diagnostics:
        warnings.append(
            f"- **{_md_text(s.label)}**: diagnostics FAILED: "
            + "; ".join(f"{c.name} = {c.value} (threshold {c.threshold})" for c in s.failed_checks)
        )
    for s in view.failed:
        warnings.append(f"- **{_md_text(s.label)}**: FAILED: {_md_text(s.note.splitlines()[0])}")
    if warnings:
        out += ["> **Warnings**", ">"] + ["> " + w for w in warnings] + [""]
    if view.skipped:
        out += ["Skipped: " + "; ".join(f"{_md_text(s.label)} ({_md_text(s.note)})" for s in view.skipped), ""]
    out += ["## Headline results", "", _table(view.headline)]
    for section in view.sections:
        if not section.steps:
            continue
        out += [f"## {section.title}", ""]
        for s in section.steps:
            out += [f"### {_md_text(s.label)}", ""]
            if s.status != "ok":
                out += [f"{s.status.upper()}: {_md_text(s.note.splitlines()[0])}", ""]
                continue
            if s.note:
                out += [f"Note: {_md_text(s.note)}", ""]
            out += [_table(s.summary)]
            out += [f"- {_md_text(text)} = {value:.3f}" for text, value in s.probabilities] + [""]
            for f in s.endpoint_figures:
                if not f.error:
                    out += [f"![{f.title}]({f.png})", "", f"*{f.title}* ([PDF]({f.pdf}))", ""]
        if section.freq is not None:
            out += ["#### Frequentist counterpart", "", _table(section.freq)]
    out += ["## Diagnostics", ""]
    for s in view.fitted:
        out += [f"### {_md_text(s.label)}", "", _table(s.checks)]
        for f in s.diagnostic_figures:
            if not f.error:
                out += [f"![{f.title}]({f.png})", ""]
    out += ["## Frequentist comparison", ""]
    out += [
        "See `tables/frequentist-comparison.csv`."
        if view.comparison is not None
        else f"Skipped: {_md_text(view.comparison_note)}",
        "",
    ]
    out += [
        "## Analysis plan",
        "",
        "```toml",
        plan.text.rstrip() or "# no plan file: the documented defaults",
        "```",
        "",
    ]
    out += ["## Reproducibility", ""]
    out += [
        f"- {src['role']}: `{_md_text(src['path'])}` ({plural(int(src['rows']), 'row')}, sha256 `{src['sha256']}`)"
        for src in view.sources
    ]
    out += ["- versions: " + ", ".join(f"{k} {v}" for k, v in view.versions.items()), ""]
    return "\n".join(out)
