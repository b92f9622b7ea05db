"""`marrow fit MODEL`: validate data, build, sample, save the fit with provenance, report diagnostics."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from marrow.commands.common import data_options, info, split_days, split_list, warn
from marrow.descriptor import REGISTRY, ModelDescriptor, Option
from marrow.formatting import plural
from marrow.spec import SAMPLERS


def sampler_options(func, descriptor: ModelDescriptor | None = None):
    """Options shared by every `fit` subcommand (defaults named from `descriptor` when given)."""
    own = (
        f"the model's own ({descriptor.target_accept:g}, or as the model adapts it to the data)"
        if descriptor
        else "the model's own"
    )
    auto = f"{descriptor.sampler} for this model" if descriptor else "the model's own"
    options = [
        click.option("--quiet", is_flag=True, help="No progress bar or progress messages."),
        click.option("--force", is_flag=True, help="Overwrite an existing fit file."),
        click.option(
            "--out",
            "out_path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Where to save the fit (NetCDF). Default: fit-MODEL.nc in the current folder.",
        ),
        click.option(
            "--target-accept",
            type=float,
            default=None,
            help=f"NUTS target acceptance rate. Default: {own}.",
        ),
        click.option(
            "--sampler",
            type=click.Choice(list(SAMPLERS)),
            default="auto",
            show_default=True,
            help=f"NUTS implementation; auto = {auto} (PyMC's own when that is not installed).",
        ),
        click.option("--seed", type=int, default=2017, show_default=True, help="Random seed; same seed, same numbers."),
        click.option("--tune", type=int, default=1000, show_default=True, help="Warm-up iterations per chain."),
        click.option("--draws", type=int, default=1000, show_default=True, help="Draws per chain after warm-up."),
        click.option(
            "--cores",
            type=int,
            default=None,
            help="Chains sampled in parallel. Default: the CPUs available to marrow, at most --chains.",
        ),
        click.option("--chains", type=int, default=4, show_default=True, help="Number of chains."),
        click.option(
            "--prior",
            default="weakly-informative",
            show_default=True,
            help="Prior set: a shipped name (see `marrow priors list`) or a TOML file.",
        ),
        click.option(
            "--covariates", default="", help="Comma-separated covariate columns, e.g. prior_atg,active_infection."
        ),
    ]
    for option in options:
        func = option(func)
    return data_options(func)


class ModelGroup(click.Group):
    """`marrow fit`'s subcommands: one per registered model, built from its descriptor when asked for."""

    def list_commands(self, ctx) -> list[str]:
        return list(REGISTRY.names())

    def get_command(self, ctx, cmd_name: str) -> click.Command | None:
        return model_command(REGISTRY.get(cmd_name)) if cmd_name in REGISTRY else None


@click.group(cls=ModelGroup)
def fit() -> None:
    """Fit a model and save it as an ArviZ NetCDF file with full provenance.

    \b
    Example:
      marrow fit response --covariates prior_atg,active_infection --out response.nc
    """


def run_fit(spec_kwargs: dict, options: dict) -> int:
    """Shared body of every `fit` subcommand; returns the exit code."""
    from marrow.errors import UsageError
    from marrow.fits.io import check_writable
    from marrow.spec import ModelSpec, SamplerSettings

    spec = ModelSpec(covariates=split_list(options["covariates"]), **spec_kwargs)
    settings = SamplerSettings(
        chains=options["chains"],
        draws=options["draws"],
        tune=options["tune"],
        seed=options["seed"],
        sampler=options["sampler"],
        target_accept=options["target_accept"],
        cores=options["cores"],
    )
    out = options["out_path"] or Path(f"fit-{spec.model}.nc")
    check_writable(out, options["force"])  # before sampling, so no work is wasted
    if options["recovery_path"] is not None and options["data_path"] is None:
        raise UsageError("--recovery needs --data (the patients table it belongs to)")
    fitted = fit_and_save(
        spec,
        settings,
        options["prior"],
        options["data_path"],
        options["recovery_path"],
        out,
        options["force"],
        options["quiet"],
        adam=options["adam"],
    )
    return report_fit_status(fitted, out, options["quiet"])


