"""What a model family *is*, as one frozen value, and the registry of them.

A `ModelDescriptor` says everything the rest of marrow needs about a model family: its name, its
options with defaults and allowed values, its data needs, the prior parameters it takes, its
default sampler and target_accept, its report section and headline rows, its plot kinds and its
frequentist counterpart. Each family declares one (`marrow/models/descriptors/<family>.py`);
`marrow/models/registry.py` registers them in `REGISTRY`, and `ModelSpec`, the CLI, the plan, the
prior catalog, the report, the plots and the worker read them from there.

This module is core (it imports nothing of marrow but `errors`), so `spec` and `priors`, which lie
below `models`, can read the registry; the values live in `models` and are registered when the
`marrow` package is imported (`marrow/__init__.py`), before any `ModelSpec` can exist. Light to import:
no numpy or pandas, so `marrow fit --help` is built from it without loading either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from marrow.errors import UsageError


@dataclass(frozen=True)
class Option:
    """One ModelSpec field a family takes from its user: `marrow fit MODEL --flag` and `[models.NAME] key`.

    The kind follows the default: bool -> a flag (`--x`, or `--x/--no-x` when the default is True), str
    with `choices` -> a choice, int or float -> a number. `plan=False` keeps it out of the analysis plan."""

    name: str  # the ModelSpec field
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    plan: bool = True

    @property
    def flag(self) -> str:
        """The CLI flag: '--per-lineage-effects', or '--cure/--no-cure' for a switch that is on by default."""
        flag = "--" + self.name.replace("_", "-")
        return f"{flag}/--no-{flag[2:]}" if self.default is True else flag

    def accepts(self, value: Any) -> bool:
        """Whether `value` is an allowed value (type and choices; ranges are ModelSpec's checks)."""
        if isinstance(self.default, bool):
            return isinstance(value, bool)
        if isinstance(self.default, int):
            return isinstance(value, int) and not isinstance(value, bool)
        if isinstance(self.default, float):
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        return isinstance(value, str) and (not self.choices or value in self.choices)


@dataclass(frozen=True)
class Times:
    """A time-to-event family's time options: `--time-unit` and its horizons (`--by`/`--at`, with an alias in days)."""

    key: str  # CLI option and plan key in the fit's unit: 'by', 'at'
    days_alias: str  # CLI alias in days: '--by-day'
    plan_alias: str  # plan key in days: 'by_days'
    what: str  # what is reported at those times, for the help
    defaults: str  # the default times, in words
    example: str


@dataclass(frozen=True)
class Headline:
    """A row of the report's headline table: `variable` of the plan step `step` (`element`: one element only;
    '12 months' = the element one year after baseline in the fit's unit), labelled `label` or its quantity,
    with the posterior probabilities whose text contains `probability`."""

    step: str
    variable: str
    element: str | None = None
    label: str | None = None
    probability: str | None = None  # the model's probabilities shown beside it: those whose text contains this


@dataclass(frozen=True)
class PriorParameter:
    """A parameter the family takes a prior for: `key` in prior sets ('response.intercept'), support, meaning."""

    key: str
    support: str  # real, positive, unit
    meaning: str


def _no_needs(spec: Any) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class ModelDescriptor:
    """Everything marrow needs to know about one model family (see the module docstring).

    `module` is the implementation: `inputs`, `build`, `augment`, `quantities` (the reported quantities),
    `probabilities` (the reported probabilities), optionally `default_target_accept(inputs)`."""

    name: str
    summary: str  # first line of `marrow fit NAME --help`
    module: str
    examples: tuple[str, ...] = ()  # command lines shown in `marrow fit NAME --help`
    options: tuple[Option, ...] = ()
    times: Times | None = None
    needs: Callable[[Any], tuple[str, ...]] = _no_needs  # spec -> the `marrow.data.Needs` flags that are True
    label: Callable[[Any], str] | None = None  # spec -> 'recovery (loglogistic cure)'; default: the name
    priors: tuple[PriorParameter, ...] = ()
    target_accept: float = 0.8
    sampler: str = "pymc"  # what `--sampler auto` picks when installed
    # How nutpie reaches the log density in a process that fits the model once (`marrow.fits.compiled.route_for`):
    # "callback" (PyTensor's disk-cached numba function, about 1 s to start; the chains share the GIL) or
    # "cfunc" (numba C callbacks, rebuilt in every process; the chains run in parallel; fitted once, the
    # data are compiled in as constants: `compiled.FROZEN`).
    nutpie_route: str = "callback"
    section: str = ""  # the report's section title (also the comparison table's section)
    headline: tuple[Headline, ...] = ()
    plots: tuple[str, ...] = ()  # endpoint plot kinds drawn for this family (when the fit has their variables)
    frequentist: str = ""  # what `marrow compare` sets beside it
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # plan step -> fixed options; {} = {name: {}}
    threshold_key: str | None = None  # the plan's [thresholds] key that sets `threshold`
    plan_covariates: bool = True  # takes the plan's [data] covariates (False: only its own)

    def __hash__(self) -> int:
        return hash(self.name)

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    @property
    def families(self) -> tuple[str, ...]:
        family = self.option("family")
        return family.choices if family else ()

    @property
    def default_family(self) -> str | None:
        family = self.option("family")
        return family.default if family else None

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(self.steps) or (self.name,)

    def step_options(self, step: str) -> dict[str, Any]:
        return dict(self.steps.get(step, {}))

    @property
    def plan_keys(self) -> set[str]:
        """Keys of `[models.STEP]` in the analysis plan."""
        keys = {"covariates", "sampler"} | {o.name for o in self.options if o.plan}
        keys -= {"threshold"} if self.threshold_key else set()  # set in [thresholds]
        if self.times:
            keys |= {self.times.key, self.times.plan_alias}
        return keys

    def check(self, spec: Any) -> tuple[str, str] | None:
        """The model-specific fault of `spec` as (field, message), or None: values outside an option's
        choices, and options of other families set on this one (they would be ignored silently)."""
        from dataclasses import fields

        defaults = {f.name: f.default for f in fields(spec)}
        declared = dict.fromkeys(o.name for d in REGISTRY for o in d.options)  # every family's options
        for name in declared:
            value = getattr(spec, name)
            option = self.option(name)
            if option is None:
                if value != defaults[name]:
                    mine = ", ".join(o.name for o in self.options) or "none"
                    owners = [d.name for d in REGISTRY if d.option(name)]
                    where = f"the {' and '.join(owners)} model{'s' if len(owners) > 1 else ''} only"
                    return name, f"{name} is an option of {where}, not of {self.name} (its options: {mine})"
            elif option.choices and value not in option.choices and not (name == "family" and value is None):
                return name, f"unknown {name} '{value}' for the {self.name} model; choose {', '.join(option.choices)}"
        if self.times is None and (spec.horizons or spec.time_unit != defaults["time_unit"]):
            timed = " and ".join(d.name for d in REGISTRY if d.times)
            return (
                "time_unit" if not spec.horizons else "horizons",
                f"the {self.name} model has no times; time_unit and horizons apply to {timed}",
            )
        return None


class Registry:
    """Model names -> descriptors, in registration order (the order of sections, CLI commands, plan steps)."""

    def __init__(self) -> None:
        self._models: dict[str, ModelDescriptor] = {}

    def register(self, descriptor: ModelDescriptor) -> ModelDescriptor:
        if descriptor.name in self._models and self._models[descriptor.name] is not descriptor:
            raise ValueError(f"a model named '{descriptor.name}' is registered already")
        clash = {s for d in self for s in d.step_names if d.name != descriptor.name} & set(descriptor.step_names)
        if clash:
            raise ValueError(f"plan step(s) {', '.join(sorted(clash))} belong to another model")
        self._models[descriptor.name] = descriptor
        return descriptor

    def unregister(self, name: str) -> None:
        self._models.pop(name, None)

    def get(self, name: str) -> ModelDescriptor:
        """The descriptor of `name`; a `UsageError` naming the known models otherwise."""
        try:
            return self._models[name]
        except KeyError:
            raise UsageError(f"unknown model '{name}'; choose one of {', '.join(self.names())}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._models)

    def steps(self) -> dict[str, ModelDescriptor]:
        """Plan step names ('response', 'ordinal', ...) -> their model's descriptor."""
        return {step: d for d in self for step in d.step_names}

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def __iter__(self) -> Iterator[ModelDescriptor]:
        return iter(list(self._models.values()))


REGISTRY = Registry()
