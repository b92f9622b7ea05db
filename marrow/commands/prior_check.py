"""`marrow prior-check MODEL`: what a prior set implies on your trial's design, before any fitting."""

from __future__ import annotations

from pathlib import Path

import click

from marrow.commands.common import data_options, emit, format_options, info, split_list
from marrow.commands.model_options import given, model_argument, model_options


@click.command("prior-check")
@model_argument
@click.option(
    "--prior",
    default="weakly-informative",
    show_default=True,
    help="Prior set: a shipped name (see `marrow priors list`) or a TOML file.",
)
@click.option("--covariates", default="", help="Comma-separated covariate columns, e.g. prior_atg,active_infection.")
@model_options(("outcome", "family", "cure", "frailty", "threshold"))
@click.option("--draws", type=int, default=1000, show_default=True, help="Prior predictive draws.")
@click.option("--seed", type=int, default=2017, show_default=True, help="Random seed.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write histograms of the implied quantities (PNG, PDF or SVG).",
)
@data_options
@format_options
def prior_check(
    model: str,
    prior: str,
    covariates: str,
    outcome: str | None,
    family: str | None,
    cure: bool | None,
    frailty: bool | None,
    threshold: float | None,
    draws: int,
    seed: int,
    plot_path: Path | None,
    data_path: Path | None,
    recovery_path: Path | None,
    fmt: str,
    force: bool,
    out_path: Path | None,
    adam=None,
) -> int:
    """Prior predictive check: quantiles of what the prior implies, on your design.

    Uses the centers, covariates (and lineages) of the data; outcomes are not used. Shows the
    5/25/50/75/95% quantiles of the response rate, center rates and their spread, odds ratios,
    median recovery days, and the response proportion a trial like yours would observe.

    \b
    Examples:
      marrow prior-check response --prior skeptical
      marrow prior-check response --covariates prior_atg,active_infection --plot prior-check.png
      marrow prior-check recovery --prior my-priors.toml --format markdown
    """
    from marrow.data.adam import load_input
    from marrow.errors import UsageError
    from marrow.fits.io import check_writable
    from marrow.formatting import plural, render
    from marrow.prior_check import plot_prior_check
    from marrow.prior_check import prior_check as run_check
    from marrow.priors import load_prior_set
    from marrow.spec import ModelSpec

    if recovery_path is not None and data_path is None:
        raise UsageError("--recovery needs --data (the patients table it belongs to)")
    chosen = given({"outcome": outcome, "family": family, "cure": cure, "frailty": frailty, "threshold": threshold})
    spec = ModelSpec(model=model, covariates=split_list(covariates), **chosen)
    priors = load_prior_set(prior)
    for path in (out_path, plot_path):
        if path is not None:
            check_writable(path, force)
    data = load_input(data_path, recovery_path, spec.needs(), adam=adam, announce=True, time_unit=spec.time_unit)
    info(
        f"prior predictive check of {spec.label} under prior '{priors.name}': {plural(len(data.patients), 'patient')}, "
        f"{plural(len(data.centers), 'center')}, {plural(draws, 'draw')} (seed {seed}); outcomes not used"
    )
    check = run_check(data, spec, priors, draws=draws, seed=seed)
    title = f"Prior predictive check: {spec.label}, prior '{priors.name}' ({plural(draws, 'draw')})"
    text = render(check.table, fmt, title=title, caption=title + ".")
    if fmt == "table" and check.notes:
        text += "".join(f"note: {n}\n" for n in check.notes)
    emit(text, out_path, force)
    if plot_path is not None:
        plot_prior_check(check, plot_path, force, title=title)
        info(f"wrote {plot_path}")
    return 0
