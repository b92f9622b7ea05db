"""Lineage-specific time to recovery: mixture cure model (default) or plain censored AFT model.

Rows are (patient i, lineage l) pairs of the long recovery table. Covariates are centred at their
mean over the patients table (xc_i = x_i - mean x), so lineage intercepts refer to the trial-average
patient and sample without correlation with the covariate effects.

Cure part (spec.cure):    pi_il = P(ever recovers) = logistic(a_l + u_c(i) + xc_i' gamma),
                          a_l = cure_intercept_mu + cure_intercept_sd * z_l,  u_c = cure_center_sd * z_c.
Latency (those who recover), accelerated failure time with location mu_il = log median:
                          mu_il = m_l + xc_i' beta (+ f_i with spec.frailty),
                          m_l = log_median_mu + log_median_sd * z_l,
                          shape k_l = exp(log_shape_mu + log_shape_sd * z_l),  u = k_l (log t - mu_il).
  weibull:     log S = -ln2 * exp(u)              (median exactly exp(mu))
  loglogistic: log S = -softplus(u)
  lognormal:   log S = log Phi(-u)                (sigma of log T = 1 / k_l)
Likelihood per row: recovered: log pi + log f(t); censored: logaddexp(log(1 - pi), log pi + log S(t));
recovered within a visit interval (L, R] (day_lower < day_upper): log pi + log(S(L) - S(R)), by the
stable log-diff-exp of `marrow.models.latency`. Without cure: log f(t), log S(t), log(S(L) - S(R)).
The frailty f_i = frailty_sd * z_i is a patient effect on the latency log-scale shared by the
patient's lineages (positive = slower recovery).
Group effects are written non-centred above; each level (lineage log median, log shape and cure
intercept, cure center effect, frailty) is sampled centred instead, `name ~ Normal(name_mu, name_sd)`
with no `name_z`, where `inputs` resolves it so from the data (`level_information`,
`marrow.models.effects.centred`) or `spec.parameterisation` forces it.

With spec.competing_death, death (patients' died/followup_days) has its own cause-specific Weibull
hazard (location death_log_median + xc_i' death_beta, shape death_shape; the survival priors), and
each lineage's recovery is censored at death; `augment` adds the cumulative incidence of recovery
and of death before recovery per lineage (integrated numerically: `competing_incidence`).

With a single center the cure model has no center effect; with a single lineage the lineage
parameters are not pooled (no lineage sd) and no lineage comparison is reported (`dropped_levels`).

The graph sums the likelihood over cells of identical rows with integer weights and averages
population quantities over distinct (center, covariate) groups weighted by patient counts, so its
cost follows the number of distinct values, not of patients (exact; see `inputs`). The Weibull without
cure or frailty sums its censored log S over a dense (pattern, lineage, day) grid when the cells fill
it (`_censored_grid`): one exp per day and per pattern, not per cell (`latency.weighted_log_survival_grid`).
Summed softplus terms use `latency.sum_softplus` (one exp and one log). Pointwise
log-likelihood per row is recomputed from the posterior draws in numpy (`augment`) when rows x draws
fit within `marrow.models.idata.MAX_POINTWISE_VALUES`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from marrow import dims, time_units
from marrow.data import TrialData
from marrow.models import effects, latency
from marrow.models import idata as idata_helpers
from marrow.models.cells import cells
from marrow.models.descriptors.recovery import DESCRIPTOR
from marrow.models.idata import CHAIN_DRAW, Augmented, chain_draw_coords, flat_draws
from marrow.models.inputs import ModelInputs, Quantity
from marrow.spec import ModelSpec

if TYPE_CHECKING:
    import pymc as pm

DEFAULT_TARGET_ACCEPT = DESCRIPTOR.target_accept
DEFAULT_FAMILY = str(DESCRIPTOR.default_family)  # the descriptor's `family` option
DEFAULT_SAMPLER = DESCRIPTOR.sampler
REPORT_DAYS = time_units.RECOVERY_HORIZON_DAYS  # in days; report_days converts them to the fit's unit
GRID_DAY = dims.GRID_DAY
GRID_POINTS = 60
DEATH_FAMILY = "weibull"  # the cause-specific hazard of death with --competing-death
CIF_STEPS = 400  # steps of the numerical integration of the cumulative incidences


def family_of(spec: ModelSpec) -> str:
    return spec.resolved_family or DEFAULT_FAMILY  # never None: the model has a default family


def report_days(spec: ModelSpec) -> list:
    """Times of P(recovered by t), in the fit's unit: `spec.horizons`, or day 30, 90 and 180 converted to
    the unit when none are given; ints when all are whole (labels read "day 30")."""
    return time_units.horizons(spec.horizons, time_units.recovery_horizons(spec.time_unit))


# --- which hierarchy levels the data can estimate ---------------------------------------------------


def estimable_levels(n_centers: int, n_lineages: int, spec: ModelSpec) -> dict[str, bool]:
    """Hierarchy levels the data can estimate: a center effect needs two centers (cure model only),
    lineage pooling (and any comparison across lineages) two lineages."""
    return {"center_effect": bool(spec.cure) and n_centers > 1, "lineage_pooling": n_lineages > 1}


def dropped_levels(n_centers: int, n_lineages: int, spec: ModelSpec) -> list[str]:
    """One sentence per hierarchy level left out because the data cannot estimate it."""
    levels = estimable_levels(n_centers, n_lineages, spec)
    notes = []
    if spec.cure and not levels["center_effect"]:
        notes.append("one center: the cure model has no center effect (cure_center_sd not estimated)")
    if not levels["lineage_pooling"]:
        notes.append(
            "one lineage: lineage parameters are not pooled (no lineage sd) and no comparison "
            "across lineages is reported"
        )
    return notes


# --- inputs -----------------------------------------------------------------------------------------


def _cells(rows: np.ndarray, unit: np.ndarray, *days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each distinct (unit, day[, day ...]) among `rows`: a representative row and its number of rows;
    and the cell of each of `rows`."""
    c = cells(np.column_stack([unit[rows], *(day[rows] for day in days)]))
    return rows[c.first], c.count.astype(np.float64), c.of_row


