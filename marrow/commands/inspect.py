"""`marrow summarize` and `marrow diagnose`: read a saved fit, no PyMC needed."""

from __future__ import annotations

from pathlib import Path

import click

from marrow.commands.common import emit, format_options, warn

_FIT = click.argument("fit_path", metavar="FIT", type=click.Path(dir_okay=False, path_type=Path))


def _header(fit, path: Path) -> str:
    sources = ", ".join(f"{s['role']} {Path(s['path']).name} ({s['rows']} rows, sha256 {s['sha256'][:12]})" for s in fit.data_sources)
    synthetic = " [bundled SYNTHETIC trial]" if fit.provenance.get("synthetic_data") == "true" else ""
    settings = fit.settings
    return (f"{path}: {fit.spec.label}; prior '{fit.provenance.get('prior_set')}'; "
            f"{settings.chains} chains x {settings.draws} draws, seed {settings.seed}\n"
            f"data: {sources}{synthetic}")


@click.command()
@_FIT
@format_options
@click.option("--hdi", is_flag=True, help="95% highest-density intervals instead of equal-tailed ones.")
def summarize(fit_path: Path, fmt: str, force: bool, out_path: Path | None, hdi: bool) -> int:
    """Labelled posterior summary: median, mean, sd, 95% interval, MCSE, R-hat, ESS.

    \b
    Examples:
      marrow summarize response.nc
      marrow summarize response.nc --format latex --out table2.tex
    """
    from marrow.diagnostics import diagnose, failed
    from marrow.fits import Fit
    from marrow.formatting import render
    from marrow.summaries import posterior_probabilities, posterior_summary

    fitted = Fit.load(fit_path)
    table = posterior_summary(fitted, hdi=hdi)
    interval = table.attrs["interval"]
    low, high = ("hdi lower", "hdi upper") if hdi else ("2.5%", "97.5%")
    shown = table.drop(columns=["variable", "element", "scale"]).rename(
        columns={"lower": low, "upper": high, "mcse_mean": "mcse"})
    probabilities = posterior_probabilities(fitted)
    if fmt == "table":
        text = _header(fitted, fit_path) + "\n" + render(shown, "table", title=f"Posterior summary ({interval} interval)")
        text += "".join(f"{label} = {value:.3f}\n" for label, value in probabilities)
    else:
        import pandas as pd

        extra = pd.DataFrame([{"quantity": label, "mean": value} for label, value in probabilities], columns=shown.columns)
        shown = pd.concat([shown, extra], ignore_index=True) if len(extra) else shown
        text = render(shown, fmt, title=f"Posterior summary: {fitted.spec.label}",
                      caption=f"Posterior summary of the {fitted.spec.label} model ({interval} intervals).")
    emit(text, out_path, force)
    bad = failed(diagnose(fitted))
    if bad:
        warn("diagnostics FAILED for this fit: " + "; ".join(f"{c.name} {c.value}" for c in bad)
             + f". Run `marrow diagnose {fit_path}`.")
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

    from marrow.diagnostics import Thresholds, diagnose as run_checks, failed
    from marrow.fits import Fit
    from marrow.formatting import render

    fitted = Fit.load(fit_path)
    checks = run_checks(fitted, Thresholds(max_rhat=max_rhat, min_ess=min_ess, max_pareto_k=max_k))
    table = pd.DataFrame([{"check": c.name, "value": c.value, "threshold": c.threshold,
                           "status": c.status, "where": c.detail} for c in checks])
    click.echo(_header(fitted, fit_path))
    click.echo(render(table, "table", title="Diagnostics"), nl=False)
    bad = failed(checks)
    for check in bad:
        warn(f"{check.name} = {check.value} fails {check.threshold} {check.detail}".rstrip() + f". Try: {check.advice}")
    if bad:
        click.echo(f"{len(bad)} check(s) failed", err=True)
        return 1
    click.echo("all checks passed")
    return 0
