"""`marrow report` (run the analysis plan, write the report folder) and `marrow init` (plan template)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from marrow.commands.common import data_options, info, split_list, warn
from marrow.formatting import plural


@click.command()
@data_options
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Analysis plan (TOML; write a template with `marrow init`). Default: every model, documented defaults.",
)
@click.option(
    "--covariates",
    default=None,
    help="Comma-separated covariates (default: prior_atg,active_infection on the bundled trial, none on your data).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder to create (report.html, report.md, tables/, figures/, fits/, manifest.json).",
)
@click.option("--force", is_flag=True, help="Replace an existing report folder (swapped in only when complete).")
@click.option("--quick", is_flag=True, help="2 chains x 200 draws (tune 200): for trying things out, not for results.")
@click.option(
    "--pdf",
    is_flag=True,
    help="Also write report.pdf beside report.html, printed by headless Chromium (plan key [report] pdf).",
)
@click.option("--quiet", is_flag=True, help="No progress messages (warnings still shown).")
def report(
    data_path: Path | None,
    recovery_path: Path | None,
    plan_path: Path | None,
    covariates: str | None,
    out_dir: Path,
    force: bool,
    quick: bool,
    pdf: bool,
    quiet: bool,
    adam=None,
) -> int:
    """Run the whole analysis and write a self-contained HTML report (plus Markdown, tables, figures, fits).

    \b
    Runs the response (binary and ordinal), recovery, survival and safety models, their
    diagnostics, the frequentist comparison and every figure. Failed diagnostics appear in a
    warning box at the top of the report.
    \b
    Examples:
      marrow report --out marrow-report
      marrow init --out analysis.toml && marrow report --plan analysis.toml --out report --force
      marrow report --data trial.csv --recovery recovery.csv --covariates prior_atg --out report
      marrow report --out marrow-report --pdf      # also report.pdf (needs Chromium)
    """
    from marrow.fits.io import check_writable

    check_writable(out_dir, force, folder=True)  # before validating or sampling anything
    from marrow.report.plan import load_plan
    from marrow.report.run import run_report

    plan = load_plan(
        plan_path,
        data_path,
        recovery_path,
        split_list(covariates) if covariates is not None else None,
        quick,
        adam=adam,
    )
    if pdf and not plan.pdf:
        from dataclasses import replace

        plan = replace(plan, pdf=True, overrides={**plan.overrides, "pdf": True})
    if plan.pdf:  # a missing browser must stop the run before anything is fitted
        from marrow.report.chromium import find_chromium

        find_chromium()
    start = time.perf_counter()
    outcome = run_report(plan, out_dir, force, progress=lambda message: info(message, quiet))
    elapsed = time.perf_counter() - start

    counts = {status: sum(1 for s in outcome.steps if s.status == status) for status in ("ok", "skipped", "failed")}
    if outcome.pdf_pages:
        info(f"wrote {out_dir}/report.pdf ({plural(outcome.pdf_pages, 'page')})", quiet)
    info(
        f"wrote {out_dir}/report.html (and report.md, tables/, figures/, fits/, manifest.json) in {elapsed:.0f} s: "
        f"{plural(counts['ok'], 'model')} fitted, {counts['skipped']} skipped, {counts['failed']} failed",
        quiet,
    )
    if not quiet and outcome.headline is not None and not outcome.headline.empty:
        from marrow.formatting import render

        shown = outcome.headline.drop(columns=["model"])
        click.echo(render(shown, "table", title="Headline results (posterior median, 95% CrI)"), err=True, nl=False)
    for step in outcome.diagnostics_failed:
        warn(
            f"{step.label}: diagnostics FAILED ({', '.join(c.name for c in step.failed_checks)}); "
            "see the top of the report"
        )
    for step in outcome.steps:
        if step.status == "failed":
            warn(f"{step.label}: FAILED: {step.note.splitlines()[0]}")
    if outcome.pdf_error:
        warn(f"report.pdf could not be printed: {outcome.pdf_error}")
    return 3 if counts["failed"] or outcome.pdf_error else 0


@click.command()
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the template. Default: analysis.toml (adam.toml with --adam, design.toml with --design).",
)
@click.option(
    "--adam", "adam", is_flag=True, help="Write the commented ADaM mapping (every variable with its default) instead."
)
@click.option("--design", "design", is_flag=True, help="Write the commented trial design of `marrow simulate` instead.")
@click.option(
    "--model",
    "design_model",
    type=click.Choice(["response", "recovery"]),
    default=None,
    help="With --design: the analysis model of the design (default response; recovery: cure fractions and "
    "latency medians per lineage).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(out_path: Path | None, adam: bool, design: bool, design_model: str | None, force: bool) -> int:
    """Write a commented analysis-plan template (every setting with its default).

    \b
    Example:
      marrow init --out analysis.toml
      marrow report --plan analysis.toml --out report
      marrow init --adam --out adam.toml && marrow fit response --adam ADAM_DIR --adam-mapping adam.toml
      marrow init --design --out design.toml && marrow simulate design.toml --out sim
      marrow init --design --model recovery --out design-recovery.toml
    """
    from marrow.errors import UsageError
    from marrow.fits.io import write_text

    if adam and design:
        raise UsageError("--adam and --design write different templates: choose one")
    if design_model is not None and not design:
        raise UsageError("--model chooses the model of a design template: add --design")
    if design:
        from marrow.simulate.design import template_text as design_template

        out_path = out_path or Path("design.toml")
        write_text(out_path, design_template(design_model or "response"), force)
        click.echo(f"wrote {out_path}; edit it, then run `marrow simulate {out_path} --out sim`", err=True)
        return 0

    if adam:
        from marrow.data.adam import template_text as adam_template

        out_path = out_path or Path("adam.toml")
        write_text(out_path, adam_template(), force)
        click.echo(f"wrote {out_path}; edit it, then pass it with --adam-mapping {out_path}", err=True)
        return 0
    from marrow.report.plan import template_text

    out_path = out_path or Path("analysis.toml")
    write_text(out_path, template_text(), force)
    click.echo(f"wrote {out_path}; edit it, then run `marrow report --plan {out_path} --out report`", err=True)
    return 0
