"""Run an analysis plan: fit every model, diagnose, summarise, compare, draw, and write the report folder.

`run_report(plan, out, force)` builds the whole folder in a temporary sibling and swaps it into
place only at the end, so an interrupted run never leaves a half-written report. Steps whose
model module is not available, or (when the plan did not name them) whose data are missing,
are reported as skipped; a step that raises is reported as failed and the others still run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marrow.descriptor import REGISTRY, Headline
from marrow.errors import DataError, MarrowError, OutputExistsError, Problem
from marrow.formatting import plural
from marrow.report.plan import Plan, Step


def sections() -> dict[str, str]:
    """Endpoint sections in report order: model name -> title (each model's descriptor's `section`)."""
    return {d.name: d.section or d.name for d in REGISTRY}


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
ENDPOINT_FIGURES = ("ppc", "centers", "recovery", "survival", "effects")  # shown in their model's section


@dataclass
class FigureOut:
    kind: str
    title: str
    pdf: str = ""
    png: str = ""
    png_bytes: bytes | None = None
    error: str = ""


@dataclass
class StepOut:
    name: str
    label: str
    model: str
    status: str = "pending"  # ok, skipped, failed
    note: str = ""
    explicit: bool = False
    seconds: float = 0.0
    fit_file: str = ""
    fit: Any = None
    data: Any = None
    checks: list = field(default_factory=list)
    summary: pd.DataFrame | None = None
    probabilities: list = field(default_factory=list)
    figures: list[FigureOut] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failed_checks(self) -> list:
        return [c for c in self.checks if not c.passed]


@dataclass
class Outcome:
    plan: Plan
    steps: list[StepOut]
    comparison: pd.DataFrame | None = None
    comparison_note: str = ""
    headline: pd.DataFrame | None = None
    sources: list[dict] = field(default_factory=list)
    synthetic: bool = False
    created_utc: str = ""
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)
    out: str = ""
    pdf_pages: int = 0  # report.pdf's pages (plan.pdf), or 0
    pdf_error: str = ""  # why report.pdf could not be printed (the rest of the folder stands)

    @property
    def diagnostics_failed(self) -> list[StepOut]:
        return [s for s in self.steps if s.status == "ok" and s.failed_checks]

    def section_steps(self, section: str) -> list[StepOut]:
        return [s for s in self.steps if s.model == section]


Progress = Callable[[str], None]


def _silent(message: str) -> None:
    return None


def run_report(plan: Plan, out: Path | str, force: bool = False, progress: Progress = _silent) -> Outcome:
    """Run `plan` and write the report folder `out` (refused if it exists, unless `force`)."""
    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(str(out))
    from marrow.fits.io import make_folders, remove_folders

    parent = out.resolve().parent
    created = make_folders(parent)  # removed again if the report fails: a rejected run leaves no folders
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=parent))
    try:
        outcome = _build(plan, work, progress)
        outcome.out = str(out)
        _swap(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        remove_folders(created)
        raise
    return outcome


def _swap(work: Path, out: Path) -> None:
    """Put the finished folder in place: old one moved aside first, deleted last."""
    from marrow.fits.io import output_mode

    os.chmod(work, output_mode(folder=True))  # mkdtemp makes it private; outputs follow the umask (fits/io.py)
    old = None
    if out.exists() or out.is_symlink():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(work, out)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


# --- the steps ------------------------------------------------------------------------------------------


def _load(plan: Plan, needs):
    from marrow.data.adam import load_input

    return load_input(plan.patients, plan.recovery if needs.recovery else None, needs, adam=plan.adam)


def prepare(plan: Plan, progress: Progress = _silent) -> list[StepOut]:
    """Check every step's data before any sampling: an explicit step with bad data is an error (exit 2)."""
    outs = []
    for step in plan.steps:
        out = StepOut(step.name, step.spec.label, step.spec.model, explicit=step.explicit)
        outs.append(out)
        if importlib.util.find_spec(REGISTRY.get(step.spec.model).module) is None:
            out.status, out.note = "skipped", f"the {step.spec.model} model is not available in this version of marrow"
            continue
        needs = step.spec.needs()
        if needs.recovery and plan.recovery is None and plan.patients is not None and plan.adam is None:
            out.status, out.note = "skipped", "no recovery table given (--recovery or [data] recovery)"
            continue
        try:
            out.data = _load(plan, needs)
        except DataError as exc:
            if step.explicit:
                # The plan asked for this model by name: its data must support it (exit 2, nothing sampled).
                named = Problem(
                    plan.source or "the analysis plan",
                    f"[models] run names '{step.name}' ({step.spec.label}), which these data cannot fit",
                    expected="its columns, valid in every row (see the problems below), or a plan without it",
                )
                raise DataError([named, *exc.problems]) from None
            out.status, out.note = "skipped", unsupported(exc.problems)
    return outs


