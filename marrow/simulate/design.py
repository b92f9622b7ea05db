"""The design file of `marrow simulate`: a trial to simulate, how to analyse it and what to decide.

A design (TOML) holds the centers (planned sizes, or accrual weights and a total), covariate
prevalences, the analysis model and prior set, interim analyses with their rules, the final rule,
scenarios (truths to simulate from), the study seed, replicates and sampler settings.
`read_design(path)` parses and validates it into a frozen, picklable `Design`; every problem is a
`UsageError` (exit 2) naming the key and what was expected. Rule texts are kept as written: their
grammar belongs to `marrow.simulate.rules`. `template_text()` is the bundled design
(`marrow/datasets/design.toml`), written by `marrow init --design`; `--model recovery` writes the
recovery example (`marrow/datasets/design-recovery.toml`).
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from marrow.errors import UsageError
from marrow.spec import ModelSpec, SamplerSettings, SpecError

ANALYSIS_MODELS = ("response", "beta-binomial", "recovery")
TOP_KEYS = {
    "seed",
    "replicates",
    "centers",
    "covariates",
    "model",
    "timing",
    "sampler",
    "interims",
    "decision",
    "scenarios",
}
BUNDLED_LINEAGES = ("leukocytic", "erythrocytic", "megakaryocytic")  # the bundled trial's, in its order
# Recovery options `marrow fit recovery` takes that a design cannot simulate yet (descriptor option names).
RECOVERY_UNSUPPORTED = ("frailty", "per_lineage_effects", "competing_death", "time_unit")
DEFAULT_SHAPE = 2.0  # latency shape of a recovery scenario (the family's k; 2: a unimodal hazard)
DEFAULT_SAMPLER = {"chains": 4, "tune": 500, "draws": 500}
# Replicates sampled together in one model by the response analysis (`marrow.simulate.batched`;
# the measurements behind the default are in docs/performance.md, "Batched refits").
DEFAULT_BATCH = 8


@dataclass(frozen=True)
class Interim:
    """An interim analysis after `n` patients (in enrolment order) and its stopping rules (texts or None)."""

    n: int
    futility: str | None = None
    efficacy: str | None = None


@dataclass(frozen=True)
class Scenario:
    """A truth to simulate from: the population response rate and center sd (logit scale), or a fixed
    rate per center; covariate effects as log odds ratios (covariate -> value, missing ones 0)."""

    name: str
    response_rate: float | None
    center_sd: float
    center_rates: tuple[tuple[str, float], ...] = ()
    log_odds_ratios: tuple[tuple[str, float], ...] = ()

    def log_odds_ratio(self, covariate: str) -> float:
        return dict(self.log_odds_ratios).get(covariate, 0.0)


@dataclass(frozen=True)
class RecoveryScenario:
    """A recovery truth: per lineage the cure fraction (share who never recover, over the trial's
    population) and the latency median in days among those who recover, one latency `shape` (the
    family's k), the sd of center effects on the logit of ever recovering, and covariate effects on
    ever recovering as log odds ratios (covariate -> value, missing ones 0). Pairs in lineage order."""

    name: str
    cure_fractions: tuple[tuple[str, float], ...]
    median_days: tuple[tuple[str, float], ...]
    shape: float = DEFAULT_SHAPE
    center_sd: float = 0.0
    log_odds_ratios: tuple[tuple[str, float], ...] = ()

    def log_odds_ratio(self, covariate: str) -> float:
        return dict(self.log_odds_ratios).get(covariate, 0.0)


@dataclass(frozen=True)
class Timing:
    """When patients enter and how long they are followed (recovery designs): entry uniform over
    `accrual_days`, each patient followed `follow_up_days`; `lineages` simulated, in order."""

    lineages: tuple[str, ...]
    accrual_days: float
    follow_up_days: float


@dataclass(frozen=True)
class Analysis:
    """The analysis model: `model` is "response" or "recovery" (hierarchical, sampled, `spec` as
    `marrow fit` takes it, prior set `prior`) or "beta-binomial" (single arm, Beta(a, b) prior, closed form)."""

    model: str
    spec: ModelSpec | None = None
    prior: str = "weakly-informative"
    a: float = 1.0
    b: float = 1.0

    @property
    def sampled(self) -> bool:
        return self.model != "beta-binomial"


@dataclass(frozen=True)
class Design:
    """A validated design. `centers` in order with their planned sizes (`fixed_sizes`) or accrual weights;
    `n_total` patients per trial; `interims` in increasing `n`; `text` and `sha256` of the file read."""

    centers: tuple[str, ...]
    center_values: tuple[float, ...]
    fixed_sizes: bool
    n_total: int
    covariates: tuple[tuple[str, float], ...]
    analysis: Analysis
    settings: SamplerSettings
    interims: tuple[Interim, ...]
    go: str
    no_go: str | None
    scenarios: tuple[Scenario | RecoveryScenario, ...]
    seed: int
    replicates: int
    timing: Timing | None = None  # recovery designs only
    text: str = ""
    sha256: str = ""
    source: str = ""
    batch: int = 1  # replicates per batched refit ([sampler] batch; 1: one replicate per sampler run)

    @property
    def covariate_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.covariates)

    @property
    def center_weights(self) -> tuple[float, ...]:
        """Each center's expected share of the patients."""
        total = sum(self.center_values)
        return tuple(v / total for v in self.center_values)

    @property
    def analysis_sizes(self) -> tuple[int, ...]:
        """Patients analysed at analyses 1..K (the interims, then the final analysis)."""
        return tuple(i.n for i in self.interims) + (self.n_total,)

    def rules_by_key(self) -> list[tuple[str, str]]:
        """(design-file key, rule text) of every rule, interims first, then the final go (and no-go)."""
        keys = [
            (f"interims[{k}].{name}", text)
            for k, interim in enumerate(self.interims)
            for name, text in (("futility", interim.futility), ("efficacy", interim.efficacy))
            if text
        ]
        return keys + [("decision.go", self.go)] + ([("decision.no_go", self.no_go)] if self.no_go else [])

    def rule_texts(self) -> list[str]:
        """Every rule of the design, interims first, then the final go (and no-go) rule."""
        return [text for _, text in self.rules_by_key()]

    def scenario_names(self) -> list[str]:
        return [s.name for s in self.scenarios]


# --- reading --------------------------------------------------------------------------------------


class _Reader:
    """Typed access to one table of the design; every error names the key and the expectation."""

    def __init__(self, table: Any, where: str, source: str) -> None:
        self.where, self.source = where, source
        if not isinstance(table, dict):
            self.fail("", "a table", table)
        self.table = table

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where and name else (self.where or name)

    def fail(self, name: str, expected: str, got: Any) -> None:
        raise UsageError(f"{self.source}: {self.key(name)}: expected {expected}, got {got!r}")

    def only(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.table) - allowed)
        if unknown:
            raise UsageError(
                f"{self.source}: unknown key{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(self.key(k) for k in unknown)}; expected one of {', '.join(sorted(allowed))}"
            )

    def get(self, name: str, kind: str, default: Any = None, required: bool = False) -> Any:
        if name not in self.table:
            if required:
                raise UsageError(f"{self.source}: {self.key(name)} is missing; expected {_KINDS[kind]}")
            return default
        value = self.table[name]
        if not _CHECKS[kind](value):
            self.fail(name, _KINDS[kind], value)
        return float(value) if kind in ("number", "rate", "positive", "nonnegative") else value

    def mapping(self, name: str, kind: str, required: bool = False) -> dict[str, Any] | None:
        if name not in self.table:
            if required:
                raise UsageError(f"{self.source}: {self.key(name)} is missing; expected a table of {_KINDS[kind]}")
            return None
        value = self.table[name]
        if not isinstance(value, dict) or not value:
            self.fail(name, f"a non-empty table of {_KINDS[kind]}", value)
        for k, v in value.items():
            if not _CHECKS[kind](v):
                raise UsageError(f"{self.source}: {self.key(name)}.{k}: expected {_KINDS[kind]}, got {v!r}")
        return {k: float(v) if kind != "count" else v for k, v in value.items()}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


