"""`marrow sensitivity`: power-scaling prior/likelihood sensitivity of a saved fit, or refits under prior sets."""

from __future__ import annotations

from pathlib import Path

import click

from marrow.commands.common import data_options, emit, format_options, info, split_list, warn
from marrow.commands.model_options import given, model_options
from marrow.descriptor import REGISTRY

# With --refit MODEL: every model option but threshold (--threshold is the sensitivity's own here).
REFIT_OPTIONS = tuple(dict.fromkeys(o.name for d in REGISTRY for o in d.options if o.name != "threshold"))


@click.command()
@click.argument("target", metavar="FIT|MODEL")
@click.option(
    "--refit",
    is_flag=True,
    help="Refit under each of --priors: MODEL with the options below, or a saved FIT's model with every option it "
    "was fitted with (on its data unless --data is given).",
)
@click.option(
    "--priors",
    "prior_names",
    default="weakly-informative,skeptical,enthusiastic",
    show_default=True,
    help="With --refit: comma-separated prior sets (names or TOML files).",
)
@click.option(
    "--threshold",
    type=float,
    default=0.05,
    show_default=True,
    help="Power-scaling sensitivity above which a quantity is flagged (priorsense's 0.05).",
)
@click.option("--covariates", default="", help="With --refit: comma-separated covariate columns.")
@model_options(REFIT_OPTIONS)
@click.option("--draws", type=int, default=1000, show_default=True, help="With --refit: draws per chain.")
@click.option("--tune", type=int, default=1000, show_default=True, help="With --refit: warm-up per chain.")
@click.option("--chains", type=int, default=4, show_default=True, help="With --refit: chains.")
@click.option("--seed", type=int, default=2017, show_default=True, help="With --refit: random seed.")
@click.option("--quiet", is_flag=True, help="No progress messages.")
@data_options
@format_options
def sensitivity(
    target: str,
    refit: bool,
    prior_names: str,
    threshold: float,
    covariates: str,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    quiet: bool,
    data_path: Path | None,
    recovery_path: Path | None,
    fmt: str,
    force: bool,
    out_path: Path | None,
    adam=None,
    **model_values,
) -> int:
    """How much the results depend on the prior.

    \b
    marrow sensitivity FIT
      Power-scaling (Kallioinen et al. 2023, as in priorsense): the saved draws are reweighted as
      if the prior, then the likelihood, were raised to a power near 1, and the cumulative
      Jensen-Shannon distance says how far each quantity moves. Diagnosis per quantity:
      "prior-data conflict" (sensitive to both), "strong prior / weak likelihood" (prior only).
    marrow sensitivity --refit [--priors a,b,c] MODEL|FIT
      Refits MODEL (or a saved FIT's model, with all its options) under each prior set and shows
      median [95% interval] side by side.

    \b
    Examples:
      marrow sensitivity response.nc
      marrow sensitivity --refit --priors weakly-informative,skeptical,enthusiastic response
      marrow sensitivity --refit --covariates prior_atg --draws 500 --chains 2 response --format markdown
      marrow sensitivity --refit --draws 500 recovery.nc
    """
    from marrow.errors import UsageError

    if out_path is not None:
        from marrow.fits.io import check_writable

        check_writable(out_path, force)
    if refit:
        return _refit(
            target,
            split_list(prior_names),
            covariates,
            given(model_values),
            draws,
            tune,
            chains,
            seed,
            quiet,
            data_path,
            recovery_path,
            fmt,
            force,
            out_path,
            adam,
        )
    if threshold <= 0:
        raise UsageError(f"--threshold must be > 0, got {threshold:g}")
    if target in REGISTRY and not Path(target).exists():
        raise UsageError(
            f"'{target}' is a model name: add --refit to refit it under several prior sets, or give a saved fit file"
        )
    return _powerscale(Path(target), threshold, fmt, force, out_path)