def day_bounds(recovery: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) day of every row. An interval-censored row (recovered between two visits) has
    lower < upper (lower may be 0); every other row lower == upper == day. A table without
    `day_lower`/`day_upper` columns is all exact."""
    day = recovery["day"].to_numpy(dtype=np.float64)
    lower = recovery["day_lower"].to_numpy(dtype=np.float64) if "day_lower" in recovery.columns else day
    upper = recovery["day_upper"].to_numpy(dtype=np.float64) if "day_upper" in recovery.columns else day
    return lower, upper


def interval_rows(recovery: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the interval-censored rows (recovered, day_lower < day_upper)."""
    lower, upper = day_bounds(recovery)
    return (recovery["recovered"].to_numpy() == 1) & (lower < upper)


def _interval_cells(rows: np.ndarray, unit: np.ndarray, lower: np.ndarray, row: dict, spec: ModelSpec) -> dict:
    """Interval cells: distinct (unit, lower, upper) among interval rows `rows`, with weights, the log
    upper day (`interval_log_day`), the log lower day and whether it is > 0 (`interval_has_lower`;
    a lower day of 0 gets a finite placeholder, unused, so gradients stay finite)."""
    cell_rows, weight, _ = _cells(rows, unit, lower, row["row_log_day"])
    out = _latency_cells("interval", cell_rows, row, spec)
    out["interval_weight"] = weight
    out["interval_has_lower"] = row["row_has_lower"][cell_rows]
    out["interval_log_lower"] = row["row_log_lower"][cell_rows]
    return out


def _latency_cells(prefix: str, rows: np.ndarray, row: dict, spec: ModelSpec) -> dict:
    """Latency location index, lineage, log day (and patient, with frailty) of cells `rows`, as `prefix_*`."""
    out = {f"{prefix}_{name}": row[f"row_{name}"][rows] for name in ("loc", "lineage", "log_day")}
    if spec.frailty:
        out[f"{prefix}_patient"] = row["row_patient"][rows]
    return out


# Fill of the dense (pattern, lineage, day) grid from which a Weibull model without cure or frailty sums
# log S over it (`_censored_grid`): a grid point costs a product, a cell an exp plus its gathers and
# scatter-adds. Other families and the cure model keep cells: their grid point costs an exp and a log
# like a cell, and measured no faster at a fill of 0.9.
DENSE_FROM = 0.5


def _censored_grid(
    cell_rows: np.ndarray, weight: np.ndarray, row: dict, n_patterns: int, n_lineages: int
) -> dict | None:
    """The censored latency cells `cell_rows` (weights `weight`; no frailty) on a dense (pattern, lineage,
    day) grid, each lineage with its own days, padded with its last day at weight 0:
    `censored_grid_log_day` (lineage, day) and `censored_grid_weight` (pattern, lineage, day). None when
    the cells fill less than `DENSE_FROM` of the grid (the bundled trial: a quarter; a 20,000-patient
    registry: 0.9)."""
    lineage, log_day = row["row_lineage"][cell_rows], row["row_log_day"][cell_rows]
    days = [np.unique(log_day[lineage == j]) for j in range(n_lineages)]
    width = max(len(d) for d in days)
    if width == 0 or len(cell_rows) < DENSE_FROM * n_patterns * n_lineages * width:
        return None
    grid = np.array([np.pad(d, (0, width - len(d)), mode="edge") if len(d) else np.zeros(width) for d in days])
    position = np.zeros(len(cell_rows), dtype=np.int64)
    for j, d in enumerate(days):
        position[lineage == j] = np.searchsorted(d, log_day[lineage == j])
    grid_weight = np.zeros(n_patterns * n_lineages * width)
    grid_weight[row["row_loc"][cell_rows] * width + position] = weight  # row_loc = pattern * n_lineages + lineage
    return {"censored_grid_log_day": grid, "censored_grid_weight": grid_weight.reshape(n_patterns, n_lineages, width)}


