"""The Markdown twin of the HTML report (figures linked from figures/, not embedded)."""

from __future__ import annotations

import pandas as pd

from marrow.formatting import plural


def _md_text(value: str) -> str:
    """Keep user text from breaking a Markdown table or injecting HTML."""
    import html

    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", " ")


def _table(table: pd.DataFrame | None) -> str:
    from marrow.report.html import table_rows

    t = table_rows(table)
    if not t["rows"]:
        return ""
    lines = ["| " + " | ".join(_md_text(c) for c in t["columns"]) + " |", "|" + "---|" * len(t["columns"])]
    lines += ["| " + " | ".join(_md_text(c) for c in row) + " |" for row in t["rows"]]
    return "\n".join(lines) + "\n"


def render_markdown(outcome) -> str:
    from marrow.report.run import ENDPOINT_FIGURES, _checks_table, _section_name, _summary_table, sections

    plan = outcome.plan
    out = [f"# {_md_text(plan.title)}", ""]
    out.append(
        f"{plural(plan.settings.chains, 'chain')} x {plural(plan.settings.draws, 'draw')} "
        f"(tune {plan.settings.tune}, seed {plan.settings.seed}); prior set `{plan.prior}`; "
        f"{outcome.created_utc}; {outcome.seconds:.0f} s."
    )
    out.append("")
    if outcome.synthetic:
        out += [
            "> **SYNTHETIC DATA**: the bundled synthetic trial (74 patients, 7 centers), reconstructed from "
            "published aggregates; no patient records, no clinical conclusions.",
            "",
        ]
    warnings = []
    for s in outcome.diagnostics_failed:
        warnings.append(
            f"- **{_md_text(s.label)}**: diagnostics FAILED: "
            + "; ".join(f"{c.name} = {c.value} (threshold {c.threshold})" for c in s.failed_checks)
        )
    for s in outcome.steps:
        if s.status == "failed":
            warnings.append(f"- **{_md_text(s.label)}**: FAILED: {_md_text(s.note.splitlines()[0])}")
    if warnings:
        out += ["> **Warnings**", ">"] + ["> " + w for w in warnings] + [""]
    skipped = [s for s in outcome.steps if s.status == "skipped"]
    if skipped:
        out += ["Skipped: " + "; ".join(f"{_md_text(s.label)} ({_md_text(s.note)})" for s in skipped), ""]
    out += ["## Headline results", "", _table(outcome.headline)]
    for key, title in sections().items():
        steps = outcome.section_steps(key)
        if not steps:
            continue
        out += [f"## {title}", ""]
        for s in steps:
            out += [f"### {_md_text(s.label)}", ""]
            if s.status != "ok":
                out += [f"{s.status.upper()}: {_md_text(s.note.splitlines()[0])}", ""]
                continue
            if s.note:
                out += [f"Note: {_md_text(s.note)}", ""]
            out += [_table(_summary_table(s.summary))]
            out += [f"- {_md_text(text)} = {value:.3f}" for text, value in s.probabilities] + [""]
            for f in s.figures:
                if f.kind in ENDPOINT_FIGURES and not f.error:
                    out += [f"![{f.title}]({f.png})", "", f"*{f.title}* ([PDF]({f.pdf}))", ""]
        if outcome.comparison is not None and "section" in outcome.comparison:
            part = outcome.comparison[outcome.comparison["section"] == _section_name(key)]
            if not part.empty:
                try:
                    from marrow.frequentist.table import display_table

                    part = display_table(part)
                except Exception:  # raw columns then
                    pass
                out += ["#### Frequentist counterpart", "", _table(part)]
    out += ["## Diagnostics", ""]
    for s in outcome.steps:
        if s.status == "ok":
            out += [f"### {_md_text(s.label)}", "", _table(_checks_table(s.checks))]
            for f in s.figures:
                if f.kind not in ENDPOINT_FIGURES and not f.error:
                    out += [f"![{f.title}]({f.png})", ""]
    out += ["## Frequentist comparison", ""]
    out += [
        "See `tables/frequentist-comparison.csv`."
        if outcome.comparison is not None
        else f"Skipped: {_md_text(outcome.comparison_note)}",
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
        for src in outcome.sources
    ]
    out += ["- versions: " + ", ".join(f"{k} {v}" for k, v in outcome.versions.items()), ""]
    return "\n".join(out)
