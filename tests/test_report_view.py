"""The report's renderers read only the view model: both render a `ReportView` built by hand (no fit,
no data, no DataFrame), show the same values, and escape user text."""

from __future__ import annotations

from marrow.diagnostics import Check
from marrow.report.html import render_html
from marrow.report.markdown import render_markdown
from marrow.report.plan import load_plan
from marrow.report.view import Figure, ReportView, SectionView, StepView, Table

EVIL = "<script>alert(1)</script>|x"


def _step(name: str, model: str, status: str = "ok", checks=(), note: str = "") -> StepView:
    return StepView(
        name=name,
        label=f"{model} ({name})",
        model=model,
        status=status,
        note=note,
        seconds=1.25,
        fit_file=f"fits/{name}.nc" if status == "ok" else "",
        sampler="nutpie" if status == "ok" else "",
        chains=2 if status == "ok" else 0,
        draws=200 if status == "ok" else 0,
        summary=Table(("quantity", "median"), ((f"Rate in {EVIL}", "0.412"),)) if status == "ok" else None,
        probabilities=(("P(rate > 0.3)", 0.9134),) if status == "ok" else (),
        checks=Table(("check", "status"), tuple((c.name, c.status) for c in checks)),
        failed_checks=tuple(c for c in checks if not c.passed),
        figures=(
            (Figure("ppc", "Posterior predictive check", "figures/a.pdf", "figures/a.png", b"\x89PNG"),)
            if status == "ok"
            else ()
        ),
    )


def _view() -> ReportView:
    bad = Check("R-hat (max)", "1.2", "1.01", False, "center_rate[A]", "run more draws")
    response = _step("response", "response", checks=(bad,))
    safety = _step("safety", "safety", status="skipped", note="no adverse_event column")
    freq = Table(("quantity", "frequentist"), (("Response rate", "0.40 (0.29-0.52)"),))
    return ReportView(
        title="Trial & <b>report</b>",
        version="0.1.0",
        created_utc="2026-01-01T00:00:00Z",
        seconds=12.0,
        synthetic=True,
        plan=load_plan(None, None, None, None, True),
        plan_json="{}",
        headline=Table(("endpoint", "posterior median"), (("Response rate (CR or PR)", "41%"),)),
        sections=(
            SectionView("response", "Response", (response,), freq),
            SectionView("recovery", "Time to recovery", (), None),
            SectionView("safety", "Safety", (safety,), None),
        ),
        steps=(response, safety),
        comparison=freq,
        comparison_note="",
        sources=({"role": "patients", "path": "/data/p.csv", "rows": 74, "sha256": "ab" * 32},),
        versions={"marrow": "0.1.0", "pymc": "5"},
    )


def test_both_renderers_show_the_view_and_nothing_else():
    view = _view()
    html, markdown = render_html(view), render_markdown(view)
    for text in (html, markdown):
        assert "41%" in text and "0.913" in text and "0.40 (0.29-0.52)" in text
        assert "R-hat (max) = 1.2" in text  # the failed check, at the top
        assert "no adverse_event column" in text  # the skipped step and why
        assert "ab" * 32 in text
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "Trial &amp; &lt;b&gt;report&lt;/b&gt;" in html
    assert "data:image/png;base64,iVBORw==" in html  # the figure inline
    assert "nutpie, 2 chains &times; 200 draws" in html
    assert "<script>" not in markdown and "\\|x" in markdown  # a cell cannot break the table
    assert "![Posterior predictive check](figures/a.png)" in markdown
    assert "## Time to recovery" not in markdown and "Not in this analysis plan" in html


def test_the_view_is_plain_values():
    view = _view()
    assert view.failed_diagnostics == (view.steps[0],)
    assert view.skipped == (view.steps[1],)
    assert view.fitted == (view.steps[0],)
    assert [f.kind for f in view.steps[0].endpoint_figures] == ["ppc"]
    assert view.steps[0].diagnostic_figures == ()
