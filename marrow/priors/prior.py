"""`Prior`: a validated distribution with its arguments and a one-line reason.

A prior is checked when it is declared, round-trips to a plain dict (for TOML and fit attrs) and
creates its PyMC variable inside a model on request. PyMC is imported only in `create`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from marrow.errors import UsageError

# Every catalog parameter lives on a log-odds, log-time or log scale, or is a rate in (0, 1), so
# arguments far outside these bounds are typing mistakes, not beliefs (1e300 overflows the sampler).
# Each kind: (lowest, highest, must be > 0). docs/priors.md lists them.
LOCATION_BOUND = 1e3  # |mu|: a log-odds of 1000, or e^1000 days, is already absurd
SCALE_BOUNDS = (1e-6, 1e3)  # sigma: from a fixed value to far flatter than any scale marrow uses
SHAPE_BOUNDS = (1e-6, 1e6)  # nu, lam, alpha, beta: degrees of freedom, rates and Beta/Gamma shapes
WEIGHT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ArgKind:
    """What an argument may be: a range, and whether it must be > 0 (said first when it is not)."""

    low: float
    high: float
    positive: bool
    what: str

    def error(self, value: float) -> str | None:
        """Why `value` is not allowed (text to follow the argument's name), or None."""
        if self.positive and value <= 0:
            return "must be > 0"
        if not self.low <= value <= self.high:
            return f"must be between {self.low:g} and {self.high:g} ({self.what}; see docs/priors.md)"
        return None


_LOCATION = ArgKind(-LOCATION_BOUND, LOCATION_BOUND, False, "marrow's bound for a location")
_SCALE = ArgKind(*SCALE_BOUNDS, True, "marrow's bound for a scale")
_SHAPE = ArgKind(*SHAPE_BOUNDS, True, "marrow's bound for a shape or rate")
_WEIGHT = ArgKind(0.0, 1.0, False, "a mixture weight")


@dataclass(frozen=True)
class DistSpec:
    args: dict[str, ArgKind]
    support: str  # "real", "positive" or "unit"
    defaults: dict[str, float] = field(default_factory=dict)
    vector: bool = False  # every argument is a list of numbers of one common length (mixtures)


DISTRIBUTIONS: dict[str, DistSpec] = {
    "Normal": DistSpec({"mu": _LOCATION, "sigma": _SCALE}, "real"),
    "StudentT": DistSpec({"nu": _SHAPE, "mu": _LOCATION, "sigma": _SCALE}, "real"),
    "HalfNormal": DistSpec({"sigma": _SCALE}, "positive"),
    "HalfStudentT": DistSpec({"nu": _SHAPE, "sigma": _SCALE}, "positive"),
    "Exponential": DistSpec({"lam": _SHAPE}, "positive"),
    "LogNormal": DistSpec({"mu": _LOCATION, "sigma": _SCALE}, "positive"),
    "Gamma": DistSpec({"alpha": _SHAPE, "beta": _SHAPE}, "positive"),
    "Beta": DistSpec({"alpha": _SHAPE, "beta": _SHAPE}, "unit"),
    # A finite mixture of normals, e.g. a meta-analytic-predictive prior on a log-odds
    # (marrow priors map): weights w sum to 1, one mu and one sigma > 0 per component.
    "NormalMixture": DistSpec({"w": _WEIGHT, "mu": _LOCATION, "sigma": _SCALE}, "real", vector=True),
}


def _as_number(key: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"prior '{key}': argument '{arg}' must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise UsageError(f"prior '{key}': argument '{arg}' must be finite, got {value!r}")
    return number


def _as_numbers(key: str, arg: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise UsageError(f"prior '{key}': argument '{arg}' must be a non-empty list of numbers, got {value!r}")
    return tuple(_as_number(key, arg, v) for v in value)


def _check_vector(key: str, dist: str, spec: DistSpec, given: dict[str, Any]) -> dict[str, tuple[float, ...]]:
    """Validate the list arguments of a mixture: numbers, common length, per-element checks, weights sum to 1."""
    args: dict[str, tuple[float, ...]] = {}
    for arg, kind in spec.args.items():
        values = _as_numbers(key, arg, given[arg])
        for i, value in enumerate(values):
            if (text := kind.error(value)) is not None:
                raise UsageError(f"prior '{key}': element {i + 1} of argument '{arg}' of {dist} {text}, got {value:g}")
        args[arg] = values
    lengths = {arg: len(v) for arg, v in args.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{a} has {n}" for a, n in lengths.items())
        raise UsageError(f"prior '{key}': the arguments of {dist} must have one element per component ({shown})")
    if "w" in args and abs(sum(args["w"]) - 1.0) > WEIGHT_TOLERANCE:
        raise UsageError(f"prior '{key}': the weights 'w' of {dist} must sum to 1, got {sum(args['w']):.6g}")
    return args


@dataclass(frozen=True)
class Prior:
    """A distribution for one model parameter, e.g. Prior("Normal", {"mu": 0, "sigma": 1.5}).

    Arguments are numbers, or tuples of numbers for a mixture such as
    Prior("NormalMixture", {"w": (0.8, 0.2), "mu": (-1.2, 0.0), "sigma": (0.3, 1.5)}).
    """

    dist: str
    args: dict[str, float | tuple[float, ...]]
    reason: str = ""

    @classmethod
    def from_dict(cls, key: str, table: dict[str, Any]) -> Prior:
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
            raise UsageError(
                f"prior '{key}': unknown argument(s) {', '.join(unknown)} for {dist}; expected {', '.join(spec.args)}"
            )
        missing = [a for a in spec.args if a not in given]
        if missing:
            raise UsageError(f"prior '{key}': {dist} needs argument(s) {', '.join(missing)}")
        if spec.vector:
            args: dict[str, Any] = _check_vector(key, dist, spec, given)
        else:
            args = {}
            for arg, kind in spec.args.items():
                value = _as_number(key, arg, given[arg])
                if (text := kind.error(value)) is not None:
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
        """Plain TOML/JSON-able dict (mixture arguments as lists); `from_dict` reads it back."""
        args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.args.items()}
        return {"dist": self.dist, **args, "reason": self.reason}

    def describe(self) -> str:
        """Readable form, e.g. 'Normal(mu=0, sigma=1.5)' or 'NormalMixture(w=[0.8, 0.2], ...)'."""

        def show(v) -> str:
            if isinstance(v, tuple):
                return "[" + ", ".join(f"{x:.4g}" for x in v) + "]"
            return f"{v:g}"

        inner = ", ".join(f"{k}={show(v)}" for k, v in self.args.items())
        return f"{self.dist}({inner})"

    def create(self, name: str, **kwargs: Any):
        """Create this prior's PyMC random variable inside the current model context."""
        import numpy as np
        import pymc as pm

        args = {k: (np.asarray(v, dtype="float64") if isinstance(v, tuple) else v) for k, v in self.args.items()}
        return getattr(pm, self.dist)(name, **args, **kwargs)

    def scipy(self):
        """The equivalent frozen scipy.stats distribution (for prior densities in plots and checks)."""
        from scipy import stats

        a: dict[str, Any] = self.args  # floats, except NormalMixture's tuples
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
        if self.dist == "NormalMixture":
            return NormalMixtureRV(a["w"], a["mu"], a["sigma"])
        raise UsageError(f"no scipy equivalent for {self.dist}")


def _half_t(nu: float, sigma: float):
    from scipy import stats

    class _HalfT(stats.rv_continuous):
        def _pdf(self, x):
            return 2 * stats.t.pdf(x, nu)

        def _cdf(self, x):
            return 2 * stats.t.cdf(x, nu) - 1

    return _HalfT(a=0, name="halft")(scale=sigma)


class NormalMixtureRV:
    """A frozen finite mixture of normals with the scipy.stats methods marrow uses."""

    def __init__(self, w, mu, sigma):
        import numpy as np

        self.w = np.asarray(w, dtype="float64")
        self.mu = np.asarray(mu, dtype="float64")
        self.sigma = np.asarray(sigma, dtype="float64")

    def logpdf(self, x):
        import numpy as np
        from scipy import stats
        from scipy.special import logsumexp

        x = np.asarray(x, dtype="float64")
        terms = np.log(self.w) + stats.norm.logpdf(x[..., None], self.mu, self.sigma)
        return logsumexp(terms, axis=-1)

    def pdf(self, x):
        import numpy as np

        return np.exp(self.logpdf(x))

    def cdf(self, x):
        import numpy as np
        from scipy import stats

        x = np.asarray(x, dtype="float64")
        return (self.w * stats.norm.cdf(x[..., None], self.mu, self.sigma)).sum(axis=-1)

    def ppf(self, q):
        """Quantiles by bisection on the cdf (vectorised; accurate to about 1e-10)."""
        import numpy as np

        q = np.asarray(q, dtype="float64")
        low = np.full(q.shape, float((self.mu - 40 * self.sigma).min()))
        high = np.full(q.shape, float((self.mu + 40 * self.sigma).max()))
        for _ in range(200):
            mid = 0.5 * (low + high)
            below = self.cdf(mid) < q
            low = np.where(below, mid, low)
            high = np.where(below, high, mid)
        return 0.5 * (low + high)

    def mean(self) -> float:
        return float((self.w * self.mu).sum())

    def var(self) -> float:
        return float((self.w * (self.sigma**2 + self.mu**2)).sum() - self.mean() ** 2)

    def std(self) -> float:
        return math.sqrt(self.var())

    def interval(self, confidence: float):
        return tuple(float(v) for v in self.ppf([(1 - confidence) / 2, (1 + confidence) / 2]))

    def rvs(self, size=None, random_state=None):
        import numpy as np

        rng = np.random.default_rng(random_state)
        n = int(np.prod(size)) if size is not None else 1
        component = rng.choice(len(self.w), size=n, p=self.w / self.w.sum())
        draws = rng.normal(self.mu[component], self.sigma[component])
        return draws.reshape(size) if size is not None else float(draws[0])
