"""`marrow fit MODEL`: validate data, build, sample, save the fit with provenance, report diagnostics."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from marrow.commands.common import data_options, info, split_days, split_list, warn
from marrow.formatting import plural
from marrow.spec import DEFAULT_FAMILIES, RECOVERY_FAMILIES, SAFETY_FAMILIES, SURVIVAL_FAMILIES


def sampler_options(func):
    """Options shared by every `fit` subcommand."""
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
            help="NUTS target acceptance rate. Default: the model's own (response: 0.95, 0.8 from 20 centers on).",
        ),
        click.option(
            "--sampler",
            type=click.Choice(["auto", "pymc", "nutpie", "numpyro"]),
            default="auto",
            show_default=True,
            help="NUTS implementation; auto = the model's default (nutpie for response and recovery, PyMC otherwise).",
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


@click.group()
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


@fit.command("response")
@sampler_options
@click.option(
    "--outcome",
    type=click.Choice(["binary", "ordinal"]),
    default="binary",
    show_default=True,
    help="binary: responder (CR or PR); ordinal: CR > PR > NR, cumulative logit.",
)
@click.option(
    "--threshold",
    type=float,
    default=0.15,
    show_default=True,
    help="Report P(response rate > THRESHOLD), e.g. the null rate of the design.",
)
def fit_response(outcome: str, threshold: float, **options) -> int:
    """Hierarchical response model: response probability partially pooled over centers.

    \b
    Examples:
      marrow fit response --out response.nc
      marrow fit response --outcome ordinal --covariates prior_atg,active_infection --out ordinal.nc
      marrow fit response --data my_trial.csv --covariates prior_atg --out mine.nc
      marrow fit response --adam adam/ --covariates prior_atg --out mine.nc   # ADSL, ADRS (docs/data.md)
    """
    return run_fit({"model": "response", "outcome": outcome, "threshold": threshold}, options)


@fit.command("recovery")
@sampler_options
@click.option(
    "--family",
    type=click.Choice(list(RECOVERY_FAMILIES)),
    default=DEFAULT_FAMILIES["recovery"],
    show_default=True,
    help="Latency distribution among those who recover (see docs/models.md).",
)
@click.option(
    "--cure/--no-cure",
    default=True,
    show_default=True,
    help="Mixture cure model (some never recover) or a plain censored AFT model.",
)
@click.option("--per-lineage-effects", is_flag=True, help="Covariate effects specific to each lineage.")
@click.option("--frailty", is_flag=True, help="Patient frailty shared across lineages.")
@time_options("by", "--by-day", "P(recovered by t)", "day 30, 90 and 180", "7,14,30")
@click.option(
    "--competing-death",
    is_flag=True,
    help="Death (died/followup_days) competes with recovery: its own Weibull hazard, and cumulative "
    "incidences of recovery and of death before recovery.",
)
def fit_recovery(
    family: str,
    cure: bool,
    per_lineage_effects: bool,
    frailty: bool,
    time_unit: str,
    horizons: tuple[float, ...],
    competing_death: bool,
    **options,
) -> int:
    """Lineage-specific time to recovery, with a cure fraction by default.

    \b
    Examples:
      marrow fit recovery --covariates prior_atg,active_infection --out recovery.nc
      marrow fit recovery --family lognormal --no-cure --out aft.nc
      marrow fit recovery --time-unit weeks --by 2,4,12 --data trial.csv --recovery rec.csv --out weeks.nc
      marrow fit recovery --competing-death --out competing.nc
    """
    return run_fit(
        {
            "model": "recovery",
            "family": family,
            "cure": cure,
            "per_lineage_effects": per_lineage_effects,
            "frailty": frailty,
            "time_unit": time_unit,
            "horizons": horizons,
            "competing_death": competing_death,
        },
        options,
    )


@fit.command("survival")
@sampler_options
@click.option(
    "--family",
    type=click.Choice(list(SURVIVAL_FAMILIES)),
    default=DEFAULT_FAMILIES["survival"],
    show_default=True,
    help="Parametric survival distribution (AFT); exponential = Weibull with shape 1.",
)
@time_options("at", "--at-days", "survival probabilities S(t)", "6, 12 and 24 months", "3,6,12")
def fit_survival(family: str, time_unit: str, horizons: tuple[float, ...], **options) -> int:
    """Overall survival on followup_days and died.

    \b
    Examples:
      marrow fit survival --out survival.nc
      marrow fit survival --time-unit months --at 6,12,36 --data trial.csv --out survival.nc
    """
    return run_fit({"model": "survival", "family": family, "time_unit": time_unit, "horizons": horizons}, options)


@fit.command("safety")
@sampler_options
@click.option(
    "--family",
    type=click.Choice(list(SAFETY_FAMILIES)),
    default=DEFAULT_FAMILIES["safety"],
    show_default=True,
    help="Beta-binomial rate, or logistic with centers partially pooled.",
)
@click.option(
    "--threshold", type=float, default=0.15, show_default=True, help="Report P(adverse-event rate > THRESHOLD)."
)
@click.option(
    "--n-future", type=int, default=50, show_default=True, help="Size of a future cohort for predicted events."
)
def fit_safety(family: str, threshold: float, n_future: int, **options) -> int:
    """Adverse-event rate, its exceedance probability and predicted events in a future cohort.

    \b
    Example:
      marrow fit safety --threshold 0.2 --n-future 40 --out safety.nc
    """
    return run_fit({"model": "safety", "family": family, "threshold": threshold, "n_future": n_future}, options)
