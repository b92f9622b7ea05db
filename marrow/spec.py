"""`ModelSpec` and `SamplerSettings`: small frozen, JSON-able descriptions of what to fit and how.

Light to import (no numpy or pandas). What each model accepts is its descriptor's to say
(`marrow.descriptor.REGISTRY`): `ModelSpec` checks the values every model shares (ranges, units), then
asks the model's descriptor about the rest (choices, options that belong to other models)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from marrow import time_units
from marrow.descriptor import REGISTRY
from marrow.errors import UsageError

SAMPLERS = ("auto", "pymc", "nutpie", "numpyro")


def default_family(model: str) -> str | None:
    """The family `model` fits when `family` is None (None for models without families)."""
    return REGISTRY.get(model).default_family


class SpecError(UsageError):
    """A bad ModelSpec value; `field` names the ModelSpec field, so callers (the plan) can name their own key."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(message)


@dataclass(frozen=True)
class Needs:
    """What the requested model needs from the data; anything else is optional (read by `marrow.data`)."""

    ordinal: bool = False  # the `response` column itself (implies an outcome)
    followup: bool = False
    died: bool = False
    adverse_event: bool = False
    recovery: bool = False
    covariates: tuple[str, ...] = field(default_factory=tuple)
    response: bool = False  # an outcome: `response` (CR/PR/NR) or `responder` (0/1); last, for positional callers


@dataclass(frozen=True)
class ModelSpec:
    """What to fit. Fields that a model does not use keep their defaults."""

    model: str
    outcome: str = "binary"
    covariates: tuple[str, ...] = ()
    family: str | None = None
    cure: bool = True
    frailty: bool = False
    per_lineage_effects: bool = False
    threshold: float = 0.15
    n_future: int = 50
    # Times: the unit of the data's time columns (time_units.UNITS), and the times at which the
    # recovery model reports P(recovered by t) and the survival model S(t), in that unit; when given
    # they replace the defaults (time_units.recovery_horizons / survival_horizons).
    time_unit: str = time_units.DEFAULT_UNIT
    horizons: tuple[float, ...] = ()
    competing_death: bool = False  # recovery only: death (died/followup_days) competes with recovery
    # Group effects centred or non-centred: auto (per level, from the data), centred or noncentred
    # (marrow.models.effects); models with group effects only.
    parameterisation: str = "auto"

    def __post_init__(self) -> None:
        if self.model not in REGISTRY:
            raise SpecError("model", f"unknown model '{self.model}'; choose one of {', '.join(REGISTRY.names())}")
        if len(set(self.covariates)) != len(self.covariates):
            raise SpecError("covariates", f"a covariate is listed twice: {', '.join(self.covariates)}")
        if not 0 < self.threshold < 1:
            raise SpecError("threshold", f"the threshold must be a rate between 0 and 1, got {self.threshold}")
        if self.n_future < 1:
            raise SpecError("n_future", f"the future cohort size must be at least 1, got {self.n_future}")
        if self.time_unit not in time_units.UNITS:
            raise SpecError("time_unit", f"unknown time unit {self.time_unit!r}; choose {', '.join(time_units.UNITS)}")
        if any(not math.isfinite(h) or h <= 0 for h in self.horizons):
            shown = ", ".join(f"{h:g}" for h in self.horizons)
            raise SpecError("horizons", f"times must be finite and > 0 ({self.time_unit}), got {shown}")
        fault = REGISTRY.get(self.model).check(self)
        if fault is not None:
            raise SpecError(*fault)

    @property
    def resolved_family(self) -> str | None:
        """The family fitted: `family`, or the model's default (its descriptor's) when None."""
        return self.family or default_family(self.model)

    def needs(self) -> Needs:
        """The columns and tables this model requires of the data (its descriptor's `needs`)."""
        flags = REGISTRY.get(self.model).needs(self)
        return Needs(**dict.fromkeys(flags, True), covariates=self.covariates)

    @property
    def label(self) -> str:
        """Short readable name, e.g. 'response (ordinal)', 'recovery (loglogistic cure)',
        'survival (weibull, weeks)'."""
        label = REGISTRY.get(self.model).label
        return label(self) if label else self.model

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Read a spec written by any marrow version (fits without time_unit are in days).

        Fits before `horizons` stored `at_days` (survival) or `by_days` (recovery): extra days added
        to the defaults, which is what their horizons were."""
        payload = json.loads(text)
        legacy = [float(d) for d in (payload.get("at_days") or []) + (payload.get("by_days") or [])]
        if legacy and not payload.get("horizons"):
            defaults = (
                time_units.survival_horizons("days")
                if payload.get("model") == "survival"
                else time_units.recovery_horizons("days")
            )
            payload["horizons"] = time_units.horizons(list(defaults) + legacy, ())
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in payload.items() if k in known}
        return cls(**kwargs)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else all of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity mask
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample. `target_accept=None` and `sampler="auto"` take the model's defaults.

    `cores` (chains sampled in parallel) defaults to the CPUs available to the process and is capped
    at `chains`; the value stored in a fit is the one used."""

    chains: int = 4
    draws: int = 1000
    tune: int = 1000
    seed: int = 2017
    sampler: str = "auto"
    target_accept: float | None = None
    cores: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise SpecError("sampler", f"unknown sampler '{self.sampler}'; choose one of {', '.join(SAMPLERS)}")
        for name in ("chains", "draws") + (("cores",) if self.cores is not None else ()):
            if getattr(self, name) < 1:
                raise SpecError(name, f"{name} must be at least 1, got {getattr(self, name)}")
        cores = available_cpus() if self.cores is None else self.cores
        object.__setattr__(self, "cores", min(cores, self.chains))  # frozen: fixed once, here
        if self.tune < 0:
            raise SpecError("tune", f"tune must be >= 0, got {self.tune}")
        if self.target_accept is not None and not 0.5 <= self.target_accept < 1:
            raise SpecError("target_accept", f"target_accept must be in [0.5, 1), got {self.target_accept}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SamplerSettings:
        return cls(**json.loads(text))