def inputs(data: TrialData, spec: ModelSpec) -> ModelInputs:
    """Likelihood cells, covariate patterns and (cure) center-pattern groups; per-row arrays in `extra`.

    Patients with the same covariate row share a *pattern* (one latency location per lineage); with
    cure, patients with the same (center, pattern) share a *group* (one cure probability per lineage).
    Rows with identical likelihood terms form a *cell*, weighted by its number of rows: events by
    (pattern, lineage, day), censored rows by (pattern, lineage, day) for log S and, with cure, by
    (group, lineage, day) for the censored term; with frailty by (patient, lineage, day), one row
    each. The cure model's log pi and log(1 - pi) terms are counted per (group, lineage).
    Population quantities are pattern or group averages weighted by patient shares (exactly the
    average over patients).
    """
    rec = data.recovery
    assert rec is not None  # the recovery model's needs() ask for the table
    lineages = list(data.lineages)
    n_lineages = len(lineages)
    patient_ids = list(data.patient_ids)
    n_patients = len(patient_ids)
    patient_lookup = {p: i for i, p in enumerate(patient_ids)}
    lineage_lookup = {name: i for i, name in enumerate(lineages)}
    row_patient = rec["patient_id"].map(patient_lookup).to_numpy(dtype=np.int64)
    row_lineage = rec["lineage"].map(lineage_lookup).to_numpy(dtype=np.int64)
    lower, day = day_bounds(rec)
    recovered = rec["recovered"].to_numpy(dtype=np.int64)
    interval = interval_rows(rec)
    has_lower = interval & (lower > 0)

    x = data.covariate_matrix()
    x_mean = x.mean(axis=0) if x.shape[1] else np.zeros(0)
    patterns = cells(x)
    first, patient_pattern, pattern_n = patterns.first, patterns.of_row, patterns.count
    row = {
        "row_loc": patient_pattern[row_patient] * n_lineages + row_lineage,
        "row_lineage": row_lineage,
        "row_patient": row_patient,
        "row_log_day": np.log(day),
        "row_recovered": recovered,
        "row_interval": interval,
        "row_has_lower": has_lower.astype(np.float64),
        # log lower day of interval rows; a finite placeholder (log day - 1) where there is none
        "row_log_lower": np.log(np.where(has_lower, lower, day / math.e)),
    }
    arrays = {"pattern_x": x[first] - x_mean, "pattern_weight": pattern_n / n_patients}
    # With frailty every (patient, lineage) has its own latency location.
    unit = row_patient * n_lineages + row_lineage if spec.frailty else row["row_loc"]
    events, censored = np.flatnonzero((recovered == 1) & ~interval), np.flatnonzero(recovered == 0)
    cell_rows, arrays["event_weight"], _ = _cells(events, unit, day)
    arrays.update(_latency_cells("event", cell_rows, row, spec))
    if interval.any():  # only then: a trial without intervals keeps exactly the graph it had
        arrays.update(_interval_cells(np.flatnonzero(interval), unit, lower, row, spec))
    cell_rows, censored_weight, censored_cell = _cells(censored, unit, day)
    dense = None
    if family_of(spec) == "weibull" and not spec.cure and not spec.frailty:
        dense = _censored_grid(cell_rows, censored_weight, row, len(pattern_n), n_lineages)
    if dense is not None:
        arrays.update(dense)
    else:
        arrays.update(_latency_cells("censored", cell_rows, row, spec))
        if not spec.cure:
            arrays["censored_weight"] = censored_weight
    if spec.cure:
        groups = cells(np.column_stack([data.center_index, patient_pattern]))
        g_first, patient_group, group_n = groups.first, groups.of_row, groups.count
        row["row_cure"] = patient_group[row_patient] * n_lineages + row_lineage
        n_cure = len(group_n) * n_lineages
        cure_cells, cure_weight, _ = _cells(censored, unit if spec.frailty else row["row_cure"], day)
        cell_of_row = np.zeros(len(day), dtype=np.int64)
        cell_of_row[censored] = censored_cell
        arrays.update(
            {
                "group_center": data.center_index[g_first],
                "group_pattern": patient_pattern[g_first],
                "group_weight": group_n / n_patients,
                "group_events": np.bincount(row["row_cure"], recovered, n_cure).reshape(-1, n_lineages),
                "group_censored": np.bincount(row["row_cure"], 1 - recovered, n_cure).reshape(-1, n_lineages),
                "cure_censored": cell_of_row[cure_cells],
                "cure_group": row["row_cure"][cure_cells],
                "cure_weight": cure_weight,
            }
        )

    # Grid for plotted cumulative incidence: to twice the last recovery day (where the curves have
    # levelled off), never past the last observed day.
    last_event = float(day[recovered == 1].max()) if recovered.any() else float(day.max())
    grid_end = min(float(day.max()), 2.0 * last_event)
    grid = np.linspace(0.0, grid_end, GRID_POINTS)
    arrays["grid_log_day"] = np.log(np.maximum(grid, 1e-6))

    # Censoring time for posterior predictive draws: the patient's follow-up when the patients table
    # has it, otherwise the patient's latest censored day, otherwise the last day seen in the trial.
    censor_day = np.full(n_patients, float(day.max()))
    censored_max = pd.Series(day[recovered == 0]).groupby(row_patient[recovered == 0]).max()
    censor_day[censored_max.index.to_numpy(dtype=np.int64)] = censored_max.to_numpy()
    if "followup_days" in data.patients.columns:
        follow = data.patients["followup_days"].to_numpy(dtype=np.float64)
        censor_day = np.where(np.isfinite(follow), follow, censor_day)
    row_censor = np.maximum(censor_day[row_patient], day)
    if spec.competing_death:
        arrays.update(_death_cells(data, patient_pattern))

    coords = {
        dims.LINEAGE: lineages,
        dims.COVARIATE: list(data.covariates),
        dims.CENTER: list(data.centers),
        dims.PATIENT: patient_ids,
        dims.ROW: [f"{p} {name}" for p, name in zip(rec["patient_id"], rec["lineage"], strict=True)],
        dims.DAY: report_days(spec),
        GRID_DAY: [float(g) for g in grid],
    }
    extra = {"x_mean": x_mean, "row_day": day, **row, **_replicate_cells(row, unit, row_censor, n_lineages)}
    information = level_information(data, spec, row_patient, row_lineage, recovered)
    return ModelInputs(arrays, coords, extra, parameterisation=effects.resolve(spec.parameterisation, information))


def level_information(
    data: TrialData, spec: ModelSpec, row_patient: np.ndarray, row_lineage: np.ndarray, recovered: np.ndarray
) -> dict[str, np.ndarray]:
    """Informative observations per group of every hierarchy level the model has (for
    `marrow.models.effects.centred`): recoveries per lineage for the lineage log median and log shape;
    the fewer of recovered and not recovered rows per lineage for the cure intercept and per center
    for the cure center effect; recoveries per patient for the frailty."""
    n_lineages, n_centers = len(data.lineages), len(data.centers)
    levels = estimable_levels(n_centers, n_lineages, spec)
    events = np.bincount(row_lineage, recovered, n_lineages)
    out = {}
    if levels["lineage_pooling"]:
        out["log_median"] = out["log_shape"] = events
        if spec.cure:
            out["cure_intercept"] = np.minimum(events, np.bincount(row_lineage, 1 - recovered, n_lineages))
    if levels["center_effect"]:
        row_center = np.asarray(data.center_index)[row_patient]
        out["cure_center_effect"] = np.minimum(
            np.bincount(row_center, recovered, n_centers), np.bincount(row_center, 1 - recovered, n_centers)
        )
    if spec.frailty:
        out["frailty"] = np.bincount(row_patient, recovered, len(data.patient_ids))
    return out


def _death_cells(data: TrialData, patient_pattern: np.ndarray) -> dict:
    """Death cells for the cause-specific death hazard: distinct (covariate pattern, died, followup
    day) among patients, with their number of patients."""
    follow = data.patients["followup_days"].to_numpy(dtype=np.float64)
    died = data.patients["died"].to_numpy(dtype=np.int64)
    c = cells(np.column_stack([patient_pattern, died, follow]))
    return {
        "death_pattern": patient_pattern[c.first],
        "death_event": died[c.first],
        "death_log_day": np.log(follow[c.first]),
        "death_weight": c.count.astype(np.float64),
    }