_CHECKS = {
    "number": _is_number,
    "rate": lambda v: _is_number(v) and 0 < v < 1,
    "positive": lambda v: _is_number(v) and v > 0,
    "nonnegative": lambda v: _is_number(v) and v >= 0,
    "count": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "text": lambda v: isinstance(v, str) and v.strip() != "",
    "texts": lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v),
}
_KINDS = {
    "number": "a number",
    "rate": "a rate strictly between 0 and 1",
    "positive": "a positive number",
    "nonnegative": "a number >= 0",
    "count": "a whole number >= 1",
    "int": "a whole number >= 0",
    "text": "a non-empty string",
    "texts": "a list of names",
}


def read_design(path: Path | str | None = None) -> Design:
    """Parse and validate a design file (None: the bundled design)."""
    if path is None:
        text = bundled_text()
        source = "design.toml (bundled)"
        base = None
    else:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the design file {path}: {exc.strerror or exc}") from None
        source, base = str(path), path.parent
    return parse_design(text, source, base)


def parse_design(text: str, source: str = "design", base: Path | None = None) -> Design:
    """A `Design` from TOML text; `base` is the folder a relative prior-set file is read from."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source} is not valid TOML: {exc}") from None
    top = _Reader(raw, "", source)
    top.only(TOP_KEYS)
    seed = top.get("seed", "int", 2024)
    replicates = top.get("replicates", "count", 1000)

    centers, values, fixed, n_total = _centers(_Reader(raw.get("centers"), "centers", source))
    covariates = _covariates(raw.get("covariates", {}), source)
    analysis, lineages = _analysis(_Reader(raw.get("model", {}), "model", source), [c for c, _ in covariates], base)
    timing = _timing(raw, lineages, source)
    settings = _sampler(_Reader(raw.get("sampler", {}), "sampler", source), seed)
    batch = _Reader(raw.get("sampler", {}), "sampler", source).get("batch", "count", DEFAULT_BATCH)
    interims = _interims(raw.get("interims", []), n_total, source)
    decision = _Reader(raw.get("decision"), "decision", source)
    decision.only({"go", "no_go"})
    go = decision.get("go", "text", required=True)
    no_go = decision.get("no_go", "text")
    scenarios: list[Scenario] | list[RecoveryScenario]
    if timing is None:
        scenarios = _scenarios(raw.get("scenarios"), centers, [c for c, _ in covariates], source)
    else:
        scenarios = _recovery_scenarios(raw.get("scenarios"), timing.lineages, [c for c, _ in covariates], source)
    return Design(
        centers=tuple(centers),
        center_values=tuple(values),
        fixed_sizes=fixed,
        n_total=n_total,
        covariates=tuple(covariates),
        analysis=analysis,
        settings=settings,
        interims=tuple(interims),
        go=go,
        no_go=no_go,
        scenarios=tuple(scenarios),
        seed=seed,
        replicates=replicates,
        timing=timing,
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        source=source,
        batch=batch,
    )


def _centers(r: _Reader) -> tuple[list[str], list[float], bool, int]:
    r.only({"sizes", "weights", "total"})
    if ("sizes" in r.table) == ("weights" in r.table):
        raise UsageError(
            f"{r.source}: centers: expected either centers.sizes (planned patients per center) "
            "or centers.weights with centers.total (accrual weights), not both or neither"
        )
    if "sizes" in r.table:
        if "total" in r.table:
            raise UsageError(f"{r.source}: centers.total: the total of fixed sizes is their sum; leave it out")
        sizes = r.mapping("sizes", "count")
        assert sizes is not None
        return list(sizes), [float(v) for v in sizes.values()], True, int(sum(sizes.values()))
    weights = r.mapping("weights", "positive")
    assert weights is not None
    total = r.get("total", "count", required=True)
    return list(weights), list(weights.values()), False, int(total)


def _covariates(table: Any, source: str) -> list[tuple[str, float]]:
    r = _Reader(table, "covariates", source)
    return [(name, float(r.get(name, "rate"))) for name in r.table]


def _analysis(r: _Reader, covariates: list[str], base: Path | None) -> tuple[Analysis, tuple[str, ...]]:
    """The analysis model and (recovery) the lineages to simulate."""
    name = r.get("name", "text", "response")
    if name not in ANALYSIS_MODELS:
        r.fail("name", f"one of {', '.join(ANALYSIS_MODELS)}", name)
    if name == "beta-binomial":
        r.only({"name", "a", "b"})
        return Analysis(name, a=r.get("a", "positive", 1.0), b=r.get("b", "positive", 1.0)), ()
    chosen = r.get("covariates", "texts", [])
    unknown = [c for c in chosen if c not in covariates]
    if unknown:
        r.fail("covariates", f"names from [covariates] ({', '.join(covariates) or 'none given'})", unknown)
    prior = r.get("prior", "text", "weakly-informative")
    if base is not None and prior.endswith(".toml") and not Path(prior).is_absolute():
        prior = str(base / prior)
    parameterisation = r.get("parameterisation", "text", "auto")
    lineages: tuple[str, ...] = ()
    try:
        if name == "recovery":
            spec, lineages = _recovery_spec(r, tuple(chosen), parameterisation)
        else:
            r.only({"name", "outcome", "covariates", "prior", "parameterisation"})
            outcome = r.get("outcome", "text", "binary")
            if outcome != "binary":
                r.fail(
                    "outcome",
                    '"binary" (scenarios give response rates; ordinal designs are not simulated yet)',
                    outcome,
                )
            spec = ModelSpec(
                model="response", outcome=outcome, covariates=tuple(chosen), parameterisation=parameterisation
            )
    except SpecError as exc:
        raise UsageError(f"{r.source}: model.{exc.field}: {exc}") from None
    return Analysis(name, spec=spec, prior=prior), lineages


def _recovery_spec(r: _Reader, covariates: tuple[str, ...], parameterisation: str) -> tuple[ModelSpec, tuple[str, ...]]:
    """The recovery model's spec (options as its descriptor names them) and the lineages to simulate."""
    for option in RECOVERY_UNSUPPORTED:
        if option in r.table:
            raise UsageError(
                f"{r.source}: model.{option}: recovery designs do not simulate the option {option!r} yet "
                "(simulated trials have no frailty, no death and times in days); leave it out"
            )
    r.only({"name", "covariates", "prior", "parameterisation", "family", "cure", "lineages", "by_days"})
    cure = r.table.get("cure", True)
    if not isinstance(cure, bool):
        r.fail("cure", "true or false", cure)
    lineages = tuple(r.get("lineages", "texts", list(BUNDLED_LINEAGES)))
    bad = [x for x in lineages if not x.isidentifier()]
    if bad or not lineages or len(set(lineages)) != len(lineages):
        r.fail("lineages", "distinct names of letters, digits and _ (they name rule quantities)", list(lineages))
    by_days = r.table.get("by_days", [])
    if not isinstance(by_days, list) or not all(_CHECKS["count"](d) for d in by_days):
        r.fail(
            "by_days", "a list of whole days >= 1 (they name rule quantities: recovered_by_{day}_{lineage})", by_days
        )
    spec = ModelSpec(
        model="recovery",
        covariates=covariates,
        family=r.get("family", "text"),
        cure=cure,
        horizons=tuple(float(d) for d in by_days),
        parameterisation=parameterisation,
    )
    return spec, lineages