def unsupported(problems: list) -> str:
    """Why the data do not support a model: the columns at fault first, then every problem."""
    columns = list(dict.fromkeys(p.column for p in problems if p.column))
    head = (
        f"the data have no usable {', '.join(repr(c) for c in columns)} column{'s' if len(columns) > 1 else ''}"
        if columns
        else "the data do not support this model"
    )
    return head + " (" + "; ".join(p.describe() for p in problems) + ")"


def _run_step(step: Step, out: StepOut, plan: Plan, work: Path, priors, progress: Progress) -> None:
    import warnings

    from marrow.diagnostics import diagnose
    from marrow.fits.run import fit_model
    from marrow.report.plan import step_settings
    from marrow.summaries import posterior_probabilities, posterior_summary

    settings = step_settings(plan, step)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*idata_kwargs.*ignored by the nutpie sampler.*")
        fit = fit_model(out.data, step.spec, priors, settings, progress=False)
    out.timings["fit_s"] = time.perf_counter() - start
    from marrow.models.levels import notes

    out.note = "; ".join(notes(fit.provenance))  # e.g. a single center: its level left out
    if out.note:
        progress(f"  note: {out.note}")
    fit_path = work / "fits" / f"{step.name}.nc"
    fit.save(fit_path, force=True)
    out.fit, out.fit_file = fit, f"fits/{step.name}.nc"

    tick = time.perf_counter()
    out.checks = diagnose(fit, plan.thresholds)
    out.summary = posterior_summary(fit)
    out.probabilities = posterior_probabilities(fit)
    out.timings["summaries_s"] = time.perf_counter() - tick
    out.tables += _write_table(
        work,
        f"{step.name}-summary",
        _summary_table(out.summary),
        f"Posterior summary: {step.spec.label} (95% equal-tailed intervals)",
    )
    out.tables += _write_table(
        work, f"{step.name}-diagnostics", _checks_table(out.checks), f"Sampler diagnostics: {step.spec.label}"
    )


def _draw(out: StepOut, plan: Plan, work: Path) -> None:
    """Every figure that makes sense for the fit, as PDF and PNG; a figure that fails is noted, not fatal."""
    from marrow.plots import kinds_for, render
    from marrow.plots.style import figure_bytes

    tick = time.perf_counter()
    for kind in kinds_for(out.fit):
        figure = FigureOut(kind, FIGURE_TITLES[kind])
        try:
            fig = render(kind, out.fit, out.data, width="double")
            stem = f"{out.name}-{kind}"
            (work / "figures" / f"{stem}.pdf").write_bytes(figure_bytes(fig, "pdf"))
            figure.png_bytes = figure_bytes(fig, "png", dpi=plan.dpi)
            (work / "figures" / f"{stem}.png").write_bytes(figure.png_bytes)
            figure.pdf, figure.png = f"figures/{stem}.pdf", f"figures/{stem}.png"
        except Exception as exc:  # one broken figure must not cost the report
            figure.error = f"{type(exc).__name__}: {exc}"
        out.figures.append(figure)
    out.timings["figures_s"] = time.perf_counter() - tick