def _replicate_cells(row: dict, unit: np.ndarray, censor_day: np.ndarray, n_lineages: int) -> dict:
    """Posterior predictive arrays: rows in lineage order (`replicate_bounds` delimit the lineages)
    share the latency CDF at the censoring day within a distinct (unit, censoring day) cell
    (`replicate_of_row`); `replicate_row_cure` is each row's (group, lineage) with cure."""
    order = np.argsort(row["row_lineage"], kind="stable")
    rep_rows, _, cell_of_row = _cells(order, unit, censor_day)
    out = {f"replicate_{name}": row[f"row_{name}"][rep_rows] for name in ("loc", "lineage", "patient")}
    out["replicate_log_day"] = np.log(censor_day[rep_rows])
    out["replicate_of_row"] = cell_of_row
    out["replicate_bounds"] = np.searchsorted(row["row_lineage"][order], np.arange(n_lineages + 1))
    if "row_cure" in row:
        out["replicate_row_cure"] = row["row_cure"][order]
    return out


# --- the PyMC graph ------------------------------------------------------------------------------


def _hierarchical(p, name: str, pooled: bool = True, centred: bool = False):
    """Lineage parameter `name` ~ Normal(name_mu, name_sd), stored with dims lineage: centred, or
    name_mu + name_sd * name_z (non-centred); without pooling (one lineage) it is name_mu itself (no sd, no z).
    Centred with a Normal prior on name_mu, name_mu is sampled from its conditional posterior
    (`effects.centred_with_mean`)."""
    import pymc as pm

    if pooled and centred and p[f"{name}_mu"].dist == "Normal":
        sd = p[f"{name}_sd"].create(f"{name}_sd")
        n_lineages = len(pm.modelcontext(None).coords[dims.LINEAGE])
        return effects.centred_with_mean(name, p[f"{name}_mu"], sd, dims.LINEAGE, n_lineages)
    mu = p[f"{name}_mu"].create(f"{name}_mu")
    if not pooled:
        return pm.Deterministic(name, mu[None], dims=dims.LINEAGE)
    sd = p[f"{name}_sd"].create(f"{name}_sd")
    return effects.group_effect(name, sd, dims.LINEAGE, loc=mu, centred=centred)


def _effects(p, key: str, name: str, spec: ModelSpec, pattern_x):
    """Covariate effects (shared, or per lineage) and their contribution as a (pattern, lineage) matrix."""
    import pytensor.tensor as pt

    if spec.per_lineage_effects:
        beta = p[key].create(name, dims=(dims.LINEAGE, dims.COVARIATE))
        return beta, pt.dot(pattern_x, beta.T)
    beta = p[key].create(name, dims=dims.COVARIATE)
    return beta, pt.dot(pattern_x, beta)[:, None]


def _effect_dims(spec: ModelSpec) -> tuple[str, ...]:
    return (dims.LINEAGE, dims.COVARIATE) if spec.per_lineage_effects else (dims.COVARIATE,)


def _cell_params(d: dict, prefix: str, loc, shape, frailty):
    """(location, shape) at the latency cells `prefix` ('event', 'censored' or 'interval')."""
    mu = loc.flatten()[d[f"{prefix}_loc"]]
    if frailty is not None:
        mu = mu + frailty[d[f"{prefix}_patient"]]
    return mu, shape[d[f"{prefix}_lineage"]]


def _cell_latency(family: str, d: dict, prefix: str, loc, shape, frailty):
    """(log f, log S) at the latency cells `prefix` ('event' or 'censored')."""
    mu, k = _cell_params(d, prefix, loc, shape, frailty)
    return latency.log_density(family, d[f"{prefix}_log_day"], mu, k, latency.pytensor_ops(sums=True))


def _censored_loglik(family: str, d: dict, loc, shape, frailty):
    """Weighted sum of log S over the censored latency cells (no cure), or over their dense grid when
    `inputs` laid them out on one (`_censored_grid`)."""
    if "censored_grid_weight" in d:
        return latency.weighted_log_survival_grid(
            family, d["censored_grid_weight"], d["censored_grid_log_day"], loc, shape, latency.pytensor_ops(sums=True)
        )
    return (d["censored_weight"] * _cell_latency(family, d, "censored", loc, shape, frailty)[1]).sum()


def _interval_loglik(family: str, d: dict, loc, shape, frailty):
    """Weighted sum of log(S(L) - S(R)) over the interval cells (log-diff-exp of log S)."""
    mu, k = _cell_params(d, "interval", loc, shape, frailty)
    log_p = latency.log_interval(
        family, d["interval_log_lower"], d["interval_log_day"], d["interval_has_lower"], mu, k, latency.pytensor_ops()
    )
    return (d["interval_weight"] * log_p).sum()


def _death_model(priors, d: dict, has_x: bool):
    """Cause-specific Weibull hazard of death (priors of the survival model), its likelihood as a
    Potential; returns nothing (augment reads its parameters from the posterior)."""
    import pymc as pm
    import pytensor.tensor as pt

    p = priors.for_model("survival")
    log_median = p["log_median"].create("death_log_median")
    shape = pm.Deterministic("death_shape", pt.exp(p["log_shape"].create("death_log_shape")))
    loc = log_median + pt.zeros((d["pattern_x"].shape[0],))
    if has_x:
        beta = p["beta"].create("death_beta", dims=dims.COVARIATE)
        pm.Deterministic("death_time_ratio", pt.exp(beta), dims=dims.COVARIATE)
        loc = loc + pt.dot(d["pattern_x"], beta)
    pm.Deterministic("death_median_days", pt.exp(log_median))
    log_f, log_s = latency.log_density(
        DEATH_FAMILY, d["death_log_day"], loc[d["death_pattern"]], shape, latency.pytensor_ops()
    )
    pm.Potential("death_loglik", (d["death_weight"] * pt.switch(pt.eq(d["death_event"], 1), log_f, log_s)).sum())


def _cure_loglik(d: dict, eta, log_s):
    """Cure-part log-likelihood given the (group, lineage) logits `eta` and log S at the censored
    latency cells: events add log pi, censored rows log(1 - pi) + softplus(eta + log S)."""
    import pytensor.tensor as pt

    censored = latency.sum_softplus(eta.flatten()[d["cure_group"]] + log_s[d["cure_censored"]])
    return (
        (d["cure_weight"] * censored).sum()
        - (d["group_events"] * pt.softplus(-eta)).sum()
        - (d["group_censored"] * pt.softplus(eta)).sum()
    )