def _timing(raw: dict, lineages: tuple[str, ...], source: str) -> Timing | None:
    """[timing] of a recovery design (required there, refused elsewhere)."""
    if not lineages:
        if "timing" in raw:
            raise UsageError(f'{source}: timing: only recovery designs ([model] name = "recovery") have a timing')
        return None
    r = _Reader(raw.get("timing"), "timing", source)
    r.only({"accrual_days", "follow_up_days"})
    return Timing(
        lineages,
        accrual_days=r.get("accrual_days", "nonnegative", required=True),
        follow_up_days=r.get("follow_up_days", "positive", required=True),
    )


def _sampler(r: _Reader, seed: int) -> SamplerSettings:
    r.only({"chains", "tune", "draws", "sampler", "target_accept", "batch"})
    values = {k: r.get(k, "count" if k != "tune" else "int", v) for k, v in DEFAULT_SAMPLER.items()}
    try:
        return SamplerSettings(
            chains=values["chains"],
            tune=values["tune"],
            draws=values["draws"],
            seed=seed,
            sampler=r.get("sampler", "text", "auto"),
            target_accept=r.get("target_accept", "rate"),
        )
    except SpecError as exc:
        raise UsageError(f"{r.source}: sampler.{exc.field}: {exc}") from None


def interim_size(after: float | int, n_total: int) -> int:
    """Patients at an interim: `after` patients (a whole number) or that fraction of `n_total`, rounded
    half up."""
    if isinstance(after, int):
        return after
    return int(math.floor(after * n_total + 0.5))


