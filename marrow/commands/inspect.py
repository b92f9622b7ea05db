"""`marrow summarize` and `marrow diagnose`: read a saved fit, no PyMC needed."""

from __future__ import annotations

from pathlib import Path

import click

from marrow.commands.common import emit, format_options, info, warn

_FIT = click.argument("fit_path", metavar="FIT", type=click.Path(dir_okay=False, path_type=Path))


def _header(fit, path: Path) -> str:
    from marrow.formatting import plural

    sources = ", ".join(
        f"{s['role']} {Path(s['path']).name} ({plural(int(s['rows']), 'row')}, sha256 {s['sha256'][:12]})"
        for s in fit.data_sources
    )
    synthetic = " [bundled SYNTHETIC trial]" if fit.provenance.get("synthetic_data") == "true" else ""
    settings = fit.settings
    return (
        f"{path}: {fit.spec.label}; prior '{fit.provenance.get('prior_set')}'; "
        f"{plural(settings.chains, 'chain')} x {plural(settings.draws, 'draw')}, seed {settings.seed}\n"
        f"data: {sources}{synthetic}"
    )


@click.command()
@_FIT
@format_options
@click.option("--hdi", is_flag=True, help="95% highest-density intervals instead of equal-tailed ones.")
@click.option(
    "--all",
    "all_parameters",
    is_flag=True,
    help="Also every model parameter on its own scale (log-odds intercept and coefficients, center sd "
    "and effects, log medians, shapes, uncentred intercepts, medians per covariate group).",
)
def summarize(fit_path: Path, fmt: str, force: bool, out_path: Path | None, hdi: bool, all_parameters: bool) -> int:
    """Labelled posterior summary: median, mean, sd, 95% interval, MCSE, R-hat, ESS.

    \b
    Machine formats (csv, json, markdown, latex) have one row per scalar with a `kind` column:
    quantity, parameter (with --all) or probability; a probability row has its value in the
    `probability` column and no other numbers.

    \b
    Examples:
      marrow summarize response.nc
      marrow summarize response.nc --all
      marrow summarize response.nc --format latex --out table2.tex
    """
    from marrow.diagnostics import diagnose, failed
    from marrow.fits import Fit
    from marrow.formatting import render
    from marrow.summaries import posterior_probabilities, posterior_summary

    fitted = Fit.load(fit_path)
    table = posterior_summary(fitted, hdi=hdi, all_parameters=all_parameters)
    interval = table.attrs["interval"]
    low, high = ("hdi lower", "hdi upper") if hdi else ("2.5%", "97.5%")
    shown = table.drop(columns=["variable", "element", "scale"]).rename(
        columns={"lower": low, "upper": high, "mcse_mean": "mcse"}
    )
    probabilities = posterior_probabilities(fitted)
    notes = "".join(f"note: {note}\n" for note in table.attrs.get("notes", []))
    if fmt == "table":
        quantities = shown[shown["kind"] == "quantity"].drop(columns="kind")
        text = (
            _header(fitted, fit_path)
            + "\n"
            + render(quantities, "table", title=f"Posterior summary ({interval} interval)")
        )
        text += "".join(f"{label} = {value:.3f}\n" for label, value in probabilities)
        parameters = shown[shown["kind"] == "parameter"].drop(columns="kind")
        if len(parameters):
            text += "\n" + render(
                parameters, "table", title=f"Model parameters on their own scale ({interval} interval)"
            )
        text += notes
    else:
        import pandas as pd

        shown["probability"] = float("nan")
        extra = pd.DataFrame(
            [{"quantity": label, "kind": "probability", "probability": value} for label, value in probabilities]
        ).reindex(columns=shown.columns)
        shown = pd.concat([shown, extra.astype(shown.dtypes.to_dict())], ignore_index=True) if len(extra) else shown
        text = render(
            shown,
            fmt,
            title=f"Posterior summary: {fitted.spec.label}",
            caption=f"Posterior summary of the {fitted.spec.label} model ({interval} intervals).",
        )
    emit(text, out_path, force)
    if fmt != "table":
        for note in table.attrs.get("notes", []):
            info(f"note: {note}")
    bad = failed(diagnose(fitted))
    if bad:
        warn(
            "diagnostics FAILED for this fit: "
            + "; ".join(f"{c.name} {c.value}" for c in bad)
            + f". Run `marrow diagnose {fit_path}`."
        )
    return 0


@click.command()
@_FIT
@click.option("--min-ess", type=float, default=400, show_default=True, help="Minimum bulk and tail ESS.")
@click.option("--max-rhat", type=float, default=1.01, show_default=True, help="Maximum rank-normalised R-hat.")
@click.option("--max-k", type=float, default=0.7, show_default=True, help="Maximum PSIS-LOO Pareto k.")
def diagnose(fit_path: Path, min_ess: float, max_rhat: float, max_k: float) -> int:
    """R-hat, bulk/tail ESS, divergences, E-BFMI, tree depth, PSIS-LOO Pareto k. Exit 1 on any failure.

    \b
    Example:
      marrow diagnose response.nc && echo "fit is usable"
    """
    import pandas as pd

    from marrow.diagnostics import Thresholds, failed
    from marrow.diagnostics import diagnose as run_checks
    from marrow.fits import Fit
    from marrow.formatting import plural, render

    fitted = Fit.load(fit_path)
    checks = run_checks(fitted, Thresholds(max_rhat=max_rhat, min_ess=min_ess, max_pareto_k=max_k))
    table = pd.DataFrame(
        [
            {"check": c.name, "value": c.value, "threshold": c.threshold, "status": c.status, "where": c.detail}
            for c in checks
        ]
    )
    click.echo(_header(fitted, fit_path))
    click.echo(render(table, "table", title="Diagnostics"), nl=False)
    bad = failed(checks)
    for check in bad:
        warn(f"{check.name} = {check.value} fails {check.threshold} {check.detail}".rstrip() + f". Try: {check.advice}")
    if bad:
        click.echo(f"{plural(len(bad), 'check')} failed", err=True)
        return 1
    click.echo("all checks passed")
    return 0