def build(inputs: ModelInputs, spec: ModelSpec, priors) -> pm.Model:
    """The PyMC graph; the likelihood is a Potential, a weighted sum over cells; arrays in pm.Data.

    Censored rows of the cure model use log((1 - pi) + pi S) = log(1 - pi) + softplus(eta + log S),
    so the log(1 - pi) and log pi terms are counted once per (group, lineage) and log S is evaluated
    once per latency cell.
    """
    import pymc as pm
    import pytensor.tensor as pt

    p = priors.for_model("recovery")
    family = family_of(spec)
    has_x = bool(inputs.coords[dims.COVARIATE])
    levels = estimable_levels(len(inputs.coords[dims.CENTER]), len(inputs.coords[dims.LINEAGE]), spec)
    pooled = levels["lineage_pooling"]
    data_dims = {"grid_log_day": (GRID_DAY,)}
    with pm.Model(coords=inputs.coords) as model:
        d = {name: pm.Data(name, value, dims=data_dims.get(name)) for name, value in inputs.arrays.items()}

        # Latency: location (log median) and shape per lineage, partially pooled.
        centred = inputs.parameterisation
        log_median = _hierarchical(p, "log_median", pooled, effects.is_centred(centred, "log_median"))
        log_shape = _hierarchical(p, "log_shape", pooled, effects.is_centred(centred, "log_shape"))
        shape = pm.Deterministic("shape", pt.exp(log_shape), dims=dims.LINEAGE)
        loc = pt.zeros((d["pattern_x"].shape[0], 1)) + log_median[None, :]  # (pattern, lineage)
        if has_x:
            time_beta, contribution = _effects(p, "time_beta", "time_beta", spec, d["pattern_x"])
            pm.Deterministic("time_ratio", pt.exp(time_beta), dims=_effect_dims(spec))
            loc = loc + contribution
        frailty = None
        if spec.frailty:
            frailty_sd = p["frailty_sd"].create("frailty_sd")
            # Non-centred, its patient-sized effect is not stored (augment reads frailty_sd * frailty_z).
            frailty = effects.group_effect(
                "frailty", frailty_sd, dims.PATIENT, centred=effects.is_centred(centred, "frailty"), store=False
            )
        log_f, _ = _cell_latency(family, d, "event", loc, shape, frailty)
        loglik = (d["event_weight"] * log_f).sum()
        if "interval_weight" in d:
            loglik = loglik + _interval_loglik(family, d, loc, shape, frailty)

        if spec.cure:
            cure_intercept = _hierarchical(p, "cure_intercept", pooled, effects.is_centred(centred, "cure_intercept"))
            eta = cure_intercept[None, :] + pt.zeros((d["group_center"].shape[0], 1))  # (group, lineage)
            if levels["center_effect"]:
                cure_center_sd = p["cure_center_sd"].create("cure_center_sd")
                center_effect = effects.group_effect(
                    "cure_center_effect",
                    cure_center_sd,
                    dims.CENTER,
                    centred=effects.is_centred(centred, "cure_center_effect"),
                    z_name="cure_center_z",
                )
                eta = cure_intercept[None, :] + center_effect[d["group_center"]][:, None]
            if has_x:
                cure_beta, contribution = _effects(p, "cure_beta", "cure_beta", spec, d["pattern_x"])
                pm.Deterministic("cure_odds_ratio", pt.exp(cure_beta), dims=_effect_dims(spec))
                eta = eta + contribution[d["group_pattern"]]
            _, log_s = _cell_latency(family, d, "censored", loc, shape, frailty)
            loglik = loglik + _cure_loglik(d, eta, log_s)
            # Population weight of each (pattern, lineage): patient share times P(ever recovers).
            shares = d["group_weight"][:, None] * pm.math.invlogit(eta)
            weight = pt.inc_subtensor(pt.zeros_like(loc)[d["group_pattern"]], shares)
            pm.Deterministic("cure_fraction", 1.0 - weight.sum(axis=0), dims=dims.LINEAGE)
        else:
            loglik = loglik + _censored_loglik(family, d, loc, shape, frailty)
        pm.Potential("recovery_loglik", loglik)
        if spec.competing_death:
            _death_model(priors, d, has_x)

        # Derived: trial-average patient median. The population averages over the patients table
        # (`recovered_by`, `cumulative_incidence`) are computed after sampling (`incidence`).
        pm.Deterministic("median_days", pt.exp(log_median), dims=dims.LINEAGE)
    return model


# --- post-processing in numpy --------------------------------------------------------------------

# Row x draw values computed at once in `augment` (8 MB per temporary array).
CHUNK_VALUES = 1_000_000


def _linear(post, base: str, beta: str, spec: ModelSpec, x: np.ndarray, draws: slice) -> np.ndarray:
    """(sample, pattern, lineage) linear predictor: lineage intercepts plus covariate effects of rows of x."""
    out = flat_draws(post, base, draws)[:, None, :] + np.zeros((1, x.shape[0], 1))
    if x.shape[1]:
        b = flat_draws(post, beta, draws)
        out = out + (
            np.einsum("pk,slk->spl", x, b) if spec.per_lineage_effects else np.einsum("pk,sk->sp", x, b)[:, :, None]
        )
    return out


