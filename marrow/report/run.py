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

import pandas as pd

from marrow.descriptor import REGISTRY
from marrow.errors import DataError, MarrowError, OutputExistsError, Problem
from marrow.formatting import plural
from marrow.report.content import FIGURE_TITLES, checks_table, comparison_display, headline_table, summary_table
from marrow.report.plan import Plan, Step
from marrow.report.view import Figure, build_view


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
    figures: list[Figure] = field(default_factory=list)
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
        summary_table(out.summary),
        f"Posterior summary: {step.spec.label} (95% equal-tailed intervals)",
    )
    out.tables += _write_table(
        work, f"{step.name}-diagnostics", checks_table(out.checks), f"Sampler diagnostics: {step.spec.label}"
    )


def _draw(out: StepOut, plan: Plan, work: Path) -> None:
    """Every figure that makes sense for the fit, as PDF and PNG; a figure that fails is noted, not fatal."""
    from marrow.plots import kinds_for, render
    from marrow.plots.style import figure_bytes

    tick = time.perf_counter()
    for kind in kinds_for(out.fit):
        title = FIGURE_TITLES[kind]
        try:
            fig = render(kind, out.fit, out.data, width="double")
            stem = f"{out.name}-{kind}"
            (work / "figures" / f"{stem}.pdf").write_bytes(figure_bytes(fig, "pdf"))
            png = figure_bytes(fig, "png", dpi=plan.dpi)
            (work / "figures" / f"{stem}.png").write_bytes(png)
            figure = Figure(kind, title, f"figures/{stem}.pdf", f"figures/{stem}.png", png)
        except Exception as exc:  # one broken figure must not cost the report
            figure = Figure(kind, title, error=f"{type(exc).__name__}: {exc}")
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
        outcome.tables += _write_table(
            work,
            "frequentist-comparison",
            comparison_display(outcome.comparison),
            "Bayesian posterior medians (95% CrI) beside frequentist estimates (95% CI)",
        )
    outcome.headline = headline_table(outcome.steps, outcome.comparison)
    outcome.tables += _write_table(work, "headline", outcome.headline, "Headline results")
    outcome.sources = _sources(steps, plan)

    from marrow.report.html import render_html
    from marrow.report.markdown import render_markdown

    outcome.seconds = time.perf_counter() - started
    view = build_view(outcome)
    (work / "report.html").write_text(render_html(view), encoding="utf-8")
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
    (work / "report.md").write_text(render_markdown(view), encoding="utf-8")
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


# --- files ----------------------------------------------------------------------------------------------


def _write_table(work: Path, stem: str, table: pd.DataFrame, caption: str) -> list[str]:
    from marrow.formatting import render

    (work / "tables" / f"{stem}.csv").write_text(render(table, "csv"), encoding="utf-8")
    (work / "tables" / f"{stem}.tex").write_text(render(table, "latex", caption=caption), encoding="utf-8")
    return [f"tables/{stem}.csv", f"tables/{stem}.tex"]


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