def _build(plan: Plan, work: Path, progress: Progress) -> Outcome:
    from marrow.fits.provenance import package_versions
    from marrow.priors import load_prior_set

    started = time.perf_counter()
    for sub in ("fits", "tables", "figures"):
        (work / sub).mkdir()
    priors = load_prior_set(plan.prior)
    source = "the bundled SYNTHETIC trial" if plan.synthetic else str(plan.patients or plan.adam.adsl.parent)
    progress(
        f"report: {plural(len(plan.steps), 'model')} on {source}; {plural(plan.settings.chains, 'chain')} x "
        f"{plural(plan.settings.draws, 'draw')} (tune {plan.settings.tune}, seed {plan.settings.seed}); "
        f"prior '{priors.name}'"
    )
    steps = prepare(plan, progress)
    total = len(steps)
    for i, (step, out) in enumerate(zip(plan.steps, steps, strict=True), start=1):
        prefix = f"[{i}/{total}] {out.label}"
        if out.status == "skipped":
            progress(f"{prefix}: skipped ({out.note})")
            continue
        sampler = step.sampler or plan.settings.sampler
        progress(f"{prefix}: fitting ({sampler}) ...")
        tick = time.perf_counter()
        try:
            _run_step(step, out, plan, work, priors, progress)
            out.status = "ok"
        except ImportError as exc:
            out.status, out.note = "skipped", f"model not available ({exc})"
        except Exception as exc:  # a failed model is reported; the others still run
            out.status = "failed"
            out.note = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, MarrowError):
                out.note += "\n" + "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if out.status == "ok" and plan.figures:
            _draw(out, plan, work)
        out.seconds = time.perf_counter() - tick
        if out.status == "ok":
            bad = out.failed_checks
            status = "diagnostics ok" if not bad else f"DIAGNOSTICS FAILED ({', '.join(c.name for c in bad)})"
            drawn = sum(1 for f in out.figures if not f.error)
            progress(
                f"{prefix}: done in {out.seconds:.1f} s (sampling {out.timings.get('fit_s', 0):.1f} s, "
                f"{plural(drawn, 'figure')} {out.timings.get('figures_s', 0):.1f} s); {status}"
            )
        else:
            progress(f"{prefix}: {out.status.upper()}: {out.note.splitlines()[0]}")

    outcome = Outcome(
        plan,
        steps,
        versions=package_versions(),
        synthetic=plan.synthetic,
        created_utc=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    tick = time.perf_counter()
    outcome.comparison, outcome.comparison_note = _comparison(plan, steps)
    progress(
        f"frequentist comparison: {'done' if outcome.comparison is not None else 'skipped'} "
        f"({time.perf_counter() - tick:.1f} s)"
    )
    if outcome.comparison is not None:
        from marrow.frequentist.table import display_table

        try:
            shown = display_table(outcome.comparison)
        except Exception:  # the display helper is a convenience; the raw table is still right
            shown = outcome.comparison
        outcome.tables += _write_table(
            work,
            "frequentist-comparison",
            shown,
            "Bayesian posterior medians (95% CrI) beside frequentist estimates (95% CI)",
        )
    outcome.headline = headline_table(outcome)
    outcome.tables += _write_table(work, "headline", outcome.headline, "Headline results")
    outcome.sources = _sources(steps, plan)

    from marrow.report.html import render_html
    from marrow.report.markdown import render_markdown

    outcome.seconds = time.perf_counter() - started
    (work / "report.html").write_text(render_html(outcome), encoding="utf-8")
    if plan.pdf:  # printed inside the folder being built, so it is swapped in with the rest or not at all
        from marrow.report.pdf import write_pdf

        tick = time.perf_counter()
        try:
            outcome.pdf_pages = write_pdf(
                work / "report.html", work / "report.pdf", "SYNTHETIC DATA" if plan.synthetic else ""
            )
            progress(
                f"report.pdf: {plural(outcome.pdf_pages, 'page')} printed by headless Chromium "
                f"({time.perf_counter() - tick:.1f} s)"
            )
        except MarrowError as exc:  # the fits and the HTML must not be lost to a browser failure
            outcome.pdf_error = str(exc)
    (work / "report.md").write_text(render_markdown(outcome), encoding="utf-8")
    (work / "manifest.json").write_text(json.dumps(manifest(outcome), indent=2) + "\n", encoding="utf-8")
    return outcome


def _comparison(plan: Plan, steps: list[StepOut]) -> tuple[pd.DataFrame | None, str]:
    """marrow.frequentist.comparison_table on the data of every fitted model, if the package is there."""
    if importlib.util.find_spec("marrow.frequentist") is None:
        return (
            None,
            "the frequentist comparison is not available in this version of marrow (marrow.frequentist missing)",
        )
    try:
        from marrow.frequentist import comparison_table
    except ImportError as exc:
        return None, f"the frequentist comparison is not available ({exc})"
    fitted = [s for s in steps if s.status == "ok"]
    if not fitted:
        return None, "no model was fitted"
    from marrow.data import Needs

    each = [s.fit.spec.needs() for s in fitted]
    flags = ("ordinal", "followup", "died", "adverse_event", "recovery")  # what the comparison's sections read
    needs = Needs(**{f: any(getattr(n, f) for n in each) for f in flags}, covariates=plan.covariates)
    try:
        data = _load(plan, needs)
        table = comparison_table(data, [s.fit for s in fitted])
    except Exception as exc:  # the Bayesian report stands without it
        return None, f"the frequentist comparison failed: {type(exc).__name__}: {exc}"
    return table, ""


# --- tables ---------------------------------------------------------------------------------------------


def _summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[["quantity", "median", "lower", "upper", "sd", "ess_bulk", "ess_tail", "r_hat"]].rename(
        columns={"lower": "2.5%", "upper": "97.5%"}
    )


def _checks_table(checks: list) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"check": c.name, "value": c.value, "threshold": c.threshold, "status": c.status, "where": c.detail}
            for c in checks
        ]
    )


def _write_table(work: Path, stem: str, table: pd.DataFrame, caption: str) -> list[str]:
    from marrow.formatting import render

    (work / "tables" / f"{stem}.csv").write_text(render(table, "csv"), encoding="utf-8")
    (work / "tables" / f"{stem}.tex").write_text(render(table, "latex", caption=caption), encoding="utf-8")
    return [f"tables/{stem}.csv", f"tables/{stem}.tex"]


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


