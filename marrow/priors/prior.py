"""`Prior`: a validated distribution with its arguments and a one-line reason.

A prior is checked when it is declared, round-trips to a plain dict (for TOML and fit attrs) and
creates its PyMC variable inside a model on request. PyMC is imported only in `create`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from marrow.errors import UsageError

# Distribution name -> (argument -> check, support). Checks return an error text or None.
_POSITIVE = ("must be > 0", lambda v: v > 0)
_ANY = ("must be a finite number", lambda v: True)


@dataclass(frozen=True)
class DistSpec:
    args: dict[str, tuple[str, Any]]
    support: str  # "real", "positive" or "unit"
    defaults: dict[str, float] = field(default_factory=dict)


DISTRIBUTIONS: dict[str, DistSpec] = {
    "Normal": DistSpec({"mu": _ANY, "sigma": _POSITIVE}, "real"),
    "StudentT": DistSpec({"nu": _POSITIVE, "mu": _ANY, "sigma": _POSITIVE}, "real"),
    "HalfNormal": DistSpec({"sigma": _POSITIVE}, "positive"),
    "HalfStudentT": DistSpec({"nu": _POSITIVE, "sigma": _POSITIVE}, "positive"),
    "Exponential": DistSpec({"lam": _POSITIVE}, "positive"),
    "LogNormal": DistSpec({"mu": _ANY, "sigma": _POSITIVE}, "positive"),
    "Gamma": DistSpec({"alpha": _POSITIVE, "beta": _POSITIVE}, "positive"),
    "Beta": DistSpec({"alpha": _POSITIVE, "beta": _POSITIVE}, "unit"),
}


def _as_number(key: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"prior '{key}': argument '{arg}' must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise UsageError(f"prior '{key}': argument '{arg}' must be finite, got {value!r}")
    return number


@dataclass(frozen=True)
class Prior:
    """A distribution for one model parameter, e.g. Prior("Normal", {"mu": 0, "sigma": 1.5})."""

    dist: str
    args: dict[str, float]
    reason: str = ""

    @classmethod
    def from_dict(cls, key: str, table: dict[str, Any]) -> "Prior":
        """Build and validate from a TOML table like {dist = "Normal", mu = 0, sigma = 1, reason = "..."}."""
        if not isinstance(table, dict) or "dist" not in table:
            raise UsageError(f"prior '{key}': needs a table with 'dist' and its arguments")
        dist = table["dist"]
        if dist not in DISTRIBUTIONS:
            raise UsageError(f"prior '{key}': unknown distribution '{dist}'; known: {', '.join(DISTRIBUTIONS)}")
        spec = DISTRIBUTIONS[dist]
        given = {k: v for k, v in table.items() if k not in ("dist", "reason")}
        unknown = sorted(set(given) - set(spec.args))
        if unknown:
            raise UsageError(f"prior '{key}': unknown argument(s) {', '.join(unknown)} for {dist}; expected {', '.join(spec.args)}")
        missing = [a for a in spec.args if a not in given]
        if missing:
            raise UsageError(f"prior '{key}': {dist} needs argument(s) {', '.join(missing)}")
        args: dict[str, float] = {}
        for arg, (text, check) in spec.args.items():
            value = _as_number(key, arg, given[arg])
            if not check(value):
                raise UsageError(f"prior '{key}': argument '{arg}' of {dist} {text}, got {value:g}")
            args[arg] = value
        reason = table.get("reason", "")
        if not isinstance(reason, str):
            raise UsageError(f"prior '{key}': 'reason' must be text")
        return cls(dist, args, reason)

    @property
    def support(self) -> str:
        return DISTRIBUTIONS[self.dist].support

    def to_dict(self) -> dict[str, Any]:
        return {"dist": self.dist, **self.args, "reason": self.reason}

    def describe(self) -> str:
        """Readable form, e.g. 'Normal(mu=0, sigma=1.5)'."""
        inner = ", ".join(f"{k}={v:g}" for k, v in self.args.items())
        return f"{self.dist}({inner})"

    def create(self, name: str, **kwargs: Any):
        """Create this prior's PyMC random variable inside the current model context."""
        import pymc as pm

        return getattr(pm, self.dist)(name, **self.args, **kwargs)

    def scipy(self):
        """The equivalent frozen scipy.stats distribution (for prior densities in plots and checks)."""
        from scipy import stats

        a = self.args
        if self.dist == "Normal":
            return stats.norm(a["mu"], a["sigma"])
        if self.dist == "StudentT":
            return stats.t(a["nu"], a["mu"], a["sigma"])
        if self.dist == "HalfNormal":
            return stats.halfnorm(0, a["sigma"])
        if self.dist == "HalfStudentT":
            return stats.halfcauchy(0, a["sigma"]) if a["nu"] == 1 else _half_t(a["nu"], a["sigma"])
        if self.dist == "Exponential":
            return stats.expon(0, 1 / a["lam"])
        if self.dist == "LogNormal":
            return stats.lognorm(a["sigma"], 0, math.exp(a["mu"]))
        if self.dist == "Gamma":
            return stats.gamma(a["alpha"], 0, 1 / a["beta"])
        if self.dist == "Beta":
            return stats.beta(a["alpha"], a["beta"])
        raise UsageError(f"no scipy equivalent for {self.dist}")


def _half_t(nu: float, sigma: float):
    from scipy import stats

    class _HalfT(stats.rv_continuous):
        def _pdf(self, x):
            return 2 * stats.t.pdf(x, nu)

        def _cdf(self, x):
            return 2 * stats.t.cdf(x, nu) - 1

    return _HalfT(a=0, name="halft")(scale=sigma)