def _tables(post, inputs: ModelInputs, spec: ModelSpec, draws: slice) -> dict[str, np.ndarray]:
    """Per-sample tables for samples `draws`: latency location by pattern x lineage ('loc'), shape by
    lineage, patient frailty as 'frailty_scale' x 'frailty' (sd and offsets z; 1 and the effect when
    centred), and (cure) the cure logit by group x lineage ('eta'), flattened. The population
    quantities take every draw at once: a (draw, patient) frailty table would be 640 MB at 20,000 patients."""
    a = inputs.arrays
    n = draws.stop - draws.start
    out = {
        "loc": _linear(post, "log_median", "time_beta", spec, a["pattern_x"], draws).reshape(n, -1),
        "shape": flat_draws(post, "shape", draws),
    }
    if spec.frailty:  # views of the draws: the effect sd * z is formed per row (`_params_np`), never per patient
        centred = "frailty" in post
        out["frailty_scale"] = np.ones(n) if centred else flat_draws(post, "frailty_sd", draws)
        out["frailty"] = flat_draws(post, "frailty" if centred else "frailty_z", draws)
    if spec.cure:
        eta = _linear(post, "cure_intercept", "cure_beta", spec, a["pattern_x"], draws)[:, a["group_pattern"], :]
        if "cure_center_effect" in post:  # absent with one center
            eta = eta + flat_draws(post, "cure_center_effect", draws)[:, a["group_center"], None]
        out["eta"] = eta.reshape(n, -1)
    if spec.competing_death:
        loc = flat_draws(post, "death_log_median", draws)[:, None] + np.zeros((1, a["pattern_x"].shape[0]))
        if a["pattern_x"].shape[1]:
            loc = loc + np.einsum("pk,sk->sp", a["pattern_x"], flat_draws(post, "death_beta", draws))
        out["death_loc"], out["death_shape"] = loc, flat_draws(post, "death_shape", draws)
    return out


def _params_np(tables: dict, spec: ModelSpec, loc, lineage, patient):
    """(location, shape) per sample of latency locations `loc`, lineages and patients (indices)."""
    mu = tables["loc"][:, loc]
    if spec.frailty:
        mu = mu + tables["frailty_scale"][:, None] * tables["frailty"][:, patient]
    return mu, tables["shape"][:, lineage]


def _latency_np(family: str, tables: dict, spec: ModelSpec, log_day, loc, lineage, patient):
    """(log f, log S) per sample at log days `log_day` of locations `loc`, lineages and patients (indices)."""
    mu, k = _params_np(tables, spec, loc, lineage, patient)
    return latency.log_density(family, log_day[None, :], mu, k)


def pointwise(tables: dict, inputs: ModelInputs, spec: ModelSpec) -> np.ndarray:
    """(sample, row) log-likelihood of the recovery rows, written per row from the model's formulas
    (log-sum-exp form for censored cure rows, log-diff-exp for interval rows), independently of the
    cell-weighted graph. The death part of a --competing-death fit is not included (one row per
    patient, not per lineage row)."""
    e = inputs.extra
    family = family_of(spec)
    mu, k = _params_np(tables, spec, e["row_loc"], e["row_lineage"], e["row_patient"])
    log_f, log_s = latency.log_density(family, e["row_log_day"][None, :], mu, k)
    if e["row_interval"].any():  # recovered between visits: log(S(L) - S(R)) in place of log f
        log_p = latency.log_interval(
            family, e["row_log_lower"][None, :], e["row_log_day"][None, :], e["row_has_lower"][None, :], mu, k
        )
        log_f = np.where(e["row_interval"][None, :], log_p, log_f)
    event = e["row_recovered"][None, :] == 1
    if not spec.cure:
        return np.where(event, log_f, log_s)
    eta = tables["eta"][:, e["row_cure"]]
    log_pi, log_1m_pi = -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta)
    return np.where(event, log_pi + log_f, np.logaddexp(log_1m_pi, log_pi + log_s))


def _replicate_counts(tables: dict, inputs: ModelInputs, spec: ModelSpec, rng: np.random.Generator) -> np.ndarray:
    """(sample, lineage) replicated recovered counts: each row recovers within follow-up with
    probability pi * F(censoring day), one Bernoulli draw per row and sample."""
    e = inputs.extra
    _, log_s = _latency_np(
        family_of(spec),
        tables,
        spec,
        e["replicate_log_day"],
        e["replicate_loc"],
        e["replicate_lineage"],
        e["replicate_patient"],
    )
    seen = -np.expm1(log_s)[:, e["replicate_of_row"]]
    if spec.cure:
        seen *= (1.0 / (1.0 + np.exp(-tables["eta"])))[:, e["replicate_row_cure"]]
    recovers = rng.uniform(size=seen.shape) < seen
    bounds = e["replicate_bounds"]
    return np.stack(
        [np.count_nonzero(recovers[:, lo:hi], axis=1) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)], axis=-1
    )


