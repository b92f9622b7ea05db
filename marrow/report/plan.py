"""The analysis plan: a TOML file (see `marrow init`) validated into a frozen `Plan`.

Validation names the key at fault and raises `UsageError` (exit 2) for unknown models or keys, bad
families or values, and data files that do not exist. Without a plan file the documented defaults
apply: every model on the given data (the bundled synthetic trial by default).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from marrow import time_units
from marrow.descriptor import REGISTRY, ModelDescriptor
from marrow.diagnostics import Thresholds
from marrow.errors import UsageError
from marrow.spec import ModelSpec, SamplerSettings, SpecError

TEMPLATE = Path(__file__).with_name("analysis.toml")
BUNDLED_COVARIATES = ("prior_atg", "active_infection")
QUICK = {"chains": 2, "draws": 200, "tune": 200}

_TOP_KEYS = {"title", "data", "priors", "sampler", "thresholds", "models", "report"}
_SECTION_KEYS = {
    "data": {"patients", "recovery", "covariates", "adam", "adam_mapping", "time_unit"},
    "priors": {"set"},
    "sampler": {"chains", "draws", "tune", "seed", "sampler", "target_accept", "cores"},
    "thresholds": {  # and each model's threshold key (its descriptor's `threshold_key`): see section_keys
        "max_rhat",
        "min_ess",
        "max_divergences",
        "min_bfmi",
        "max_treedepth_share",
        "max_pareto_k",
    },
    "report": {"figures", "dpi", "pdf"},
}


def step_names() -> tuple[str, ...]:
    """Plan step names ([models] run), in the registry's order: 'response', 'ordinal', 'recovery', ..."""
    return tuple(REGISTRY.steps())


def section_keys() -> dict[str, set[str]]:
    """The allowed keys of each top-level table; [thresholds] gains every model's threshold key."""
    keys = {name: set(allowed) for name, allowed in _SECTION_KEYS.items()}
    keys["thresholds"] |= {d.threshold_key for d in REGISTRY if d.threshold_key}
    return keys


@dataclass(frozen=True)
class Step:
    """One model to fit: its name in the plan, what to fit, and whether the plan asked for it by name."""

    name: str
    spec: ModelSpec
    explicit: bool = False
    sampler: str | None = None  # overrides the plan's [sampler] sampler for this model


