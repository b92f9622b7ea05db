"""`marrow priors list|show|map`: the shipped prior sets, what a set assumes, MAP priors from history."""

from __future__ import annotations

from pathlib import Path

import click

from marrow.commands.common import emit, format_options, info, warn
from marrow.descriptor import REGISTRY
from marrow.formatting import FORMATS


@click.group()
def priors() -> None:
    """List, show and derive prior sets.

    \b
    Examples:
      marrow priors list
      marrow priors show skeptical
      marrow priors show my-priors.toml --format markdown
      marrow priors map --history history.csv --out map-prior.toml
      marrow fit response --prior map-prior.toml
    """


@priors.command("list")
@format_options
def list_sets(fmt: str, force: bool, out_path: Path | None) -> int:
    """The prior sets shipped with marrow, with their descriptions.

    \b
    Example:
      marrow priors list --format markdown
    """
    import pandas as pd

    from marrow.formatting import render
    from marrow.priors import available_sets, load_prior_set
    from marrow.priors.sets import DEFAULT_SET, base_of

    rows = []
    for name in available_sets():
        prior_set = load_prior_set(name)
        base = base_of(name)
        rows.append(
            {
                "name": name + (" (default)" if name == DEFAULT_SET else ""),
                "base": base or "-",
                "description": prior_set.description,
            }
        )
    text = render(pd.DataFrame(rows), fmt, title="Prior sets (use with --prior NAME; see `marrow priors show NAME`)")
    emit(text, out_path, force)
    return 0


@priors.command("show")
@click.argument("name_or_file", metavar="NAME_OR_FILE", default="weakly-informative")
@click.option(
    "--model",
    "model",
    type=click.Choice(list(REGISTRY.names())),
    default=None,
    help="Only the parameters of this model.",
)
@format_options
def show(name_or_file: str, model: str | None, fmt: str, force: bool, out_path: Path | None) -> int:
    """Every parameter's prior, its meaning and the reason for it (like brms's default_prior()).

    NAME_OR_FILE is a shipped set (see `marrow priors list`) or a TOML file; a file with
    `base = "..."` is shown with everything it inherits (column "from").

    \b
    Examples:
      marrow priors show skeptical --model response
      marrow priors show my-priors.toml --format latex --out priors.tex
    """
    import pandas as pd

    from marrow.formatting import render
    from marrow.priors import load_prior_set
    from marrow.priors.sets import describe_set

    prior_set = load_prior_set(name_or_file)
    rows = describe_set(name_or_file)
    if model:
        rows = [r for r in rows if r["parameter"].startswith(model + ".")]
    table = pd.DataFrame(rows, columns=["parameter", "prior", "meaning", "reason", "from"])
    title = f"Prior set '{prior_set.name}' ({prior_set.source})" + (
        f": {prior_set.description}" if prior_set.description else ""
    )
    emit(render(table, fmt, title=title, caption=f"Prior set {prior_set.name}."), out_path, force)
    return 0


@priors.command("map")
@click.option(
    "--history",
    "history_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Historical studies: CSV with columns study, n, responders.",
)
@click.option(
    "--robust-weight",
    type=float,
    default=0.2,
    show_default=True,
    help="Weight of the vague Normal(0, 1.5) component (0 for a plain MAP prior).",
)
@click.option(
    "--tau-sd",
    type=float,
    default=1.0,
    show_default=True,
    help="Scale of the HalfNormal prior on the between-study sd (log-odds).",
)
@click.option(
    "--max-components",
    type=int,
    default=3,
    show_default=True,
    help="Largest number of normal components tried (BIC chooses).",
)
@click.option(
    "--name", "set_name", default=None, help="Name of the prior set written. Default: from the --out file name."
)
@click.option("--draws", type=int, default=2000, show_default=True, help="Draws per chain.")
@click.option("--tune", type=int, default=1000, show_default=True, help="Warm-up iterations per chain.")
@click.option("--chains", type=int, default=2, show_default=True, help="Chains.")
@click.option("--seed", type=int, default=2017, show_default=True, help="Random seed.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Format of the summary printed.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the prior set TOML here (atomically). Default: print it after the summary.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@click.option("--quiet", is_flag=True, help="No progress messages.")
def map_prior(
    history_path: Path,
    robust_weight: float,
    tau_sd: float,
    max_components: int,
    set_name: str | None,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    fmt: str,
    out_path: Path | None,
    force: bool,
    quiet: bool,
) -> int:
    """Meta-analytic-predictive prior for the response intercept from historical studies.

    Fits a hierarchical logistic model to the studies, approximates the predictive distribution
    of a new study's log-odds of response by a mixture of normals, optionally adds a vague
    component (--robust-weight), reports the prior effective sample size, and writes a prior set
    (base "weakly-informative", response.intercept = the mixture) usable by `fit --prior`.

    \b
    Example:
      marrow priors map --history history.csv --robust-weight 0.2 --out map-prior.toml
      marrow fit response --prior map-prior.toml --out response-map.nc
    """
    from marrow.data.history import read_history
    from marrow.errors import UsageError
    from marrow.fits.io import check_writable, write_text
    from marrow.fits.map_prior import derive_map_prior
    from marrow.formatting import plural, render
    from marrow.priors import load_prior_set
    from marrow.priors.map import hyper_summary, prior_set_toml

    if not 0 <= robust_weight < 1:
        raise UsageError(f"--robust-weight must be in [0, 1), got {robust_weight:g}")
    for option, value in (("--draws", draws), ("--chains", chains)):
        if value < 1:
            raise UsageError(f"{option} must be at least 1")
    if out_path is not None:
        check_writable(out_path, force)  # before sampling, so no work is wasted
    history = read_history(history_path)  # validation errors before PyMC is imported
    info(
        f"fitting the hierarchical model to {plural(len(history), 'historical study', 'historical studies')} "
        f"({plural(int(history['n'].sum()), 'patient')})",
        quiet,
    )
    result = derive_map_prior(
        history_path,
        robust_weight=robust_weight,
        tau_sd=tau_sd,
        max_components=max_components,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
    )
    if result.fit.divergences:
        warn(
            f"{result.fit.divergences} divergent transitions in the historical model; "
            "increase --tune or check the history table"
        )
    name = set_name or (out_path.stem if out_path is not None else f"map-{Path(history_path).stem}")
    toml_text = prior_set_toml(result, name)
    summary = render(result.summary, fmt, title="MAP prior for the response rate (ESS in patients)")
    hyper = render(hyper_summary(result), fmt, title="Historical model: mu, tau and mixture choice")
    click.echo(summary + ("" if fmt == "table" else "\n") + hyper, nl=False)
    if out_path is None:
        click.echo("\n" + toml_text, nl=False)
        return 0
    write_text(out_path, toml_text, force)
    load_prior_set(out_path)  # what we wrote must be a valid prior set
    info(f"wrote {out_path}; use it with `marrow fit response --prior {out_path}`", quiet)
    return 0
