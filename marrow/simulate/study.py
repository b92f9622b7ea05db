"""One replicate of a design study: simulate a trial, analyse it at every analysis, return its record.

Every replicate is analysed at every analysis k = 1..K of the design (the interims, then the final
analysis, on the first n_k patients in enrolment order); decisions are applied afterwards from the
record (`marrow.simulate.oc`), so another rule or threshold needs no refit. The record's columns are
those of the contract in docs/simulate.md: per analysis `a{k}:n`, `a{k}:mean:{q}`,
`a{k}:quantile:{p}:{q}`, `a{k}:exceed:{t}:{q}`, `a{k}:rule:{term}` and the sampler's diagnostics; per
replicate `true:{q}` and `diagnostics_failed`.

The response model keeps the design's array shapes at every analysis: its cells are every (center,
covariate pattern) of the design, with the analysed patients' counts (zero allowed: a zero-count cell
adds nothing to the likelihood and has weight 0 in `response_rate`), so the refitter
(`marrow.simulate.refit`) compiles once per process and swaps arrays. The beta-binomial model is
conjugate and needs no sampling: the posterior is Beta(a + y, b + n - y), its functionals exact.

Identical data are fitted once per process (frequent at small interims): fits are cached by the
analysed arrays' bytes, and the seed of a fit derives from the study seed and those bytes, never from
the task, so a cached fit equals the fit another worker would have made: results stay independent of
which worker ran which replicate, and of the order. (Two replicates with identical data at an analysis
therefore share one posterior, as they share one likelihood.) That is the rule of a design with
`[sampler] batch = 1`; with a larger batch the response analyses of B replicates are sampled together
(`marrow.simulate.study_batched`, which dedupes identical data within each batch).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from marrow import dims
from marrow.models import effects
from marrow.models.inputs import ModelInputs
from marrow.simulate.design import Design, Scenario
from marrow.simulate.engine import Task
from marrow.simulate.scenarios import Trial, covariate_patterns, intercepts, simulate_trial

if TYPE_CHECKING:
    from marrow.priors import PriorSet

HEADLINE = ("response_rate",)  # the quantities recorded and usable in rules
QUANTILES = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)
GRID = np.round(np.arange(101) / 100, 2)  # exceedance thresholds 0.00, 0.01, ..., 1.00
OPS = (">", ">=", "<", "<=")
CACHE_SIZE = 1024  # fits kept per process (about 15 kB each)
# Variables a refit keeps (those the model has): the parameters, on which the diagnostics are
# computed, and the headline quantities. Fewer stored variables, less time spent after sampling.
# `center_effect` exists centred (the variable itself) and non-centred (a Deterministic of center_z).
STORED = ("intercept", "center_sd", "center_effect", "beta", *HEADLINE)

# (record key, quantity, op, threshold): one P(quantity op threshold) term of the design's rules
Term = tuple[str, str, str, float]


@dataclass(frozen=True)
class Study:
    """What every replicate needs (small and picklable: a Dask worker receives it once). `priors` are
    the response model's (None for the beta-binomial); `terms` the rules' P(...) terms to record."""

    design: Design
    priors: PriorSet | None
    terms: tuple[Term, ...] = ()


def quantities(design: Design) -> list[str]:
    """The quantities a design's records hold and its rules may name."""
    if design.analysis.model == "recovery":
        from marrow.simulate.recovery_analysis import recorded_names

        return recorded_names(design)
    return list(HEADLINE)


def quantile_key(p: float) -> str:
    return f"{p:g}"


def exceed_key(t: float) -> str:
    return f"{t:.2f}"


# --- the response model's cells -------------------------------------------------------------------


def _cell_label(design: Design, center: str, pattern: np.ndarray) -> str:
    if not design.analysis.spec or not design.analysis.spec.covariates:
        return center
    return center + " | " + ", ".join(f"{c}={v:g}" for c, v in zip(_model_covariates(design), pattern, strict=True))


def _model_covariates(design: Design) -> tuple[str, ...]:
    return design.analysis.spec.covariates if design.analysis.spec else ()


def _column_index(design: Design) -> list[int]:
    return [design.covariate_names.index(c) for c in _model_covariates(design)]


