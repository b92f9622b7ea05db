"""Overall survival: accelerated failure time model on followup_days/died, family weibull (default),
exponential, lognormal or loglogistic.

Times are in the fit's unit (`spec.time_unit`: days, weeks or months; `followup_days` holds times in
that unit). Covariates are centred at their mean over patients (xc_i = x_i - mean x). For patient i:
  mu_i = log_median + xc_i' beta          (log median survival in the fit's unit; exp(beta) are time ratios)
  u_i  = k (log t - mu_i),  k = exp(log_shape), or 1 for the exponential (= Weibull with k = 1)
The families' log S(t) and log f(t) are those of `marrow.models.latency` (written once there, for
PyTensor in `build` and numpy in `augment`; the recovery model uses the same), e.g. Weibull
log S = -ln2 exp(u), log-normal log S = log Phi(-u) (k = 1/sigma), log-logistic log S = -softplus(u).
Likelihood: died: log f(followup); alive: log S(followup) (right-censored). The Weibull and exponential
are also proportional-hazards models: hazard ratio = exp(-k beta) (not reported for the other
families, whose hazard ratios change with time). Population quantities average S over the patients.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from marrow import dims, time_units
from marrow.data import TrialData
from marrow.models import latency
from marrow.models.descriptors.survival import DESCRIPTOR
from marrow.models.idata import (
    CHAIN_DRAW,
    LOG_LIKELIHOOD,
    OBSERVED_DATA,
    POSTERIOR_PREDICTIVE,
    Augmented,
    chain_draw_coords,
    flat_draws,
)
from marrow.models.inputs import ModelInputs, Quantity
from marrow.spec import ModelSpec

if TYPE_CHECKING:
    import pymc as pm

DEFAULT_TARGET_ACCEPT = DESCRIPTOR.target_accept
DEFAULT_FAMILY = str(DESCRIPTOR.default_family)  # the descriptor's `family` option
GRID_POINTS = 60
# family -> readable name (labels)
FAMILY_NAMES = {
    "weibull": "Weibull",
    "exponential": "exponential",
    "lognormal": "log-normal",
    "loglogistic": "log-logistic",
}
PROPORTIONAL_HAZARDS = ("weibull", "exponential")  # families whose AFT effects are also hazard ratios


def family_of(spec: ModelSpec) -> str:
    return spec.resolved_family or DEFAULT_FAMILY  # never None: the model has a default family


def latency_family(family: str) -> str:
    """The `marrow.models.latency` family whose formulas a survival family uses (exponential: Weibull, k = 1)."""
    return "weibull" if family == "exponential" else family


def has_shape(family: str) -> bool:
    """Whether the family samples a shape k (`survival.log_shape` is its prior): all but the exponential."""
    return family != "exponential"


def report_days(spec: ModelSpec) -> list:
    """Times of S(t), in the fit's unit: `spec.horizons`, or 6, 12 and 24 months when none are given."""
    return time_units.horizons(spec.horizons, time_units.survival_horizons(spec.time_unit))


def inputs(data: TrialData, spec: ModelSpec) -> ModelInputs:
    """Per-patient follow-up, death indicator and centred covariates; a day grid for curves."""
    patients = data.patients
    x = data.covariate_matrix()
    x_mean = x.mean(axis=0) if x.shape[1] else np.zeros(0)
    followup = patients["followup_days"].to_numpy(dtype=np.float64)
    grid = np.linspace(0.0, float(followup.max()), GRID_POINTS)
    arrays = {
        "log_followup": np.log(followup),
        "died": patients["died"].to_numpy(dtype=np.int64),
        "patient_x": x - x_mean,
        "grid_log_day": np.log(np.maximum(grid, 1e-6)),
    }
    coords = {
        dims.COVARIATE: list(data.covariates),
        dims.PATIENT: list(data.patient_ids),
        dims.DAY: report_days(spec),
        dims.GRID_DAY: [float(g) for g in grid],
    }
    return ModelInputs(arrays, coords, {"x_mean": x_mean, "followup": followup})


def _data_dims(name: str) -> tuple[str, ...]:
    return {
        "log_followup": (dims.PATIENT,),
        "died": (dims.PATIENT,),
        "patient_x": (dims.PATIENT, dims.COVARIATE),
        "grid_log_day": (dims.GRID_DAY,),
    }[name]


