"""The Python API: load a trial, fit a model, summarise, diagnose, save and load, refit many times.

    import marrow
    data = marrow.load_trial("patients.csv", recovery="recovery.csv", covariates=["prior_atg"])
    fit = marrow.fit(data, "response", covariates=["prior_atg"], prior="skeptical", seed=1)
    marrow.summarize(fit); marrow.diagnose(fit); fit.save("response.nc"); marrow.load_fit("response.nc")

A thin layer over the same functions the CLI calls (`marrow.data`, `marrow.fits.run.fit_model`,
`marrow.summaries`, `marrow.diagnostics`): the same data, prior, settings and seed give the same
numbers from Python and from `marrow fit`. Summaries and diagnostics are functions, not methods of
`Fit`, so that `fits` does not import the layers above it. See docs/api.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marrow.errors import UsageError
from marrow.spec import ModelSpec, SamplerSettings

if TYPE_CHECKING:
    import pandas as pd

    from marrow.data import Needs, TrialData
    from marrow.diagnostics import Check, Thresholds
    from marrow.fits import Fit

_SAMPLER_FIELDS = tuple(f.name for f in fields(SamplerSettings) if f.name != "extra")
_SPEC_FIELDS = tuple(f.name for f in fields(ModelSpec) if f.name != "model")


def load_trial(
    patients: str | Path | None = None, recovery: str | Path | None = None, covariates: Iterable[str] = ()
) -> TrialData:
    """Load and validate a trial from files (CSV or Parquet); the bundled SYNTHETIC trial when
    `patients` is None. Every optional column present and valid is kept, so one `TrialData` serves
    every model its columns allow; `covariates` are the columns to use as covariates. Raises
    `DataError` listing every problem (file, column, rows, what was expected)."""
    from marrow.data import Needs
    from marrow.data import load_trial as _load

    needs = Needs(recovery=recovery is not None or patients is None, covariates=tuple(covariates))
    return _load(patients, recovery, needs)


def from_frames(
    patients: pd.DataFrame, recovery: pd.DataFrame | None = None, covariates: Iterable[str] = ()
) -> TrialData:
    """The same validation as `load_trial`, for tables already in memory (values are read as a file's cells)."""
    from marrow.data import Needs, load_frames

    def as_cells(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.astype(object).where(frame.notna(), "").astype(str)

    needs = Needs(recovery=recovery is not None, covariates=tuple(covariates))
    return load_frames(as_cells(patients), None if recovery is None else as_cells(recovery), needs)


def missing(data: TrialData, needs: Needs) -> list[str]:
    """What `data` lacks for `needs`, one readable item each (empty when it has everything)."""
    columns = set(data.patients.columns)
    wanted = {
        "response": ("responder", needs.response),
        "ordinal": ("response", needs.ordinal),
        "followup": ("followup_days", needs.followup),
        "died": ("died", needs.died),
        "adverse_event": ("adverse_event", needs.adverse_event),
    }
    out = [
        f"column '{column}' in the patients table"
        for column, needed in wanted.values()
        if needed and column not in columns
    ]
    if needs.recovery and data.recovery is None:
        out.append("a recovery table (load_trial(..., recovery=FILE))")
    out += [f"covariate '{c}' (load it with covariates=[...])" for c in needs.covariates if c not in data.covariates]
    return out


def _require(data: TrialData, spec: ModelSpec) -> None:
    lacking = missing(data, spec.needs())
    if lacking:
        raise UsageError(f"the {spec.label} model needs {'; '.join(lacking)}")


def model_spec(model: str, **options: Any) -> ModelSpec:
    """A `ModelSpec` from keyword options (`covariates` may be any iterable of names)."""
    unknown = sorted(set(options) - set(_SPEC_FIELDS))
    if unknown:
        raise UsageError(
            f"unknown option{'s' if len(unknown) > 1 else ''} for a model: {', '.join(unknown)}; "
            f"choose from {', '.join(_SPEC_FIELDS)}"
        )
    for name in ("covariates", "horizons"):
        if name in options:
            options[name] = tuple(options[name])
    return ModelSpec(model, **options)


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], SamplerSettings]:
    sampler = {k: options.pop(k) for k in list(options) if k in _SAMPLER_FIELDS}
    return options, SamplerSettings(**sampler)