def _interims(items: Any, n_total: int, source: str) -> list[Interim]:
    if not isinstance(items, list):
        raise UsageError(f"{source}: interims: expected a list of [[interims]] tables, got {items!r}")
    out = []
    for i, item in enumerate(items):
        r = _Reader(item, f"interims[{i}]", source)
        r.only({"after", "futility", "efficacy"})
        after = r.table.get("after")
        if not (isinstance(after, int) and not isinstance(after, bool) and after >= 1) and not (
            isinstance(after, float) and 0 < after < 1
        ):
            r.fail("after", "a number of patients (a whole number >= 1) or a fraction between 0 and 1", after)
        n = interim_size(after, n_total)
        if not 1 <= n < n_total:
            r.fail("after", f"fewer patients than the trial's {n_total} (and at least 1)", after)
        futility, efficacy = r.get("futility", "text"), r.get("efficacy", "text")
        if futility is None and efficacy is None:
            raise UsageError(f"{source}: interims[{i}]: expected a futility or an efficacy rule (or both)")
        out.append(Interim(n, futility, efficacy))
    sizes = [i.n for i in out]
    if sizes != sorted(set(sizes)):
        raise UsageError(f"{source}: interims: expected increasing patient numbers, got {sizes}")
    return out


def _scenario_readers(items: Any, source: str) -> list[_Reader]:
    """A reader of each [[scenarios]] table (at least one)."""
    if not isinstance(items, list) or not items:
        raise UsageError(f"{source}: scenarios: expected at least one [[scenarios]] table, got {items!r}")
    return [_Reader(item, f"scenarios[{i}]", source) for i, item in enumerate(items)]