def build(inputs: ModelInputs, spec: ModelSpec, priors) -> pm.Model:
    """The PyMC graph: the family's censored likelihood (`marrow.models.latency`) as a Potential, arrays in pm.Data."""
    import pymc as pm
    import pytensor.tensor as pt

    p = priors.for_model("survival")
    family = family_of(spec)
    kind, ops = latency_family(family), latency.pytensor_ops()
    has_x = bool(inputs.coords[dims.COVARIATE])
    days = np.asarray(inputs.coords[dims.DAY], dtype=np.float64)
    with pm.Model(coords=inputs.coords) as model:
        d = {name: pm.Data(name, value, dims=_data_dims(name)) for name, value in inputs.arrays.items()}
        log_median = p["log_median"].create("log_median")
        if has_shape(family):
            log_shape = p["log_shape"].create("log_shape")
            shape = pm.Deterministic("shape", pt.exp(log_shape))
        else:
            shape = pt.constant(1.0)
        mu = log_median + pt.zeros_like(d["log_followup"])
        if has_x:
            beta = p["beta"].create("beta", dims=dims.COVARIATE)
            mu = mu + pt.dot(d["patient_x"], beta)
            pm.Deterministic("time_ratio", pt.exp(beta), dims=dims.COVARIATE)
            if family in PROPORTIONAL_HAZARDS:
                pm.Deterministic("hazard_ratio", pt.exp(-shape * beta), dims=dims.COVARIATE)
        log_f, log_s = latency.log_density(kind, d["log_followup"], mu, shape, ops)
        pm.Potential("survival_loglik", pt.switch(pt.eq(d["died"], 1), log_f, log_s).sum())

        def surv(log_days):
            return pt.exp(latency.log_survival(kind, log_days[None, :], mu[:, None], shape, ops)).mean(axis=0)

        pm.Deterministic("median_days", pt.exp(log_median))
        pm.Deterministic("survival_at", surv(pt.as_tensor(np.log(days))), dims=dims.DAY)
        pm.Deterministic("survival_curve", surv(d["grid_log_day"]), dims=dims.GRID_DAY)
        # RMST(tau) per patient (`latency.restricted_mean`: Weibull and log-normal closed forms,
        # log-logistic quadrature), averaged over the patients.
        log_tau = math.log(time_units.rmst_horizon(spec.time_unit))
        pm.Deterministic("rmst", latency.restricted_mean(kind, log_tau, mu, shape, ops).mean())
    return model


def pointwise(post, inputs: ModelInputs, spec: ModelSpec) -> dict[str, np.ndarray]:
    """(sample, patient) log-likelihood, location and shape from posterior draws (`latency.log_density`)."""
    a = inputs.arrays
    family = family_of(spec)
    mu = flat_draws(post, "log_median")[:, None] + np.zeros((1, len(a["died"])))
    if a["patient_x"].shape[1]:
        mu = mu + np.einsum("pk,sk->sp", a["patient_x"], flat_draws(post, "beta"))
    k = flat_draws(post, "shape")[:, None] if has_shape(family) else np.ones((mu.shape[0], 1))
    with np.errstate(over="ignore", under="ignore"):
        log_f, log_s = latency.log_density(latency_family(family), a["log_followup"][None, :], mu, k)
    return {"loglik": np.where(a["died"][None, :] == 1, log_f, log_s), "mu": mu, "shape": k}