def cell_of_patients(design: Design, trial: Trial) -> np.ndarray:
    """Each patient's cell: center-major, then the model's covariates' 0/1 pattern as a binary number
    (the order of `marrow.models.response.inputs`, which sorts cells by center, then covariates)."""
    x = trial.x[:, _column_index(design)]
    k = x.shape[1]
    pattern = (x @ (2 ** np.arange(k - 1, -1, -1))).astype(np.int64) if k else np.zeros(len(x), dtype=np.int64)
    return trial.center * 2**k + pattern


def response_inputs(design: Design, trial: Trial | None = None, n: int | None = None) -> ModelInputs:
    """The response model's inputs on every (center, pattern) cell of the design, with the counts of the
    first `n` patients of `trial` (None: a template with no patients' outcomes, one patient per cell)."""
    from marrow.models import levels
    from marrow.models.response import CENTER_VARIABLES

    covariates = _model_covariates(design)
    patterns = covariate_patterns(design)[0][:, _column_index(design)] if covariates else np.zeros((1, 0))
    patterns = np.unique(patterns, axis=0)  # sorted 0/1 rows: the binary-number order
    n_centers, n_patterns = len(design.centers), len(patterns)
    n_cells = n_centers * n_patterns
    cell_center = np.repeat(np.arange(n_centers), n_patterns)
    cell_x = np.tile(patterns, (n_centers, 1)).reshape(n_cells, len(covariates))
    if trial is None:
        cell_n = np.ones(n_cells, dtype=np.int64)
        responders = np.zeros(n_cells, dtype=np.int64)
    else:
        cells = cell_of_patients(design, trial)[:n]
        cell_n = np.bincount(cells, minlength=n_cells).astype(np.int64)
        responders = np.bincount(cells, weights=trial.responder[:n], minlength=n_cells).astype(np.int64)
    n_center = np.bincount(cell_center, weights=cell_n, minlength=n_centers)
    # A center with no patients yet (an early interim): its center_rate averages its cells equally.
    share = np.where(n_center[cell_center] > 0, cell_n / np.maximum(n_center[cell_center], 1), 1.0 / n_patterns)
    center_weight = np.zeros((n_centers, n_cells))
    center_weight[cell_center, np.arange(n_cells)] = share
    arrays = {
        "cell_center": cell_center.astype(np.int64),
        "cell_x": cell_x.astype(np.float64),
        "cell_n": cell_n,
        "cell_weight": cell_n / cell_n.sum(),
        "center_weight": center_weight,
        "cell_responders": responders,
    }
    coords = {
        dims.CENTER: list(design.centers),
        dims.COVARIATE: list(covariates),
        dims.CELL: [_cell_label(design, design.centers[c], cell_x[j]) for j, c in enumerate(cell_center)],
        dims.PATIENT: [],
        dims.CATEGORY: ["NR", "R"],
    }
    dropped = levels.dropped_levels({dims.CENTER: list(design.centers)}, {dims.CENTER: CENTER_VARIABLES})
    # The option forces a parameterisation; "auto" decides from the planned patients per center (an upper
    # bound of the information a simulated trial has), the same for every replicate: one compile.
    planned = np.asarray(design.center_weights) * design.n_total
    information = {"center_effect": planned} if levels.kept(dims.CENTER, dropped) else {}
    option = design.analysis.spec.parameterisation if design.analysis.spec else "auto"
    return ModelInputs(arrays, coords, {}, dropped, effects.resolve(option, information))


# --- posterior functionals ------------------------------------------------------------------------


def _term_probability(draws: np.ndarray, op: str, threshold: float) -> float:
    compare = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}[op]
    return float(compare(draws, threshold).mean())


def draw_functionals(
    draws: dict[str, np.ndarray], terms: tuple[Term, ...], grid: Collection[str] | None = None
) -> dict[str, float]:
    """Mean, quantiles, exceedance grid and rule terms of each quantity's posterior draws (unprefixed);
    the grid (thresholds 0..1) only for the quantities in `grid` (None: every quantity)."""
    out: dict[str, float] = {}
    for q, d in draws.items():
        out[f"mean:{q}"] = float(d.mean())
        for p, v in zip(QUANTILES, np.quantile(d, QUANTILES), strict=True):
            out[f"quantile:{quantile_key(p)}:{q}"] = float(v)
        if grid is not None and q not in grid:
            continue
        exceed = (d[None, :] > GRID[:, None]).mean(axis=1)
        out.update({f"exceed:{exceed_key(t)}:{q}": float(e) for t, e in zip(GRID, exceed, strict=True)})
    for key, q, op, threshold in terms:
        out[f"rule:{key}"] = _term_probability(draws[q], op, threshold)
    return out


