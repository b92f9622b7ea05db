"""`marrow plot FIT --kind KIND --out FILE`: one publication figure from a saved fit."""

from __future__ import annotations

from pathlib import Path

import click

from marrow.commands.common import adam_options, info

KINDS = ("ppc", "centers", "recovery", "survival", "effects", "prior-posterior", "trace", "rank", "energy", "loo-pit")


@click.command()
@click.argument("fit_path", metavar="FIT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", required=True, type=click.Choice(KINDS), help="Which figure (see docs/plots.md).")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file; the format comes from the suffix: .pdf, .svg, .png or .tiff.",
)
@click.option(
    "--width",
    default="double",
    show_default=True,
    help="single (3.5 in), double (7.2 in) or a width in inches; the height follows the content.",
)
@click.option(
    "--dpi", type=click.IntRange(50, 2400), default=300, show_default=True, help="Resolution of PNG and TIFF."
)
@click.option(
    "--style", "style_name", default=None, help="Light theme override: a matplotlib style name or an rc/.mplstyle file."
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Patients table, if not where the fit's provenance says (recovery, survival, effects).",
)
@click.option(
    "--recovery",
    "recovery_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Recovery table, if not where the fit's provenance says.",
)
@adam_options
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--quiet", is_flag=True, help="No message on success.")
def plot(
    fit_path: Path,
    kind: str,
    out_path: Path,
    width: str,
    dpi: int,
    style_name: str | None,
    data_path: Path | None,
    recovery_path: Path | None,
    force: bool,
    quiet: bool,
    adam=None,
) -> int:
    """Draw one figure from a saved fit: colour-blind-safe, fonts embedded, same bytes for the same inputs.

    \b
    Kinds: ppc, centers (response fits); recovery; survival; effects (odds and time ratios beside
    frequentist estimates); prior-posterior; trace, rank, energy, loo-pit (ArviZ).
    \b
    Examples:
      marrow plot response.nc --kind centers --out fig2.pdf
      marrow plot recovery.nc --kind recovery --width single --out fig3.png --dpi 600
      marrow plot response.nc --kind trace --out trace.svg --style seaborn-v0_8-paper
    """
    from marrow.fits import Fit
    from marrow.fits.io import check_writable
    from marrow.plots import NEEDS_DATA, data_for_fit, format_for, render, save_figure

    fmt = format_for(out_path)  # before any work: a bad suffix is a usage error
    check_writable(out_path, force)
    fitted = Fit.load(fit_path)
    data = data_for_fit(fitted, data_path, recovery_path, adam=adam) if kind in NEEDS_DATA else None
    figure = render(kind, fitted, data, width=width, style=style_name)
    save_figure(figure, out_path, dpi=dpi, force=force, style=style_name, fmt=fmt)
    info(f"wrote {out_path} ({kind}, {fmt})", quiet)
    return 0