def _expit(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def incidence(tables: dict, inputs: ModelInputs, spec: ModelSpec, log_days: np.ndarray) -> np.ndarray:
    """(sample, lineage, day) population cumulative incidence of recovery at `log_days`: the average
    over the trial's patients (their covariate patterns and, with cure, centers) of pi F(t), frailty 0.
    Computed from the draws after sampling, not at every draw: a Deterministic cost 3 s of nutpie's
    compile in every process (docs/performance.md, "Issue 15")."""
    a = inputs.arrays
    n, n_lineages = tables["shape"].shape
    n_patterns = a["pattern_x"].shape[0]
    loc = tables["loc"].reshape(n, n_patterns, n_lineages)
    if spec.cure:
        shares = a["group_weight"][None, :, None] * _expit(tables["eta"]).reshape(n, -1, n_lineages)
        in_pattern = a["group_pattern"][None, :] == np.arange(n_patterns)[:, None]  # (pattern, group)
        weight = np.einsum("pg,sgl->spl", in_pattern.astype(np.float64), shares)
    else:
        weight = np.broadcast_to(a["pattern_weight"][None, :, None], (n, n_patterns, n_lineages))
    log_s = latency.log_survival(
        family_of(spec), log_days[None, None, None, :], loc[..., None], tables["shape"][:, None, :, None]
    )
    return (weight[..., None] * -np.expm1(log_s)).sum(axis=1)


def _incidence_variables(post, inputs: ModelInputs, spec: ModelSpec) -> dict:
    """recovered_by (lineage, day) and cumulative_incidence (lineage, grid_day), as posterior variables."""
    import xarray as xr

    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    report = np.log(np.asarray(inputs.coords[dims.DAY], dtype=np.float64))
    grid = inputs.arrays["grid_log_day"]
    n_days = len(report) + len(grid)
    n_patterns, n_lineages = inputs.arrays["pattern_x"].shape[0], len(inputs.coords[dims.LINEAGE])
    values = np.empty((n_chain * n_draw, n_lineages, n_days))
    step = max(1, CHUNK_VALUES // max(n_patterns * n_lineages * n_days, 1))
    for start in range(0, n_chain * n_draw, step):
        draws = slice(start, min(start + step, n_chain * n_draw))
        with np.errstate(over="ignore", divide="ignore", under="ignore"):
            tables = _tables(post, inputs, spec, draws)
            values[draws] = incidence(tables, inputs, spec, np.concatenate([report, grid]))
    values = values.reshape(n_chain, n_draw, n_lineages, n_days)
    coords = {**chain_draw_coords(post), dims.LINEAGE: inputs.coords[dims.LINEAGE]}
    return {
        "recovered_by": xr.DataArray(
            values[..., : len(report)],
            dims=(*CHAIN_DRAW, dims.LINEAGE, dims.DAY),
            coords={**coords, dims.DAY: inputs.coords[dims.DAY]},
        ),
        "cumulative_incidence": xr.DataArray(
            values[..., len(report) :],
            dims=(*CHAIN_DRAW, dims.LINEAGE, GRID_DAY),
            coords={**coords, GRID_DAY: inputs.coords[GRID_DAY]},
        ),
    }


def recovered_by(post, inputs: ModelInputs, spec: ModelSpec):
    """`recovered_by` (chain, draw, lineage, day) from the posterior draws alone, as `augment` adds it
    to a fit (a simulation study reads it after each refit, without the rest of `augment`)."""
    return _incidence_variables(post, inputs, spec)["recovered_by"]


def competing_incidence(tables: dict, inputs: ModelInputs, spec: ModelSpec, days) -> tuple[np.ndarray, np.ndarray]:
    """(sample, lineage, day) population cumulative incidences with death competing: of recovery,
    CIF_R(t) = int_0^t pi f(s) S_D(s) ds, and of death before recovery,
    CIF_D(t) = int_0^t f_D(s) (1 - pi + pi S(s)) ds, averaged over the trial's patients (their
    covariate patterns and, with cure, centers) like `recovered_by`; frailty 0.

    Integrated numerically on `CIF_STEPS` equal steps from 0 to the last of `days` (and the days
    themselves) as Stieltjes sums with the other factor averaged over each step: the increments of
    CIF_R, CIF_D and of the probability of neither add up exactly (CIF_R + CIF_D + S_D (1 - pi + pi S) = 1).
    """
    a = inputs.arrays
    family = family_of(spec)
    days = np.asarray(days, dtype=np.float64)
    fine = np.union1d(np.linspace(0.0, float(days.max()), CIF_STEPS + 1), days)
    at = np.searchsorted(fine, days)
    log_t = np.log(fine[1:])  # S = 1 at day 0
    n, n_lineages = tables["shape"].shape
    n_patterns = a["pattern_x"].shape[0]
    loc = tables["loc"].reshape(n, n_patterns, n_lineages)
    if spec.cure:
        unit_pattern, weight = a["group_pattern"], a["group_weight"]
        pi = _expit(tables["eta"]).reshape(n, len(weight), n_lineages)
    else:
        unit_pattern, weight = np.arange(n_patterns), a["pattern_weight"]
        pi = np.ones((n, n_patterns, n_lineages))
    loc = loc[:, unit_pattern, :]
    death_loc = tables["death_loc"][:, unit_pattern]
    n_units = len(weight)
    recovery_cif = np.empty((n, n_lineages, len(days)))
    death_cif = np.empty((n, n_lineages, len(days)))
    step = max(1, CHUNK_VALUES // (n_units * n_lineages * len(fine)))

    def with_day_zero(log_s):
        return np.concatenate([np.ones(log_s.shape[:-1] + (1,)), np.exp(log_s)], axis=-1)

    def cumulative(increments):
        return np.concatenate([np.zeros(increments.shape[:-1] + (1,)), np.cumsum(increments, axis=-1)], axis=-1)

    for start in range(0, n, step):
        c = slice(start, min(start + step, n))
        log_s = latency.log_survival(family, log_t, loc[c, :, :, None], tables["shape"][c, None, :, None])
        s_latency = with_day_zero(log_s)  # (sample, unit, lineage, day)
        log_sd = latency.log_survival(DEATH_FAMILY, log_t, death_loc[c, :, None], tables["death_shape"][c, None, None])
        s_death = with_day_zero(log_sd)[:, :, None, :]  # (sample, unit, 1, day)
        p = pi[c][..., None]
        not_recovered = 1.0 - p + p * s_latency
        d_recovery = p * (s_latency[..., :-1] - s_latency[..., 1:]) * 0.5 * (s_death[..., :-1] + s_death[..., 1:])
        d_death = (s_death[..., :-1] - s_death[..., 1:]) * 0.5 * (not_recovered[..., :-1] + not_recovered[..., 1:])
        recovery_cif[c] = np.einsum("u,suld->sld", weight, cumulative(d_recovery)[..., at])
        death_cif[c] = np.einsum("u,suld->sld", weight, cumulative(d_death)[..., at])
    return recovery_cif, death_cif


def _competing_incidence_variables(post, inputs: ModelInputs, spec: ModelSpec) -> dict:
    """recovery_cif / death_before_recovery (lineage, day) and their curves (lineage, grid_day), as
    posterior variables by name."""
    import xarray as xr

    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    report = np.asarray(inputs.coords[dims.DAY], dtype=np.float64)
    grid = np.asarray(inputs.coords[GRID_DAY], dtype=np.float64)
    with np.errstate(over="ignore", divide="ignore", under="ignore"):
        tables = _tables(post, inputs, spec, slice(0, n_chain * n_draw))
        recovery_cif, death_cif = competing_incidence(tables, inputs, spec, np.concatenate([report, grid]))
    coords = {
        **chain_draw_coords(post),
        dims.LINEAGE: inputs.coords[dims.LINEAGE],
        dims.DAY: inputs.coords[dims.DAY],
        GRID_DAY: inputs.coords[GRID_DAY],
    }
    out = {}
    for name, values in (("recovery_cif", recovery_cif), ("death_before_recovery", death_cif)):
        values = values.reshape(n_chain, n_draw, *values.shape[1:])
        for suffix, part, day_dim in (
            ("", values[..., : len(report)], dims.DAY),
            ("_curve", values[..., len(report) :], GRID_DAY),
        ):
            dims_ = (*CHAIN_DRAW, dims.LINEAGE, day_dim)
            out[name + suffix] = xr.DataArray(part, dims=dims_, coords={k: coords[k] for k in dims_})
    return out


def augment(idata, inputs: ModelInputs, spec: ModelSpec, rng: np.random.Generator) -> Augmented:
    """Recovered counts per lineage (observed; replicated per draw) and, when it fits in
    `marrow.models.idata.MAX_POINTWISE_VALUES`, the per-row log-likelihood; otherwise a note says why
    (`LOG_LIKELIHOOD_OMITTED`). Works in chunks of draws, so memory stays bounded. `idata` is read only.

    A replicated row recovers within follow-up with probability pi * F(censoring day): one Bernoulli
    draw per row and posterior draw. With --competing-death also the cumulative incidences of recovery
    and of death before recovery (`competing_incidence`), as posterior variables.
    """
    import xarray as xr

    limit = idata_helpers.MAX_POINTWISE_VALUES  # read at call time (tests lower it)
    post = idata.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    n_samples = n_chain * n_draw
    rl = inputs.extra["row_lineage"]
    n_rows, n_lineages = len(rl), len(inputs.coords[dims.LINEAGE])
    keep = n_rows * n_samples <= limit
    loglik = np.empty((n_samples, n_rows)) if keep else None
    rep = np.empty((n_samples, n_lineages), dtype=np.int64)
    step = max(1, CHUNK_VALUES // max(n_rows, 1))
    for start in range(0, n_samples, step):
        draws = slice(start, min(start + step, n_samples))
        with np.errstate(over="ignore", divide="ignore", under="ignore"):
            tables = _tables(post, inputs, spec, draws)
            rep[draws] = _replicate_counts(tables, inputs, spec, rng)
            if loglik is not None:
                loglik[draws] = pointwise(tables, inputs, spec)
    obs = np.bincount(rl, weights=inputs.extra["row_recovered"], minlength=n_lineages).astype(np.int64)

    coords = chain_draw_coords(post)
    lineage = {dims.LINEAGE: inputs.coords[dims.LINEAGE]}
    groups = {
        idata_helpers.POSTERIOR_PREDICTIVE: xr.Dataset(
            {"recovered_count": (CHAIN_DRAW + (dims.LINEAGE,), rep.reshape(n_chain, n_draw, -1))},
            coords={**coords, **lineage},
        ),
        idata_helpers.OBSERVED_DATA: xr.Dataset(
            {
                "recovered_count": ((dims.LINEAGE,), obs),
                "at_risk": ((dims.LINEAGE,), np.bincount(rl, minlength=n_lineages).astype(np.int64)),
            },
            coords=lineage,
        ),
    }
    notes = {}
    if loglik is not None:
        groups[idata_helpers.LOG_LIKELIHOOD] = xr.Dataset(
            {"recovery": (CHAIN_DRAW + (dims.ROW,), loglik.reshape(n_chain, n_draw, -1))},
            coords={**coords, dims.ROW: inputs.coords[dims.ROW]},
        )
    else:
        notes[idata_helpers.LOG_LIKELIHOOD_OMITTED] = idata_helpers.omitted_reason(n_rows * n_samples, limit)
    posterior = _incidence_variables(post, inputs, spec)
    if spec.competing_death:
        posterior.update(_competing_incidence_variables(post, inputs, spec))
    return Augmented(groups, posterior, notes)


def quantities(spec: ModelSpec) -> list[Quantity]:
    """Reported quantities, in order; variables absent from a fit (no covariates, no cure) are skipped."""
    per = ", {lineage}" if spec.per_lineage_effects else ""
    unit, one = spec.time_unit, time_units.SINGULAR[spec.time_unit]
    out = [Quantity("median_days", f"Median {unit} to recovery, {{lineage}}", unit)]
    if spec.cure:
        out.append(Quantity("cure_fraction", "Never recovers (cure fraction), {lineage}", "probability"))
    out += [
        Quantity("recovered_by", f"P(recovered by {one} {{day}}), {{lineage}}", "probability"),
        Quantity("time_ratio", "Time ratio, {covariate}" + per, "ratio"),
    ]
    if spec.cure:
        out.append(Quantity("cure_odds_ratio", "Odds ratio of recovery, {covariate}" + per, "ratio"))
    if spec.competing_death:
        out += [
            Quantity(
                "recovery_cif",
                f"Cumulative incidence of recovery by {one} {{day}} (death competing), {{lineage}}",
                "probability",
            ),
            Quantity("death_before_recovery", f"Died before recovery by {one} {{day}}, {{lineage}}", "probability"),
            Quantity(
                "death_median_days", f"Median {unit} to death (cause-specific hazard), trial-average patient", unit
            ),
            Quantity("death_time_ratio", "Time ratio of death, {covariate}", "ratio"),
            Quantity("death_shape", "Weibull shape of the death hazard", "ratio"),
        ]
    out += [
        Quantity("shape", "Latency shape, {lineage}", "ratio"),
        Quantity("log_median_sd", "Lineage sd of log median latency", "sd"),
    ]
    if spec.cure:
        out.append(Quantity("cure_center_sd", "Center sd (log-odds of recovery)", "sd"))
    if spec.frailty:
        out.append(Quantity("frailty_sd", "Patient frailty sd (log latency)", "sd"))
    return out


def probabilities(idata, spec: ModelSpec) -> list[tuple[str, float]]:
    """Posterior probability that each lineage has the longest median time to recovery (none with a
    single lineage: there is nothing to compare)."""
    median = idata.posterior["median_days"]
    if median.sizes[dims.LINEAGE] < 2:
        return []
    values = median.to_numpy().reshape(-1, median.sizes[dims.LINEAGE])
    slowest = values.argmax(axis=1)
    names = [str(v) for v in median[dims.LINEAGE].to_numpy()]
    return [
        (f"P({name} is the slowest lineage to recover)", float((slowest == j).mean())) for j, name in enumerate(names)
    ]