def _log_odds_ratios(r: _Reader, covariates: list[str]) -> tuple[tuple[str, float], ...]:
    """A scenario's covariate log odds ratios, each naming a design covariate (missing ones are 0)."""
    effects = r.mapping("log_odds_ratios", "number") or {}
    unknown = [c for c in effects if c not in covariates]
    if unknown:
        r.fail("log_odds_ratios", f"names from [covariates] ({', '.join(covariates) or 'none given'})", unknown)
    return tuple(effects.items())


def _distinct_names(scenarios: list, source: str) -> None:
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise UsageError(f"{source}: scenarios: expected distinct names, got {names}")


def _scenarios(items: Any, centers: list[str], covariates: list[str], source: str) -> list[Scenario]:
    out = []
    for i, r in enumerate(_scenario_readers(items, source)):
        r.only({"name", "response_rate", "center_sd", "center_rates", "log_odds_ratios"})
        name = r.get("name", "text", required=True)
        rates = r.mapping("center_rates", "rate")
        rate = r.get("response_rate", "rate")
        if (rate is None) == (rates is None):
            raise UsageError(
                f"{source}: scenarios[{i}] ({name}): expected response_rate (with center_sd) or center_rates "
                "(a rate per center), not both or neither"
            )
        if rates is not None:
            if "center_sd" in r.table:
                r.fail("center_sd", "no center_sd with center_rates (the rates fix every center)", r.table["center_sd"])
            if sorted(rates) != sorted(centers):
                r.fail("center_rates", f"a rate for each center ({', '.join(centers)})", sorted(rates))
        out.append(
            Scenario(
                name=name,
                response_rate=rate,
                center_sd=r.get("center_sd", "nonnegative", 0.0),
                center_rates=tuple((c, rates[c]) for c in centers) if rates else (),
                log_odds_ratios=_log_odds_ratios(r, covariates),
            )
        )
    _distinct_names(out, source)
    return out


def _recovery_scenarios(
    items: Any, lineages: tuple[str, ...], covariates: list[str], source: str
) -> list[RecoveryScenario]:
    out = []
    for r in _scenario_readers(items, source):
        r.only({"name", "cure_fractions", "median_days", "shape", "center_sd", "log_odds_ratios"})
        name = r.get("name", "text", required=True)
        per_lineage = {}
        for key, kind in (("cure_fractions", "rate"), ("median_days", "positive")):
            values = r.mapping(key, kind, required=True)
            assert values is not None
            if sorted(values) != sorted(lineages):
                r.fail(key, f"a value for each lineage ({', '.join(lineages)})", sorted(values))
            per_lineage[key] = tuple((x, values[x]) for x in lineages)
        out.append(
            RecoveryScenario(
                name=name,
                cure_fractions=per_lineage["cure_fractions"],
                median_days=per_lineage["median_days"],
                shape=r.get("shape", "positive", DEFAULT_SHAPE),
                center_sd=r.get("center_sd", "nonnegative", 0.0),
                log_odds_ratios=_log_odds_ratios(r, covariates),
            )
        )
    _distinct_names(out, source)
    return out


# --- the bundled design ---------------------------------------------------------------------------


def bundled_text() -> str:
    """The bundled trial's design (`marrow/datasets/design.toml`), the template of `marrow init --design`."""
    return resources.files("marrow.datasets").joinpath("design.toml").read_text(encoding="utf-8")


TEMPLATES = {"response": "design.toml", "recovery": "design-recovery.toml"}  # bundled in marrow/datasets


def template_text(model: str = "response") -> str:
    """The commented design template `marrow init --design [--model MODEL]` writes."""
    return resources.files("marrow.datasets").joinpath(TEMPLATES[model]).read_text(encoding="utf-8")