def potential_censoring(time: np.ndarray, died: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` draws of every patient's censoring time (n, patients): the follow-up of a censored patient; for
    one who died at t, a draw from the censoring distribution given censoring after t, estimated by the
    reverse Kaplan-Meier (censorings as events, deaths as censored). Mass beyond the last censoring time,
    and a death after it, give infinity: followed until death. Written here, not with lifelines: a few
    lines, and no lifelines import in every survival fit."""
    time = np.asarray(time, dtype=float)
    died = np.asarray(died).astype(bool)
    out = np.broadcast_to(np.where(died, np.inf, time), (n, time.size)).copy()
    if not died.any() or died.all():
        return out
    order = np.argsort(time, kind="stable")
    t, is_censoring = time[order], ~died[order]
    at_risk = time.size - np.arange(time.size)
    # G(t) after each observation; a jump of G at each censoring time (ties handled in sorted order)
    g = np.cumprod(np.where(is_censoring, 1.0 - 1.0 / at_risk, 1.0))
    g_before = np.concatenate([[1.0], g[:-1]])
    jumps = np.where(is_censoring, g_before - g, 0.0)
    for i in np.flatnonzero(died):
        later = t > time[i]
        weights = jumps * later
        total = g_before[np.searchsorted(t, time[i], side="right")] if later.any() else 0.0
        if total <= 0 or weights.sum() <= 0:
            continue
        # P(C = c_j | C > t_i) = jump_j / G(t_i); the rest (G after the last censoring) is infinity.
        probs = np.append(weights, max(total - weights.sum(), 0.0)) / total
        values = np.append(t, np.inf)
        out[:, i] = rng.choice(values, size=n, p=probs / probs.sum())
    return out


def augment(idata, inputs: ModelInputs, spec: ModelSpec, rng: np.random.Generator) -> Augmented:
    """Per-patient log-likelihood and replicated numbers of deaths within follow-up (`idata` is read only)."""
    import xarray as xr

    post = idata.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    rows = pointwise(post, inputs, spec)
    v = rng.uniform(size=rows["mu"].shape)  # S(death day) = v
    with np.errstate(divide="ignore", over="ignore"):
        death_day = np.exp(
            latency.log_time_at_log_survival(latency_family(family_of(spec)), np.log(v), rows["mu"], rows["shape"])
        )
    followup = inputs.extra["followup"]
    died = inputs.arrays["died"]
    year = time_units.one_year(spec.time_unit)
    # A replicated trial follows each patient until their censoring time: known for the censored, drawn
    # for those who died (their follow-up ended at death, which would count too few replicated deaths).
    censoring = potential_censoring(followup, died, rng, death_day.shape[0])
    deaths = (death_day <= censoring).sum(axis=1)
    deaths_year = (death_day <= np.minimum(censoring, year)).sum(axis=1)
    coords = chain_draw_coords(post)
    predictive = xr.Dataset(
        {
            "deaths": (CHAIN_DRAW, deaths.reshape(n_chain, n_draw)),
            "deaths_first_year": (CHAIN_DRAW, deaths_year.reshape(n_chain, n_draw)),
        },
        coords=coords,
    )
    observed = xr.Dataset(
        {
            "deaths": ((), int(died.sum())),
            "deaths_first_year": ((), int(((followup <= year) & (died == 1)).sum())),
        }
    )
    log_lik = xr.Dataset(
        {"survival": (CHAIN_DRAW + (dims.PATIENT,), rows["loglik"].reshape(n_chain, n_draw, -1))},
        coords={**coords, dims.PATIENT: inputs.coords[dims.PATIENT]},
    )
    return Augmented({POSTERIOR_PREDICTIVE: predictive, OBSERVED_DATA: observed, LOG_LIKELIHOOD: log_lik})


def quantities(spec: ModelSpec) -> list[Quantity]:
    """Reported quantities; absent variables (no covariates, exponential shape, hazard ratios of
    families without proportional hazards) are skipped. Times are in the fit's unit (the variable
    names keep `days` for every unit)."""
    unit, one = spec.time_unit, time_units.SINGULAR[spec.time_unit]
    return [
        Quantity("survival_at", f"Overall survival at {one} {{day}}", "probability"),
        Quantity("rmst", f"Restricted mean survival to {one} {time_units.rmst_horizon(unit):g} ({unit})", unit),
        Quantity("median_days", f"Median survival ({unit}), trial-average patient", unit),
        Quantity("time_ratio", "Time ratio, {covariate}", "ratio"),
        Quantity("hazard_ratio", "Hazard ratio of death, {covariate}", "ratio"),
        Quantity("shape", shape_label(family_of(spec)), "ratio"),
    ]


def shape_label(family: str) -> str:
    """'Weibull shape', 'log-normal shape k = 1/sigma', 'log-logistic shape'."""
    name = FAMILY_NAMES[family]
    return f"{name[0].upper()}{name[1:]} shape" + (" k = 1/sigma" if family == "lognormal" else "")


def probabilities(idata, spec: ModelSpec) -> list[tuple[str, float]]:
    """Posterior probability that 12-month overall survival exceeds 80% (a common benchmark); none when
    the fit's horizons leave out 12 months."""
    at = idata.posterior["survival_at"]
    year = [t for t in at[dims.DAY].to_numpy() if time_units.same_time(t, time_units.one_year(spec.time_unit))]
    if not year:
        return []
    values = at.sel({dims.DAY: year[0]}).to_numpy()
    return [("P(12-month overall survival > 0.8)", float((values > 0.8).mean()))]