@dataclass(frozen=True)
class Plan:
    title: str
    patients: Path | None
    recovery: Path | None
    covariates: tuple[str, ...]
    prior: str
    settings: SamplerSettings
    thresholds: Thresholds
    steps: tuple[Step, ...]
    figures: bool = True
    dpi: int = 200
    source: str | None = None  # the plan file, or None for defaults
    text: str = ""  # the plan file's contents, embedded in the report
    overrides: dict[str, Any] = field(default_factory=dict)  # command-line options that changed the plan
    adam: Any = None  # marrow.data.adam.AdamInput when the data are ADaM datasets ([data] adam or --adam)
    pdf: bool = False  # also print report.pdf with headless Chromium (marrow.report.pdf)

    @property
    def synthetic(self) -> bool:
        return self.patients is None and (self.adam is None or self.adam.bundled)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description for the manifest."""
        return {
            "title": self.title,
            "source": self.source,
            "patients": str(self.patients) if self.patients else None,
            "recovery": str(self.recovery) if self.recovery else None,
            "adam": {k: str(v) for k, v in self.adam.paths().items()} if self.adam else None,
            "covariates": list(self.covariates),
            "prior": self.prior,
            "sampler": json.loads(self.settings.to_json()),
            "thresholds": dict(self.thresholds.__dict__),
            "steps": [
                {
                    "name": s.name,
                    "spec": json.loads(s.spec.to_json()),
                    "explicit": s.explicit,
                    "sampler": s.sampler or self.settings.sampler,
                }
                for s in self.steps
            ],
            "figures": self.figures,
            "dpi": self.dpi,
            "overrides": self.overrides,
            "pdf": self.pdf,
        }


def _read(path: Path) -> tuple[dict[str, Any], str]:
    if not path.exists():
        raise UsageError(f"plan file {path} not found (write a template with `marrow init --out {path}`)")
    text = path.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"plan file {path} is not valid TOML: {exc}") from None


def _check_keys(table: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return table


def _typed(value: Any, kind: type | tuple, where: str, what: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise UsageError(f"{where} must be {what}, got {value!r}")
    if not isinstance(value, kind):
        raise UsageError(f"{where} must be {what}, got {value!r}")
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f'{where} must be a list of column names, e.g. ["prior_atg"]')
    return tuple(value)


def _times(value: Any, where: str, unit: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise UsageError(f"{where} must be a list of times in {unit}, e.g. [3, 6, 12]")
    return tuple(float(v) for v in value)


def _path(value: Any, base: Path, where: str) -> Path:
    _typed(value, str, where, "a file path")
    path = Path(value)
    return path if path.is_absolute() else base / path


def load_plan(
    plan_path: Path | None = None,
    patients: Path | None = None,
    recovery: Path | None = None,
    covariates: tuple[str, ...] | None = None,
    quick: bool = False,
    adam: Any = None,
) -> Plan:
    """Read and validate a plan (or the defaults); command-line paths and covariates override the file's."""
    table: dict[str, Any] = {}
    text = ""
    base = Path.cwd()
    if plan_path is not None:
        plan_path = Path(plan_path)
        table, text = _read(plan_path)
        base = plan_path.resolve().parent
    where = str(plan_path) if plan_path else "defaults"
    _check_keys(table, _TOP_KEYS, where)
    sections = {
        name: _check_keys(table.get(name, {}), keys, f"{where} [{name}]") for name, keys in section_keys().items()
    }
    overrides: dict[str, Any] = {}

    data = sections["data"]
    plan_patients = _path(data["patients"], base, f"{where} [data] patients") if "patients" in data else None
    plan_recovery = _path(data["recovery"], base, f"{where} [data] recovery") if "recovery" in data else None
    if patients is not None:
        overrides["data"] = str(patients)
        plan_patients, plan_recovery = Path(patients), None
    if recovery is not None:
        overrides["recovery"] = str(recovery)
        plan_recovery = Path(recovery)
    if plan_recovery is not None and plan_patients is None:
        raise UsageError("a recovery table needs its patients table (--data or [data] patients)")
    for label, path in (("patients", plan_patients), ("recovery", plan_recovery)):
        if path is not None and not path.is_file():
            raise UsageError(f"{label} data file {path} not found")
    plan_adam = _adam(data, base, where, adam, patients, recovery, overrides)
    if plan_adam is not None:
        plan_patients = plan_recovery = None

    if covariates is not None:
        overrides["covariates"] = list(covariates)
        chosen = tuple(covariates)
    elif "covariates" in data:
        chosen = _names(data["covariates"], f"{where} [data] covariates")
    else:
        chosen = BUNDLED_COVARIATES if plan_patients is None and (plan_adam is None or plan_adam.bundled) else ()
    unit = _typed(data.get("time_unit", time_units.DEFAULT_UNIT), str, f"{where} [data] time_unit", "text")
    if unit not in time_units.UNITS:
        raise UsageError(f"{where} [data] time_unit must be one of {', '.join(time_units.UNITS)}, got {unit!r}")
    if plan_adam is not None and unit != time_units.DEFAULT_UNIT:
        raise UsageError(
            f"{where} [data] time_unit is {unit}, but ADaM times are read in days (AVAL converted "
            "by AVALU): leave time_unit out with ADaM input"
        )

    prior = sections["priors"].get("set", "weakly-informative")
    _typed(prior, str, f"{where} [priors] set", "a prior set name or a .toml file")
    from marrow.priors import load_prior_set

    prior_path = Path(prior) if prior.endswith(".toml") and not Path(prior).is_absolute() else None
    if prior_path is not None and not prior_path.exists() and (base / prior_path).exists():
        prior = str(base / prior_path)
    load_prior_set(prior)  # validate now: a bad prior set must not surface after an hour of sampling

    sampler = dict(sections["sampler"])
    for key in ("chains", "draws", "tune", "seed", "cores"):
        if key in sampler:
            _typed(sampler[key], int, f"{where} [sampler] {key}", "a whole number")
    if "target_accept" in sampler:
        _typed(sampler["target_accept"], (int, float), f"{where} [sampler] target_accept", "a number")
    if quick:
        overrides["quick"] = True
        sampler.update(QUICK)
    try:
        settings = SamplerSettings(**sampler)
    except SpecError as exc:
        raise UsageError(f"{where} [sampler] {exc.field}: {exc}") from None

    limits = dict(sections["thresholds"])
    for key, value in limits.items():
        _typed(value, (int, float), f"{where} [thresholds] {key}", "a number")
    rates = {d.threshold_key: float(limits.pop(d.threshold_key)) for d in REGISTRY if d.threshold_key in limits}
    thresholds = Thresholds(**limits)

    models = table.get("models", {})
    if not isinstance(models, dict):
        raise UsageError(f"{where} [models] must be a table")
    steps_known = REGISTRY.steps()
    known = ", ".join(steps_known)
    unknown = sorted(k for k in models if k != "run" and k not in steps_known)
    if unknown:
        raise UsageError(f"{where} [models]: unknown model(s) {', '.join(unknown)}; known: {known}")
    explicit = "run" in models
    run = models.get("run", list(steps_known))
    if not isinstance(run, list) or not all(isinstance(r, str) for r in run):
        raise UsageError(f'{where} [models] run must be a list of model names, e.g. ["response", "recovery"]')
    bad = [r for r in run if r not in steps_known]
    if bad:
        raise UsageError(f"{where} [models] run: unknown model(s) {', '.join(bad)}; known: {known}")
    if len(set(run)) != len(run):
        raise UsageError(f"{where} [models] run lists a model twice")

    steps = []
    for name in run:
        descriptor = steps_known[name]
        options = _check_keys(models.get(name, {}), descriptor.plan_keys, f"{where} [models.{name}]")
        step_sampler = options.get("sampler")
        if step_sampler is not None:
            _typed(step_sampler, str, f"{where} [models.{name}] sampler", "pymc, nutpie or numpyro")
            try:
                SamplerSettings(sampler=step_sampler)  # validates the name
            except SpecError as exc:
                raise UsageError(f"{where} [models.{name}] sampler: {exc}") from None
        steps.append(Step(name, _spec(descriptor, name, options, chosen, rates, unit, where), explicit, step_sampler))
    if explicit and plan_patients is not None and plan_recovery is None:
        for step in steps:
            if step.spec.needs().recovery:
                raise UsageError(
                    f"{where}: the {step.name} model needs a recovery table ([data] recovery or --recovery)"
                )

    report = sections["report"]
    figures = _typed(report.get("figures", True), bool, f"{where} [report] figures", "true or false")
    dpi = _typed(report.get("dpi", 200), int, f"{where} [report] dpi", "a whole number")
    if not 50 <= dpi <= 1200:
        raise UsageError(f"{where} [report] dpi must be between 50 and 1200")
    make_pdf = _typed(report.get("pdf", False), bool, f"{where} [report] pdf", "true or false")
    title = _typed(
        table.get("title", "Bayesian analysis of a multicenter phase II trial"), str, f"{where} title", "text"
    )
    return Plan(
        title,
        plan_patients,
        plan_recovery,
        chosen,
        prior,
        settings,
        thresholds,
        tuple(steps),
        figures,
        dpi,
        str(plan_path) if plan_path else None,
        text,
        overrides,
        plan_adam,
        make_pdf,
    )