def beta_functionals(a: float, b: float, terms: tuple[Term, ...]) -> dict[str, float]:
    """The same functionals, exactly, for a Beta(a, b) posterior of `response_rate` (regularised
    incomplete beta functions: P(p > t) = 1 - I_t(a, b), quantiles by its inverse)."""
    from scipy.special import betainc, betaincc, betaincinv

    q = "response_rate"
    out = {f"mean:{q}": a / (a + b)}
    quantiles = betaincinv(a, b, np.array(QUANTILES))
    out.update({f"quantile:{quantile_key(p)}:{q}": float(v) for p, v in zip(QUANTILES, quantiles, strict=True)})
    out.update({f"exceed:{exceed_key(t)}:{q}": float(v) for t, v in zip(GRID, betaincc(a, b, GRID), strict=True)})
    for key, quantity, op, threshold in terms:
        if quantity != q:
            raise ValueError(f"the beta-binomial analysis has only {q}, not {quantity}")
        above = op in (">", ">=")
        out[f"rule:{key}"] = float(betaincc(a, b, threshold) if above else betainc(a, b, threshold))
    return out


# --- one analysis, one replicate ------------------------------------------------------------------

_FITS: OrderedDict[str, dict[str, float]] = OrderedDict()


def fit_seed(study_seed: int, digest: bytes) -> int:
    """The seed of a fit: from the study seed and the data's digest (not the task), so equal data get
    equal fits wherever and whenever they are fitted."""
    words = np.frombuffer(digest[:16], dtype=np.uint32)
    return int(np.random.SeedSequence([study_seed, *map(int, words)]).generate_state(1, dtype=np.uint32)[0])


def data_digest(inputs: ModelInputs) -> bytes:
    """SHA-256 of what a response analysis's data are: the cells' patients and responders."""
    data = hashlib.sha256()
    for name in ("cell_n", "cell_responders"):
        data.update(np.ascontiguousarray(inputs.arrays[name], dtype=np.int64).tobytes())
    return data.digest()


def analyse_response(study: Study, inputs: ModelInputs) -> dict[str, float]:
    """Refit the hierarchical response model on `inputs` (cached by their arrays) -> functionals and
    the sampler's diagnostics."""
    from marrow.simulate.refit import design_key, refitter_for

    design = study.design
    assert design.analysis.spec is not None and study.priors is not None
    template = response_inputs(design)
    var_names = stored_variables(design)
    key = design_key(design.analysis.spec, study.priors, design.settings, template, var_names=var_names)
    data = data_digest(inputs)
    # The seed comes from the data and the study seed only (not from settings such as the cores, which
    # differ between a run in process and one on workers); the cache key also names the design.
    seed = fit_seed(design.seed, data)
    cache_key = hashlib.sha256(f"{key}:{seed}:{study.terms}:{data.hex()}".encode()).hexdigest()

    def fit() -> dict[str, float]:
        assert design.analysis.spec is not None and study.priors is not None
        refitter = refitter_for(design.analysis.spec, study.priors, design.settings, template, var_names=var_names)
        refit = refitter.fit(inputs, seed=seed)
        draws = {q: refit.posterior[q].to_numpy().ravel() for q in HEADLINE}
        return {**draw_functionals(draws, study.terms), **diagnostics(refit)}

    return cached(cache_key, fit)


def diagnostics(refit: Any) -> dict[str, float]:
    """The sampler diagnostics a record keeps per analysis, from a `marrow.simulate.refit.Refit`."""
    return {
        "divergences": refit.divergences,
        "max_rhat": refit.max_rhat,
        "min_ess_bulk": refit.min_ess_bulk,
        "min_ess_tail": refit.min_ess_tail,
    }


def cached(cache_key: str, fit: Callable[[], dict[str, float]]) -> dict[str, float]:
    """The functionals of the fit under `cache_key`, computed by `fit()` once per process (the
    `CACHE_SIZE` most recent kept)."""
    found = _FITS.get(cache_key)
    if found is not None:
        _FITS.move_to_end(cache_key)
        return found
    out = _FITS[cache_key] = fit()
    if len(_FITS) > CACHE_SIZE:
        _FITS.popitem(last=False)
    return out