def _powerscale(fit_path: Path, threshold: float, fmt: str, force: bool, out_path: Path | None) -> int:
    from marrow.fits import Fit
    from marrow.formatting import render
    from marrow.sensitivity import DIAGNOSES, LOWER_ALPHA, UPPER_ALPHA, powerscale_sensitivity

    fitted = Fit.load(fit_path)
    result = powerscale_sensitivity(fitted, threshold=threshold)
    title = (
        f"Power-scaling sensitivity of {fit_path} ({fitted.spec.label}, prior '{fitted.provenance.get('prior_set')}'; "
        f"alpha {LOWER_ALPHA:g} to {UPPER_ALPHA:g}, threshold {threshold:g})"
    )
    text = render(result.table, fmt, title=title, caption=title + ".")
    if fmt == "table":
        seen = [d for d in DIAGNOSES if d != "-" and (result.table["diagnosis"] == d).any()]
        text += "".join(f"{d}: {DIAGNOSES[d]}\n" for d in seen)
        if not seen:
            text += f"no quantity is sensitive to the prior (all prior sensitivities below {threshold:g})\n"
        ks = ", ".join(f"{c} {k:.2f}" for c, k in result.pareto_k.items())
        text += (
            f"power-scaled prior: {result.prior_variables or '-'}; "
            f"Pareto k: {ks} (reliable below {result.k_threshold:.2f})\n"
        )
    emit(text, out_path, force)
    for note in result.notes:
        warn(note)
    return 0


def _refit(
    target: str,
    prior_names: tuple[str, ...],
    covariates: str,
    options: dict,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    quiet: bool,
    data_path,
    recovery_path,
    fmt: str,
    force: bool,
    out_path: Path | None,
    adam=None,
) -> int:
    import sys

    from marrow.data.adam import load_input
    from marrow.errors import UsageError
    from marrow.formatting import plural, render
    from marrow.sensitivity import refit_under_priors
    from marrow.spec import ModelSpec, SamplerSettings

    if recovery_path is not None and data_path is None:
        raise UsageError("--recovery needs --data (the patients table it belongs to)")
    if target in REGISTRY and not Path(target).exists():
        spec = ModelSpec(model=target, covariates=split_list(covariates), **options)
        data = None
    elif Path(target).exists():
        spec, data = _fitted(Path(target), covariates, options, data_path, recovery_path, adam)
    else:
        names = ", ".join(REGISTRY.names())
        raise UsageError(f"with --refit, give a model name ({names}) or a saved fit file, not '{target}'")
    settings = SamplerSettings(chains=chains, draws=draws, tune=tune, seed=seed)
    if data is None:
        data = load_input(
            data_path, recovery_path, spec.needs(), adam=adam, announce=not quiet, time_unit=spec.time_unit
        )
    table = refit_under_priors(
        data,
        spec,
        list(prior_names),
        settings,
        progress=not quiet and sys.stderr.isatty(),
        announce=None if quiet else info,
    )
    title = (
        f"{spec.label} under {plural(len(prior_names), 'prior set')}: median [95% equal-tailed interval] "
        f"({plural(chains, 'chain')} x {plural(draws, 'draw')}, seed {seed})"
    )
    emit(render(table, fmt, title=title, caption=title + "."), out_path, force)
    return 0


def _fitted(path: Path, covariates: str, options: dict, data_path, recovery_path, adam):
    """The spec of a saved fit, every option kept (model options or --covariates given here replace its own),
    and its data: --data/--recovery when given, else the files it was fitted on (checked by their hashes)."""
    from dataclasses import replace

    from marrow.data.adam import load_input
    from marrow.fits import Fit
    from marrow.plots import data_for_fit

    fitted = Fit.load(path)
    changes = dict(options, **({"covariates": tuple(split_list(covariates))} if covariates else {}))
    spec = replace(fitted.spec, **changes)
    if data_path is not None or adam is not None:
        return spec, load_input(data_path, recovery_path, spec.needs(), adam=adam, time_unit=spec.time_unit)
    return spec, data_for_fit(fitted)
