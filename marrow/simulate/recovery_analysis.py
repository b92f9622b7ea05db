"""Analyse simulated recovery trials with the recovery model: fixed-shape inputs, refits, one record.

The design's template is a `TrialData` of patient slots (every (center, covariate pattern) group
present, one slot per patient of the trial or more) whose recovery rows are built by the recovery
model's own `inputs`; the rows then go through `marrow.simulate.generators.recovery_inputs` (one cell
per (patient, lineage) row), as the SBC generator does. A replicate's analysis keeps those shapes:
slot i holds the trial's i-th patient, its rows point at the patient's pattern and (center, pattern)
group, and the patients not enrolled by the analysis (or with no follow-up yet) weigh 0, so one
compile serves every analysis of every replicate. The covariates are centred at the analysed
patients' mean and the population weights are theirs, as `marrow fit recovery` would have them.

Recorded quantities (flat names, for rules): `median_days_{lineage}`, `cure_fraction_{lineage}` (cure
model) and `recovered_by_{day}_{lineage}` at the model's report days; true values for the first two.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from marrow.data import TrialData
from marrow.models import module_for
from marrow.models.inputs import ModelInputs
from marrow.simulate.design import Design, RecoveryScenario
from marrow.simulate.generators import recovery_inputs
from marrow.simulate.recovery_trials import (
    RecoveryTrial,
    analysis_time,
    cure_intercepts,
    observe,
    simulate_recovery_trial,
    true_values,
)
from marrow.simulate.study import cached, diagnostics, draw_functionals, failed_diagnostics, fit_seed

if TYPE_CHECKING:
    from marrow.simulate.engine import Task
    from marrow.simulate.study import Study

# Parameters of the recovery model a refit keeps (those it has; every name exists centred and
# non-centred): the diagnostics are computed on them, and `recovered_by` is computed from them.
STORED = (
    "log_median_mu",
    "log_median_sd",
    "log_median",
    "log_shape_mu",
    "log_shape_sd",
    "shape",
    "cure_intercept_mu",
    "cure_intercept_sd",
    "cure_intercept",
    "cure_center_sd",
    "cure_center_effect",
    "time_beta",
    "cure_beta",
    "median_days",
    "cure_fraction",
)


def _lineages(design: Design) -> tuple[str, ...]:
    assert design.timing is not None
    return design.timing.lineages


def _covariates(design: Design) -> tuple[str, ...]:
    return design.analysis.spec.covariates if design.analysis.spec else ()


def report_days(design: Design) -> list[Any]:
    from marrow.models.recovery import report_days as days

    assert design.analysis.spec is not None
    return days(design.analysis.spec)


def recorded_names(design: Design) -> list[str]:
    """The quantities the records hold, by lineage: median_days, cure_fraction (cure model), recovered_by."""
    assert design.analysis.spec is not None
    bases = ["median_days"] + (["cure_fraction"] if design.analysis.spec.cure else [])
    bases += [f"recovered_by_{day:g}" for day in report_days(design)]
    return [f"{base}_{lineage}" for base in bases for lineage in _lineages(design)]


def headline_names(design: Design) -> list[str]:
    """The quantities with a true value (bias, RMSE, coverage): cure fractions (cure model), then medians."""
    assert design.analysis.spec is not None
    bases = (["cure_fraction"] if design.analysis.spec.cure else []) + ["median_days"]
    return [f"{base}_{lineage}" for base in bases for lineage in _lineages(design)]


# --- the template: patient slots of fixed shapes ---------------------------------------------------


def _patterns(design: Design) -> np.ndarray:
    k = len(_covariates(design))
    return np.array(list(itertools.product((0.0, 1.0), repeat=k)), dtype=np.float64).reshape(2**k, k)


def template_data(design: Design) -> TrialData:
    """Patient slots: max(trial size, groups) patients cycling through every (center, pattern) group,
    each with a censored row per lineage at the follow-up (the outcomes are swapped in per analysis)."""
    assert design.timing is not None
    covariates, patterns = _covariates(design), _patterns(design)
    n_groups = len(design.centers) * len(patterns)
    n = max(design.n_total, n_groups)
    group = np.arange(n) % n_groups
    patients = pd.DataFrame(
        {
            "patient_id": [f"S{i:05d}" for i in range(n)],
            "center": [design.centers[g // len(patterns)] for g in group],
            **{c: patterns[group % len(patterns), j] for j, c in enumerate(covariates)},
        }
    )
    lineages = _lineages(design)
    recovery = pd.DataFrame(
        {
            "patient_id": np.repeat(patients["patient_id"].to_numpy(), len(lineages)),
            "lineage": np.tile(lineages, n),
            "day": design.timing.follow_up_days,
            "recovered": 0,
        }
    )
    recovery["day_lower"] = recovery["day_upper"] = recovery["day"]
    return TrialData(patients, recovery, covariates, sources=())


_TEMPLATES: dict[tuple, ModelInputs] = {}


def template(design: Design) -> ModelInputs:
    """The model's inputs on the template (per-row cells, every row censored at the follow-up), cached."""
    key = (design.centers, design.n_total, design.covariates, design.analysis, design.timing)
    if key not in _TEMPLATES:
        spec = design.analysis.spec
        assert spec is not None and design.timing is not None
        inputs = module_for("recovery").inputs(template_data(design), spec)
        e = inputs.extra
        extra = {**e, "row_censor_day": np.full(len(e["row_day"]), design.timing.follow_up_days)}
        _TEMPLATES[key] = recovery_inputs(replace(inputs, extra=extra), np.log(e["row_day"]), e["row_recovered"], spec)
    return _TEMPLATES[key]