def _adam(
    data: dict[str, Any],
    base: Path,
    where: str,
    adam: Any,
    patients: Path | None,
    recovery: Path | None,
    overrides: dict[str, Any],
):
    """The ADaM input: --adam options, else [data] adam = "DIR" (and adam_mapping); None for tables."""
    from marrow.data.adam import AdamInput

    if adam is not None:
        if patients is not None or recovery is not None:
            raise UsageError("give the data one way: ADaM datasets (--adam ...) or tables (--data/--recovery)")
        overrides["adam"] = {k: str(v) for k, v in adam.paths().items()}
        return adam
    if patients is not None or "adam" not in data:
        if "adam_mapping" in data and "adam" not in data:
            raise UsageError(f"{where} [data] adam_mapping needs [data] adam (the folder of ADaM datasets)")
        return None
    if "patients" in data or "recovery" in data:
        raise UsageError(f"{where} [data]: give either adam or patients/recovery, not both")
    folder = _path(data["adam"], base, f"{where} [data] adam")
    mapping = _path(data["adam_mapping"], base, f"{where} [data] adam_mapping") if "adam_mapping" in data else None
    return AdamInput.from_options(folder, mapping=mapping)


def _spec(
    descriptor: ModelDescriptor,
    name: str,
    options: dict[str, Any],
    covariates: tuple[str, ...],
    rates: dict[str, float],
    unit: str,
    where: str,
) -> ModelSpec:
    """The ModelSpec of a plan step from its model's descriptor; ModelSpec's own checks decide, and their
    messages name the plan key."""
    table = f"{where} [models.{name}]"
    own_covariates = "covariates" in options
    keys = {
        "covariates": f"{table} covariates" if own_covariates else f"{where} [data] covariates",
        "time_unit": f"{where} [data] time_unit",
    }
    chosen = _names(options["covariates"], f"{table} covariates") if own_covariates else covariates
    kwargs: dict[str, Any] = {
        "model": descriptor.name,
        "covariates": chosen if own_covariates or descriptor.plan_covariates else (),
        **descriptor.step_options(name),
    }
    for option in descriptor.options:
        if option.name == "threshold" and descriptor.threshold_key:
            keys["threshold"] = f"{where} [thresholds] {descriptor.threshold_key}"
            kwargs["threshold"] = rates.get(descriptor.threshold_key, option.default)
        elif option.plan and option.name in options:
            keys[option.name] = f"{table} {option.name}"
            value = options[option.name]
            if option.name == "family" and (isinstance(value, bool) or not isinstance(value, str)):
                raise UsageError(f"{table} family must be text")
            if not option.choices and not option.accepts(value):
                raise UsageError(f"{table} {option.name} must be {_kind(option.default)}, got {value!r}")
            kwargs[option.name] = value
    if descriptor.times:
        kwargs["time_unit"] = unit
        key, alias = descriptor.times.key, descriptor.times.plan_alias
        if key in options and alias in options:
            raise UsageError(f"{table}: give {key} or {alias}, not both")
        if alias in options and unit != "days":
            raise UsageError(f"{table} {alias} takes days, but [data] time_unit is {unit}: give {key} in {unit}")
        given = key if key in options else alias
        keys["horizons"] = f"{table} {given}"
        if given in options:
            kwargs["horizons"] = _times(options[given], f"{table} {given}", unit)
    try:
        return ModelSpec(**kwargs)
    except SpecError as exc:
        raise UsageError(f"{keys.get(exc.field, table)}: {exc}") from None


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    return "a whole number" if isinstance(default, int) else "a number"


def step_settings(plan: Plan, step: Step) -> SamplerSettings:
    """The sampler settings of one step: the plan's, with the step's sampler if it has its own."""
    return replace(plan.settings, sampler=step.sampler) if step.sampler else plan.settings


def template_text() -> str:
    return TEMPLATE.read_text(encoding="utf-8")