def fit(data: TrialData, model: str, prior: str | Path | None = None, progress: bool = False, **options: Any) -> Fit:
    """Fit `model` ("response", "recovery", "survival" or "safety") to `data`.

    `options` are the model's (outcome, family, covariates, cure, frailty, per_lineage_effects,
    competing_death, time_unit, horizons, threshold, n_future; see `ModelSpec`) and the sampler's
    (chains, draws, tune, seed, sampler, target_accept, cores; see `SamplerSettings`), with the CLI's
    defaults. `prior` is a shipped prior set's name or a TOML file (default: weakly-informative)."""
    from marrow.fits.run import fit_model
    from marrow.priors import load_prior_set

    model_options, settings = _split(dict(options))
    spec = model_spec(model, **model_options)
    _require(data, spec)
    return fit_model(data, spec, load_prior_set(prior), settings, progress=progress)


def load_fit(path: str | Path) -> Fit:
    """A fit saved by `Fit.save` or `marrow fit --out` (NetCDF; nothing is unpickled)."""
    from marrow.fits import Fit

    return Fit.load(path)


def summarize(fit: Fit, all_parameters: bool = False, hdi: bool = False, prob: float = 0.95) -> pd.DataFrame:
    """The labelled posterior summary `marrow summarize` prints (`all_parameters`: `--all`)."""
    from marrow.summaries import posterior_summary

    return posterior_summary(fit, hdi=hdi, prob=prob, all_parameters=all_parameters)


def diagnose(fit: Fit, thresholds: Thresholds | None = None) -> list[Check]:
    """Every diagnostic check `marrow diagnose` runs; `[c for c in checks if not c.passed]` failed."""
    from marrow.diagnostics import Thresholds
    from marrow.diagnostics import diagnose as _diagnose

    return _diagnose(fit, thresholds or Thresholds())


class Refitter:
    """Fit one model design to many datasets (simulation studies): the PyMC model is built once and
    the nutpie compile is paid once per process; each `refit` swaps the new data in. Datasets must
    share the design (covariates, numbers of centers and lineages); their labels may differ.
    Each refit gives the numbers a fresh `fit` with the same data and seed gives (tested), except for
    a model whose fresh fit compiles its data in (recovery: `marrow.fits.compiled.FROZEN`, same posterior)."""

    def __init__(self, model: str, prior: str | Path | None = None, postprocess: bool = True, **options: Any) -> None:
        from marrow.priors import load_prior_set

        self.postprocess = postprocess  # False: draws only (no posterior predictive, LOO or log prior)
        model_options, self.settings = _split(dict(options))
        self.spec = model_spec(model, **model_options)
        self.priors = load_prior_set(prior)
        self._built: Any = None
        self._design: tuple | None = None

    def refit(self, data: TrialData, seed: int | None = None) -> Fit:
        """Fit `data` (with `seed`, else the settings' seed)."""
        from marrow.fits.run import fit_model
        from marrow.models import build_model, model_inputs

        _require(data, self.spec)
        inputs = model_inputs(data, self.spec)
        # Covariates are the spec's; the parameterisation resolved from the data changes the graph too.
        design = (len(data.centers), len(data.lineages), tuple(sorted(inputs.parameterisation.items())))
        if self._built is None or design != self._design:
            self._built, self._design = build_model(data, self.spec, self.priors, inputs), design
        settings = self.settings if seed is None else replace(self.settings, seed=seed)
        return fit_model(
            data, self.spec, self.priors, settings, model=self._built, postprocess=self.postprocess, inputs=inputs
        )