def analysis_inputs(design: Design, trial: RecoveryTrial, n: int) -> ModelInputs:
    """The model's inputs at the analysis of the first `n` patients of `trial` (template shapes)."""
    assert design.timing is not None and design.analysis.spec is not None
    base = template(design)
    a, e = base.arrays, base.extra
    lineages = _lineages(design)
    n_lineages, n_slots = len(lineages), len(e["row_day"]) // len(lineages)
    covariates = _covariates(design)
    x = trial.x[:, [design.covariate_names.index(c) for c in covariates]]
    # Index of each patient's pattern and (center, pattern) group in the template's arrays.
    raw = np.round(a["pattern_x"] + e["x_mean"])  # the template's 0/1 patterns
    pattern_of = {tuple(row): j for j, row in enumerate(raw)}
    pattern = np.array([pattern_of[tuple(row)] for row in x], dtype=np.int64)
    seen = observe(trial, n, design.timing.follow_up_days, analysis_time(design, trial, n))
    lineage = np.arange(n_lineages)
    total = len(trial.entry)
    analysed = np.arange(total) < n  # the population of the analysis: the enrolled patients
    rows = {"row_loc": e["row_loc"].copy()}
    rows["row_loc"][: total * n_lineages] = (pattern[:, None] * n_lineages + lineage).ravel()
    arrays = {**a, "pattern_weight": np.bincount(pattern[analysed], minlength=len(raw)) / n}
    if design.analysis.spec.cure:  # (center, pattern) groups of the cure part
        template_center = {c: i for i, c in enumerate(sorted(design.centers))}
        center = np.array([template_center[design.centers[c]] for c in trial.center], dtype=np.int64)
        groups = zip(a["group_center"], a["group_pattern"], strict=True)
        group_of = {(int(c), int(p)): g for g, (c, p) in enumerate(groups)}
        group = np.array([group_of[(int(c), int(p))] for c, p in zip(center, pattern, strict=True)], dtype=np.int64)
        rows["row_cure"] = e["row_cure"].copy()
        rows["row_cure"][: total * n_lineages] = (group[:, None] * n_lineages + lineage).ravel()
        arrays["group_weight"] = np.bincount(group[analysed], minlength=len(a["group_center"])) / n
    weight = np.zeros(n_slots)
    weight[:total] = seen.weight
    day = np.full((n_slots, n_lineages), design.timing.follow_up_days)
    day[:total] = seen.day
    recovered = np.zeros((n_slots, n_lineages), dtype=np.int64)
    recovered[:total] = seen.recovered

    x_mean = x[analysed].mean(axis=0) if covariates else np.zeros(0)
    arrays["pattern_x"] = raw - x_mean
    shaped = replace(base, arrays=arrays, extra={**e, **rows, "x_mean": x_mean})
    return recovery_inputs(
        shaped, np.log(day).ravel(), recovered.ravel(), design.analysis.spec, weight=np.repeat(weight, n_lineages)
    )