def _freq_for(outcome: Outcome, model: str, variable: str, element: str) -> tuple[str, str]:
    """(frequentist estimate (95% CI), method) for a posterior quantity, from the comparison table."""
    table = outcome.comparison
    if table is None or "variable" not in table:
        return "", ""
    rows = table[(table["variable"] == variable) & (table["section"] == _section_name(model))]
    if "element" in rows:
        rows = rows[[_same(e, element) for e in rows["element"]]]
    rows = rows[rows["freq"].notna()] if "freq" in rows else rows.iloc[0:0]
    if rows.empty:
        return "", ""
    # Profile-likelihood intervals where offered: better than Wald in trials this small.
    preferred = [i for i, m in enumerate(rows.get("method", pd.Series([""] * len(rows)))) if "profile" in str(m)]
    row = rows.iloc[preferred[0] if preferred else 0]
    scale = _scale_of(outcome, variable)
    return (
        f"{fmt_value(row['freq'], scale)} ({fmt_interval(row['freq_lower'], row['freq_upper'], scale)})",
        str(row.get("method", "")),
    )


def _section_name(model: str) -> str:
    """The section title of `model` (the comparison table names its sections the same way)."""
    return sections().get(model, model)


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


def _scale_of(outcome: Outcome, variable: str) -> str:
    for step in outcome.steps:
        if step.summary is not None and variable in set(step.summary["variable"]):
            return str(step.summary[step.summary["variable"] == variable]["scale"].iloc[0])
    return "ratio"


def headline_rows() -> list[Headline]:
    """The headline table's rows: each model's descriptor's `headline`, in registry order."""
    return [row for d in REGISTRY for row in d.headline]


def headline_table(outcome: Outcome) -> pd.DataFrame:
    """The report's first table: the key estimates of every model that ran, with frequentist counterparts."""
    rows = []
    by_name = {s.name: s for s in outcome.steps if s.status == "ok"}
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
            freq, method = _freq_for(outcome, step.model, variable, row["element"])
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
    return pd.DataFrame(
        rows,
        columns=["endpoint", "posterior median", "95% CrI", "posterior probability", "frequentist (95% CI)", "model"],
    )


def _sources(steps: list[StepOut], plan: Plan) -> list[dict]:
    seen: dict[str, dict] = {}
    for step in steps:
        if step.data is None:
            continue
        for s in step.data.sources:
            seen.setdefault(s.role, {"role": s.role, "path": s.path, "sha256": s.sha256, "rows": s.rows})
    return list(seen.values())


def manifest(outcome: Outcome) -> dict[str, Any]:
    """What ran, with what, how long it took and whether it passed: the report's machine-readable record."""
    import sys

    plan = outcome.plan
    steps = []
    for s in outcome.steps:
        steps.append(
            {
                "name": s.name,
                "model": s.label,
                "status": s.status,
                "note": s.note,
                "explicit": s.explicit,
                "seconds": round(s.seconds, 2),
                "timings_s": {k: round(v, 2) for k, v in s.timings.items()},
                "fit": s.fit_file or None,
                "seed": s.fit.settings.seed if s.fit is not None else None,
                "sampler": json.loads(s.fit.settings.to_json()) if s.fit is not None else None,
                "spec": json.loads(s.fit.spec.to_json()) if s.fit is not None else None,
                "diagnostics": None
                if s.status != "ok"
                else {
                    "passed": not s.failed_checks,
                    "checks": [
                        {
                            "name": c.name,
                            "value": c.value,
                            "threshold": c.threshold,
                            "passed": c.passed,
                            "where": c.detail,
                        }
                        for c in s.checks
                    ],
                },
                "probabilities": {text: value for text, value in s.probabilities},
                "figures": [
                    {"kind": f.kind, "pdf": f.pdf or None, "png": f.png or None, "error": f.error or None}
                    for f in s.figures
                ],
                "tables": s.tables,
            }
        )
    return {
        "marrow_report": 1,
        "title": plan.title,
        "created_utc": outcome.created_utc,
        "command_line": " ".join(["marrow", *sys.argv[1:]]),
        "total_seconds": round(outcome.seconds, 2),
        "synthetic_data": outcome.synthetic,
        "data": outcome.sources,
        "prior_set": plan.prior,
        "plan": plan.to_dict(),
        "plan_text": plan.text,
        "steps": steps,
        "frequentist": {
            "status": "ok" if outcome.comparison is not None else "skipped",
            "note": outcome.comparison_note,
        },
        "diagnostics_passed": not outcome.diagnostics_failed,
        "tables": outcome.tables,
        "versions": outcome.versions,
    }
