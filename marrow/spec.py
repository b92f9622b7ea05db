"""`ModelSpec` and `SamplerSettings`: small frozen, JSON-able descriptions of what to fit and how."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from marrow.data.load import Needs
from marrow.errors import UsageError

MODELS = ("response", "recovery", "survival", "safety")
OUTCOMES = ("binary", "ordinal")
RECOVERY_FAMILIES = ("weibull", "lognormal", "loglogistic")
SURVIVAL_FAMILIES = ("weibull", "exponential")
SAFETY_FAMILIES = ("beta-binomial", "hierarchical")
SAMPLERS = ("auto", "pymc", "nutpie", "numpyro")


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
    by_days: tuple[float, ...] = ()
    at_days: tuple[float, ...] = ()
    n_future: int = 50
    competing_death: bool = False

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise UsageError(f"unknown model '{self.model}'; choose one of {', '.join(MODELS)}")
        if self.outcome not in OUTCOMES:
            raise UsageError(f"unknown outcome '{self.outcome}'; choose binary or ordinal")
        families = {"recovery": RECOVERY_FAMILIES, "survival": SURVIVAL_FAMILIES, "safety": SAFETY_FAMILIES}.get(self.model)
        if self.family is not None and (families is None or self.family not in families):
            allowed = ", ".join(families) if families else "none (this model has no family)"
            raise UsageError(f"unknown family '{self.family}' for the {self.model} model; choose {allowed}")
        if len(set(self.covariates)) != len(self.covariates):
            raise UsageError(f"a covariate is listed twice: {', '.join(self.covariates)}")
        if not 0 < self.threshold < 1:
            raise UsageError(f"--threshold must be a rate between 0 and 1, got {self.threshold}")
        if any(d <= 0 for d in self.by_days + self.at_days):
            raise UsageError("days given with --by-day/--at-days must be > 0")
        if self.n_future < 1:
            raise UsageError("--n-future must be at least 1")
        if self.competing_death and self.model != "recovery":
            raise UsageError("competing death (--competing-death) is an option of the recovery model only")

    def needs(self) -> Needs:
        """The columns and tables this model requires of the data."""
        return Needs(
            ordinal=self.model == "response" and self.outcome == "ordinal",
            followup=self.model == "survival" or self.competing_death,
            died=self.model == "survival" or self.competing_death,
            adverse_event=self.model == "safety",
            recovery=self.model == "recovery",
            covariates=self.covariates,
        )

    @property
    def label(self) -> str:
        """Short readable name, e.g. 'response (ordinal)' or 'recovery (weibull cure)'."""
        if self.model == "response":
            return f"response ({self.outcome})"
        if self.model == "recovery":
            death = ", death competing" if self.competing_death else ""
            return f"recovery ({self.family or 'weibull'} {'cure' if self.cure else 'AFT, no cure'}{death})"
        return f"{self.model} ({self.family})" if self.family else self.model

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        payload = json.loads(text)
        known = {f.name for f in fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in payload.items() if k in known}
        return cls(**kwargs)


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample. `target_accept=None` and `sampler="auto"` take the model's defaults."""

    chains: int = 4
    draws: int = 1000
    tune: int = 1000
    seed: int = 2017
    sampler: str = "auto"
    target_accept: float | None = None
    cores: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise UsageError(f"unknown sampler '{self.sampler}'; choose one of {', '.join(SAMPLERS)}")
        for name in ("chains", "draws", "cores"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1")
        if self.tune < 0:
            raise UsageError("--tune must be >= 0")
        if self.target_accept is not None and not 0.5 <= self.target_accept < 1:
            raise UsageError("--target-accept must be in [0.5, 1)")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SamplerSettings":
        return cls(**json.loads(text))
