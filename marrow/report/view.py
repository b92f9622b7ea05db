"""The report's view model: plain values (sections, tables of display strings, figures, checks) that
the two renderers (`html`, `markdown`) read and nothing else.

`build_view(outcome)` turns the runner's records (`marrow.report.run.Outcome`: fits, data, summaries)
into a `ReportView`; no renderer sees a fit, a data set or a DataFrame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from marrow.report.content import (
    ENDPOINT_FIGURES,
    checks_table,
    comparison_display,
    section_name,
    summary_table,
)
from marrow.report.content import sections as section_titles


@dataclass(frozen=True)
class Table:
    """Column names and rows of display strings (numbers formatted; escaping is left to the renderer)."""

    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Figure:
    """One drawn figure: files relative to the report folder and the PNG inline; `error` when it failed."""

    kind: str
    title: str
    pdf: str = ""
    png: str = ""
    png_bytes: bytes | None = None
    error: str = ""


@dataclass(frozen=True)
class StepView:
    name: str
    label: str
    model: str
    status: str  # ok, skipped, failed
    note: str
    seconds: float
    fit_file: str
    sampler: str  # '' when nothing was fitted
    chains: int
    draws: int
    summary: Table | None
    probabilities: tuple[tuple[str, float], ...]
    checks: Table
    failed_checks: tuple[Any, ...]  # marrow.diagnostics.Check values (name, value, threshold, detail, advice)
    figures: tuple[Figure, ...]

    @property
    def endpoint_figures(self) -> tuple[Figure, ...]:
        return tuple(f for f in self.figures if f.kind in ENDPOINT_FIGURES)

    @property
    def diagnostic_figures(self) -> tuple[Figure, ...]:
        return tuple(f for f in self.figures if f.kind not in ENDPOINT_FIGURES)


@dataclass(frozen=True)
class SectionView:
    id: str
    title: str
    steps: tuple[StepView, ...]
    freq: Table | None  # this endpoint's rows of the frequentist comparison


@dataclass(frozen=True)
class ReportView:
    title: str
    version: str
    created_utc: str
    seconds: float
    synthetic: bool
    plan: Any  # the frozen marrow.report.plan.Plan (settings, thresholds, prior, source, text)
    plan_json: str  # the plan's settings as JSON, for a report made without a plan file
    headline: Table
    sections: tuple[SectionView, ...]
    steps: tuple[StepView, ...]
    comparison: Table | None
    comparison_note: str
    sources: tuple[dict, ...]  # role, path, rows, sha256 of every input file
    versions: dict[str, str]

    @property
    def fitted(self) -> tuple[StepView, ...]:
        return tuple(s for s in self.steps if s.status == "ok")

    @property
    def failed_diagnostics(self) -> tuple[StepView, ...]:
        return tuple(s for s in self.fitted if s.failed_checks)

    @property
    def failed(self) -> tuple[StepView, ...]:
        return tuple(s for s in self.steps if s.status == "failed")

    @property
    def skipped(self) -> tuple[StepView, ...]:
        return tuple(s for s in self.steps if s.status == "skipped")

    @property
    def figure_errors(self) -> tuple[tuple[StepView, Figure], ...]:
        return tuple((s, f) for s in self.steps for f in s.figures if f.error)


def table(frame: pd.DataFrame | None, digits: int = 3) -> Table:
    """A DataFrame as display strings: floats to `digits` places (ESS columns whole)."""
    from marrow.formatting import fmt_number

    if frame is None or frame.empty:
        return Table()
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column, value in row.items():
            if isinstance(value, float):
                places = 0 if str(column).startswith("ess") else digits
                cells.append(fmt_number(value, places))
            else:
                cells.append("" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value))
        rows.append(tuple(cells))
    return Table(tuple(str(c) for c in frame.columns), tuple(rows))


def step_view(step: Any) -> StepView:
    """One step record of the runner (`marrow.report.run.StepOut`) as plain values."""
    settings = step.fit.settings if step.fit is not None else None
    return StepView(
        name=step.name,
        label=step.label,
        model=step.model,
        status=step.status,
        note=step.note,
        seconds=step.seconds,
        fit_file=step.fit_file,
        sampler=settings.sampler if settings is not None else "",
        chains=settings.chains if settings is not None else 0,
        draws=settings.draws if settings is not None else 0,
        summary=table(summary_table(step.summary)) if step.summary is not None else None,
        probabilities=tuple((str(text), float(value)) for text, value in step.probabilities),
        checks=table(checks_table(step.checks)),
        failed_checks=tuple(c for c in step.checks if not c.passed),
        figures=tuple(step.figures),
    )


def build_view(outcome: Any) -> ReportView:
    """The whole report as plain values, from the runner's `Outcome`."""
    from marrow.version import __version__

    steps = tuple(step_view(s) for s in outcome.steps)
    comparison = outcome.comparison
    sections = []
    for key, title in section_titles().items():
        freq = None
        if comparison is not None and "section" in comparison:
            part = comparison[comparison["section"] == section_name(key)]
            if not part.empty:
                freq = table(comparison_display(part))
        sections.append(SectionView(key, title, tuple(s for s in steps if s.model == key), freq))
    plan = outcome.plan
    return ReportView(
        title=plan.title,
        version=__version__,
        created_utc=outcome.created_utc,
        seconds=outcome.seconds,
        synthetic=outcome.synthetic,
        plan=plan,
        plan_json=json.dumps(plan.to_dict(), indent=2),
        headline=table(outcome.headline),
        sections=tuple(sections),
        steps=steps,
        comparison=table(comparison_display(comparison)) if comparison is not None else None,
        comparison_note=outcome.comparison_note,
        sources=tuple(outcome.sources),
        versions=dict(outcome.versions),
    )
