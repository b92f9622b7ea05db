"""`marrow compare`: Bayesian estimates from saved fits beside frequentist ones computed from the data."""

from __future__ import annotations

from pathlib import Path

import click

from marrow.commands.common import data_options, emit, format_options, info, split_list


@click.command()
@click.argument("fit_paths", metavar="[FIT ...]", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@data_options
@click.option("--covariates", default="", help="Comma-separated covariate columns. Default: those of the fits.")
@format_options
def compare(
    fit_paths: tuple[Path, ...],
    data_path: Path | None,
    recovery_path: Path | None,
    covariates: str,
    fmt: str,
    force: bool,
    out_path: Path | None,
    adam=None,
) -> int:
    """Bayesian (posterior median, 95% credible interval) beside frequentist estimates, flagged where they disagree.

    Takes zero or more saved fits (response, recovery, survival, safety). The frequentist side is
    computed from the data the fits were made from (checked by SHA-256), from --data/--recovery,
    or from the bundled synthetic trial. Without fits the Bayesian columns show '-'.
    See docs/compare.md for every row, method and flag.

    \b
    Examples:
      marrow compare
      marrow compare response.nc recovery.nc survival.nc safety.nc
      marrow compare --data trial.csv --recovery recovery.csv --covariates prior_atg
      marrow compare response.nc --format latex --out table3.tex
    """
    from marrow.fits import Fit
    from marrow.formatting import render
    from marrow.frequentist.table import comparison_table, data_for_fits, display_table, latex_table

    fits = [Fit.load(path) for path in fit_paths]
    chosen = split_list(covariates)
    if not chosen:
        chosen = tuple(dict.fromkeys(c for fit in fits for c in fit.spec.covariates))
    announce = not fits and data_path is None and adam is None
    data = data_for_fits(fits, data_path, recovery_path, chosen, announce=announce, adam=adam)
    if not chosen:
        info("no covariates: pass --covariates a,b for odds, hazard and time ratios")
    table = comparison_table(data, fits, chosen)
    synthetic = data.synthetic or any(fit.provenance.get("synthetic_data") == "true" for fit in fits)
    title = "Bayesian and frequentist estimates" + (" [bundled SYNTHETIC trial]" if synthetic else "")
    skipped = table.attrs.get("skipped", [])
    if out_path is not None:
        for line in skipped:
            info(line)
    if fmt == "csv":
        # One row per skipped section, its reason in `flag`, so the file says what it lacks.
        import pandas as pd

        notes = pd.DataFrame(
            [{"section": line.split(" (")[0].removeprefix("skipped: "), "flag": line} for line in skipped]
        ).reindex(columns=table.columns)
        text = render(table, fmt, title=title) + (
            notes.to_csv(index=False, header=False, lineterminator="\n") if skipped else ""
        )
    elif fmt == "json":
        import json

        payload = json.loads(render(table, fmt, title=title))
        payload["skipped"] = skipped
        text = json.dumps(payload, indent=2) + "\n"
    elif fmt == "latex":
        text = latex_table(table)
    elif fmt == "markdown":
        # Our cells are already formatted text; keep tabulate from re-parsing them as numbers.
        text = f"**{title}**\n\n" + display_table(table).to_markdown(index=False, disable_numparse=True) + "\n"
        text += "".join(f"\n{line}" for line in skipped) + ("\n" if skipped else "")
    else:
        shown = display_table(table)
        from marrow.formatting import plural

        sources = ", ".join(f"{s.role} {Path(s.path).name} ({plural(s.rows, 'row')})" for s in data.sources)
        fitted = (
            ", ".join(f"{path.name} ({fit.spec.label})" for path, fit in zip(fit_paths, fits, strict=True)) or "none"
        )
        text = f"{title}\ndata: {sources}\nfits: {fitted}\n"
        for section in shown["section"].unique():
            part = shown[shown["section"] == section].drop(columns=["section"])
            text += render(part, "table", title=section)
        text += "".join(f"{line}\n" for line in skipped)
        text += "Bayes: posterior median, 95% equal-tailed interval. freq: estimate, 95% confidence interval.\n"
    emit(text, out_path, force)
    return 0