# --- refits ----------------------------------------------------------------------------------------


def stored(design: Design) -> list[str]:
    """The variables of STORED that the design's model has."""
    assert design.analysis.spec is not None
    spec, lineages = design.analysis.spec, _lineages(design)
    absent = set()
    if not spec.cure:
        absent |= {n for n in STORED if n.startswith("cure_")}
    if not spec.cure or len(design.centers) < 2:
        absent |= {"cure_center_sd", "cure_center_effect"}
    if len(lineages) < 2:
        absent |= {n for n in STORED if n.endswith("_sd") and not n.startswith("cure_center")}
    if not spec.covariates:
        absent |= {"time_beta", "cure_beta"}
    return [n for n in STORED if n not in absent]


def analyse_recovery(study: Study, inputs: ModelInputs) -> dict[str, float]:
    """Refit the recovery model on `inputs` (cached by their arrays) -> functionals and diagnostics."""
    from marrow.models.recovery import recovered_by
    from marrow.simulate.refit import design_key, refitter_for

    design = study.design
    spec, priors = design.analysis.spec, study.priors
    assert spec is not None and priors is not None
    base, var_names = template(design), stored(design)
    key = design_key(spec, priors, design.settings, base, var_names=var_names)
    data = hashlib.sha256()
    for name in sorted(inputs.arrays):
        data.update(np.ascontiguousarray(inputs.arrays[name]).tobytes())
    seed = fit_seed(design.seed, data.digest())
    cache_key = hashlib.sha256(f"{key}:{seed}:{study.terms}:{data.hexdigest()}".encode()).hexdigest()
    lineages, days = _lineages(design), report_days(design)

    def fit() -> dict[str, float]:
        refit = refitter_for(spec, priors, design.settings, base, var_names=var_names).fit(inputs, seed=seed)
        post = refit.posterior
        draws: dict[str, np.ndarray] = {}
        for base_name in ("median_days", "cure_fraction"):
            if base_name in post:
                values = post[base_name].to_numpy().reshape(-1, len(lineages))
                draws.update({f"{base_name}_{x}": values[:, j] for j, x in enumerate(lineages)})
        with np.errstate(over="ignore", divide="ignore", under="ignore"):
            by = recovered_by(post, inputs, spec).to_numpy().reshape(-1, len(lineages), len(days))
        for d, day in enumerate(days):
            draws.update({f"recovered_by_{day:g}_{x}": by[:, j, d] for j, x in enumerate(lineages)})
        probabilities = [q for q in draws if not q.startswith("median_days_")]
        return {**draw_functionals(draws, study.terms, grid=probabilities), **diagnostics(refit)}

    return cached(cache_key, fit)


_INTERCEPTS: dict[tuple, np.ndarray] = {}


def run_recovery_replicate(study: Study, task: Task) -> dict[str, Any]:
    """One replicate of a recovery design: simulate, analyse at every analysis, one flat record."""
    design = study.design
    scenario = design.scenarios[task.scenario_index]
    assert isinstance(scenario, RecoveryScenario)
    key = (design.covariates, design.timing, scenario)
    if key not in _INTERCEPTS:
        _INTERCEPTS[key] = cure_intercepts(design, scenario)
    trial = simulate_recovery_trial(design, scenario, np.random.default_rng(task.seed), _INTERCEPTS[key])
    record: dict[str, Any] = {}
    failed = False
    for k, n in enumerate(design.analysis_sizes, start=1):
        values = analyse_recovery(study, analysis_inputs(design, trial, n))
        failed = failed or failed_diagnostics(values)
        record[f"a{k}:n"] = n
        record.update({f"a{k}:{name}": value for name, value in values.items()})
    truth = true_values(design, scenario, trial)
    record.update({f"true:{q}": truth[q] for q in headline_names(design)})
    record["diagnostics_failed"] = failed
    return record
