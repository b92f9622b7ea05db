"""`marrow compare-models`: PSIS-LOO comparison of saved fits (logic in marrow.model_comparison)."""

from __future__ import annotations

from pathlib import Path

import click

from marrow.commands.common import emit, format_options, warn


@click.command("compare-models")
@click.argument(
    "fit_paths", metavar="FIT FIT [FIT ...]", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@format_options
def compare_models(fit_paths: tuple[Path, ...], fmt: str, force: bool, out_path: Path | None) -> int:
    """Rank fits of the same data by expected log predictive density (PSIS-LOO).

    Higher elpd_loo is better; elpd_diff and dse are differences from the best fit and their
    standard errors; weights are stacking weights. Fits must be on the same data.

    \b
    Examples:
      marrow compare-models weibull.nc lognormal.nc loglogistic.nc no-cure.nc
      marrow compare-models a.nc b.nc --format markdown --out loo.md
    """
    from marrow.errors import UsageError
    from marrow.formatting import render
    from marrow.model_comparison import compare_fits

    if len(fit_paths) < 2:
        raise UsageError("compare-models needs at least two fits")
    result = compare_fits(list(fit_paths))
    title = "Model comparison (PSIS-LOO, log score; higher elpd_loo is better)"
    emit(render(result.table, fmt, title=title, caption=title), out_path, force)
    for note in result.warnings:
        warn(note)
    return 0