def fit_and_save(spec, settings, prior, data_path, recovery_path, out: Path, force: bool, quiet: bool, adam=None):
    """Load and validate data (tables, or ADaM datasets when `adam` is given), fit, save atomically.
    Returns the `Fit`."""
    from marrow.data.adam import load_input
    from marrow.fits.run import fit_model
    from marrow.models.levels import notes
    from marrow.priors import load_prior_set

    priors = load_prior_set(prior)
    data = load_input(data_path, recovery_path, spec.needs(), adam=adam, announce=True, time_unit=spec.time_unit)
    info(
        f"fitting {spec.label}: {plural(len(data.patients), 'patient')}, {plural(len(data.centers), 'center')}, "
        f"{plural(settings.chains, 'chain')} x {plural(settings.draws, 'draw')} "
        f"(seed {settings.seed}, prior '{priors.name}')",
        quiet,
    )
    result = fit_model(data, spec, priors, settings, progress=not quiet and sys.stderr.isatty())
    for note in notes(result.provenance):  # a changed model is said even with --quiet
        click.echo(f"note: {note}", err=True)
    result.save(out, force)
    return result


def report_fit_status(fitted, out: Path, quiet: bool) -> int:
    """Say where the fit went and shout about any failed diagnostic; 0 either way (diagnose exits 1)."""
    from marrow.diagnostics import diagnose, failed

    info(f"saved {out}", quiet)
    bad = failed(diagnose(fitted))
    for check in bad:
        warn(
            f"{check.name} = {check.value} (threshold {check.threshold}) {check.detail}".rstrip() + f": {check.advice}"
        )
    if bad:
        warn(f"{plural(len(bad), 'diagnostic check')} failed; run `marrow diagnose {out}` before using this fit")
    else:
        info("diagnostics: all checks passed", quiet)
    return 0


def time_options(name: str, alias: str, what: str, defaults: str, example: str):
    """--time-unit and the horizon option (`--at`/`--by`, with its days-only alias) of a time-to-event fit;
    the command receives `time_unit` and `horizons` (a tuple in that unit, empty = the defaults)."""
    from marrow.time_units import DEFAULT_UNIT, UNITS

    def decorate(func):
        def wrapper(time_unit: str, horizon_text: str, alias_text: str, **kwargs):
            if horizon_text and alias_text:
                raise click.UsageError(f"give --{name} or {alias}, not both")
            if alias_text and time_unit != "days":
                raise click.UsageError(f"{alias} takes days; with --time-unit {time_unit} give --{name} in {time_unit}")
            try:
                values = split_days(horizon_text or alias_text)
            except click.BadParameter as exc:
                raise click.UsageError(f"--{name}: {exc.message}") from None
            return func(time_unit=time_unit, horizons=values, **kwargs)

        import functools

        wrapper = functools.wraps(func)(wrapper)
        wrapper = click.option(
            alias, "alias_text", default="", help=f"Alias of --{name} for times in days (only with --time-unit days)."
        )(wrapper)
        wrapper = click.option(
            f"--{name}",
            "horizon_text",
            default="",
            help=f"Times for {what}, in the --time-unit, e.g. {example}; they replace the "
            f"defaults ({defaults}, converted to the unit).",
        )(wrapper)
        wrapper = click.option(
            "--time-unit",
            type=click.Choice(UNITS),
            default=DEFAULT_UNIT,
            show_default=True,
            help="Unit of the data's times (followup_days, recovery day) and of every reported time and label.",
        )(wrapper)
        return wrapper

    return decorate


def option_decorator(option: Option):
    """The click option of a descriptor's `Option` (its kind follows its default's type)."""
    if isinstance(option.default, bool):
        if option.default:
            return click.option(option.flag, option.name, default=True, show_default=True, help=option.help)
        return click.option(option.flag, option.name, is_flag=True, help=option.help)
    kind = click.Choice(list(option.choices)) if option.choices else type(option.default)
    return click.option(
        option.flag, option.name, type=kind, default=option.default, show_default=True, help=option.help
    )


def model_command(descriptor: ModelDescriptor) -> click.Command:
    """`marrow fit NAME`: the sampler and data options, then the model's own options and time options."""
    names = [o.name for o in descriptor.options] + (["time_unit", "horizons"] if descriptor.times else [])

    def command(**options) -> int:
        spec_kwargs = {"model": descriptor.name, **{name: options.pop(name) for name in names}}
        return run_fit(spec_kwargs, options)

    command.__doc__ = descriptor.summary + (
        "\n\n\b\nExample"
        + ("s" if len(descriptor.examples) > 1 else "")
        + ":\n"
        + "".join(f"  {line}\n" for line in descriptor.examples)
        if descriptor.examples
        else ""
    )
    func = sampler_options(command, descriptor)
    for option in reversed(descriptor.options):
        func = option_decorator(option)(func)
    if descriptor.times:
        t = descriptor.times
        func = time_options(t.key, t.days_alias, t.what, t.defaults, t.example)(func)
    return click.command(descriptor.name)(func)