def stored_variables(design: Design) -> list[str]:
    """The variables a response refit of `design` keeps: those of `STORED` its model has."""
    from marrow.models import levels

    names = [n for n in STORED if n != "beta" or _model_covariates(design)]
    if not levels.kept(dims.CENTER, response_inputs(design).dropped):
        names = [n for n in names if n not in ("center_sd", "center_effect")]
    return names


def analyse_beta_binomial(study: Study, trial: Trial, n: int) -> dict[str, float]:
    """The conjugate single-arm analysis of the first `n` patients: no sampling, no diagnostics (NaN)."""
    analysis = study.design.analysis
    y = int(trial.responder[:n].sum())
    out = beta_functionals(analysis.a + y, analysis.b + n - y, study.terms)
    out.update(divergences=0, max_rhat=float("nan"), min_ess_bulk=float("nan"), min_ess_tail=float("nan"))
    return out


def batch_size(design: Design) -> int:
    """Analyses sampled together per run: the design's `[sampler] batch` for the response model, else 1."""
    return design.batch if design.analysis.model == "response" else 1


def failed_diagnostics(values: dict[str, float]) -> bool:
    """marrow's thresholds (`marrow.diagnostics.Thresholds`): divergences, R-hat, bulk and tail ESS.
    NaN (the closed-form analysis) fails nothing."""
    from marrow.diagnostics import Thresholds

    limits = Thresholds()
    return bool(
        values["divergences"] > limits.max_divergences
        or values["max_rhat"] > limits.max_rhat
        or values["min_ess_bulk"] < limits.min_ess
        or values["min_ess_tail"] < limits.min_ess
    )


def run_replicate(study: Study, task: Task) -> dict[str, Any]:
    """One replicate: simulate the trial of `task.scenario`, analyse it at every analysis, one flat record."""
    design = study.design
    scenario = design.scenarios[task.scenario_index]
    if scenario.name != task.scenario:
        raise ValueError(f"task scenario {task.scenario!r} is not the design's scenario {task.scenario_index}")
    if design.analysis.model == "recovery":
        from marrow.simulate.recovery_analysis import run_recovery_replicate

        return run_recovery_replicate(study, task)
    if batch_size(design) > 1:
        from marrow.simulate.study_batched import batched_record

        return batched_record(study, task)
    trial = simulate_replicate(study, task.scenario_index, task.seed)
    if design.analysis.sampled:
        analyses = [analyse_response(study, response_inputs(design, trial, n)) for n in design.analysis_sizes]
    else:
        analyses = [analyse_beta_binomial(study, trial, n) for n in design.analysis_sizes]
    return replicate_record(design, trial, analyses)


def simulate_replicate(study: Study, scenario_index: int, seed: int) -> Trial:
    """The trial a replicate of scenario `scenario_index` with this seed simulates."""
    design = study.design
    scenario = design.scenarios[scenario_index]
    assert isinstance(scenario, Scenario)
    rng = np.random.default_rng(seed)
    return simulate_trial(design, scenario, rng, _intercepts(study, scenario_index))


def replicate_record(design: Design, trial: Trial, analyses: list[dict[str, float]]) -> dict[str, Any]:
    """A replicate's flat record from its analyses' values (one dict per analysis of the design)."""
    record: dict[str, Any] = {}
    failed = False
    for k, (n, values) in enumerate(zip(design.analysis_sizes, analyses, strict=True), start=1):
        failed = failed or failed_diagnostics(values)
        record[f"a{k}:n"] = n
        record.update({f"a{k}:{name}": value for name, value in values.items()})
    record["true:response_rate"] = trial.true_response_rate
    record["diagnostics_failed"] = failed
    return record


_INTERCEPTS: dict[tuple, np.ndarray] = {}


def _intercepts(study: Study, index: int) -> np.ndarray:
    """The scenario's truth intercepts, solved once per process."""
    design = study.design
    scenario = design.scenarios[index]
    assert isinstance(scenario, Scenario)
    key = (design.centers, design.center_values, design.covariates, scenario)
    if key not in _INTERCEPTS:
        _INTERCEPTS[key] = intercepts(design, scenario)
    return _INTERCEPTS[key]
