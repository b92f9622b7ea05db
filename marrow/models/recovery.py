"""Lineage-specific time to recovery: mixture cure model (default) or plain censored AFT model.

Rows are (patient i, lineage l) pairs of the long recovery table. Covariates are centred at their
mean over the patients table (xc_i = x_i - mean x), so lineage intercepts refer to the trial-average
patient and sample without correlation with the covariate effects.

Cure part (spec.cure):    pi_il = P(ever recovers) = logistic(a_l + u_c(i) + xc_i' gamma),
                          a_l = cure_intercept_mu + cure_intercept_sd * z_l,  u_c = cure_center_sd * z_c.
Latency (those who recover), accelerated failure time with location mu_il = log median:
                          mu_il = m_l + xc_i' beta (+ f_i with spec.frailty),  m_l = log_median_mu + log_median_sd * z_l,
                          shape k_l = exp(log_shape_mu + log_shape_sd * z_l),  u = k_l (log t - mu_il).
  weibull:     log S = -ln2 * exp(u)              (median exactly exp(mu))
  loglogistic: log S = -softplus(u)
  lognormal:   log S = log Phi(-u)                (sigma of log T = 1 / k_l)
Likelihood per row: recovered: log pi + log f(t); censored: logaddexp(log(1 - pi), log pi + log S(t)).
Without cure: recovered: log f(t); censored: log S(t). The frailty f_i = frailty_sd * z_i is a patient
effect on the latency log-scale shared by the patient's lineages (positive = slower recovery).
Pointwise log-likelihood per row is recomputed from the posterior draws in numpy (`augment`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from marrow import dims
from marrow.data import TrialData
from marrow.models.inputs import ModelInputs, Quantity, replace_groups
from marrow.spec import ModelSpec

DEFAULT_TARGET_ACCEPT = 0.99
DEFAULT_FAMILY = "loglogistic"  # passes PSIS-LOO on the bundled trial where Weibull does not (docs/models.md)
DEFAULT_SAMPLER = "nutpie"  # ~120 leapfrog steps per draw at target_accept 0.99: low per-step overhead matters
REPORT_DAYS = (30.0, 90.0, 180.0)
GRID_DAY = dims.GRID_DAY
GRID_POINTS = 60
LN2 = math.log(2.0)
LN2_LOG = math.log(LN2)


def family_of(spec: ModelSpec) -> str:
    return spec.family or DEFAULT_FAMILY


def report_days(spec: ModelSpec) -> list:
    """Days of P(recovered by day): 30, 90, 180 plus spec.by_days; ints when all are whole (for labels)."""
    days = sorted(set(REPORT_DAYS) | {float(d) for d in spec.by_days})
    if all(float(d).is_integer() for d in days):
        return [int(d) for d in days]
    return days


# --- latency families, written once for numpy and once for pytensor -------------------------------

def log_density_np(family: str, log_t, mu, k):
    """(log f(t), log S(t)) for latency location mu (log median) and shape k; numpy, broadcasting."""
    from scipy.special import log_ndtr

    u = k * (log_t - mu)
    if family == "weibull":
        log_s = -LN2 * np.exp(np.minimum(u, 700.0))
        log_f = np.log(k) - log_t + LN2_LOG + u + log_s
    elif family == "loglogistic":
        log_s = -np.logaddexp(0.0, u)
        log_f = np.log(k) - log_t + u + 2.0 * log_s
    else:
        log_s = log_ndtr(-u)
        log_f = np.log(k) - log_t - 0.5 * u**2 - 0.5 * math.log(2 * math.pi)
    return log_f, log_s


def _log_density_pt(family: str, log_t, mu, k):
    """(log f(t), log S(t)) in pytensor; same formulas as `log_density_np`."""
    import pytensor.tensor as pt
    from pymc.distributions.dist_math import normal_lccdf

    u = k * (log_t - mu)
    if family == "weibull":
        log_s = -LN2 * pt.exp(u)
        log_f = pt.log(k) - log_t + LN2_LOG + u + log_s
    elif family == "loglogistic":
        log_s = -pt.softplus(u)
        log_f = pt.log(k) - log_t + u + 2.0 * log_s
    else:
        log_s = normal_lccdf(0.0, 1.0, u)
        log_f = pt.log(k) - log_t - 0.5 * u**2 - 0.5 * math.log(2 * math.pi)
    return log_f, log_s


def sample_latency_np(family: str, mu, k, rng: np.random.Generator):
    """Draw latency times (days) with location mu (log median) and shape k, by inverting S."""
    v = rng.uniform(size=np.shape(mu))
    if family == "weibull":
        z = np.log(-np.log(v) / LN2)
    elif family == "loglogistic":
        z = np.log((1.0 - v) / v)
    else:
        z = rng.standard_normal(size=np.shape(mu))
    return np.exp(mu + z / k)


# --- inputs -----------------------------------------------------------------------------------------

def inputs(data: TrialData, spec: ModelSpec) -> ModelInputs:
    """Row arrays of the long recovery table plus patient arrays for population-averaged quantities."""
    rec = data.recovery
    lineages = list(data.lineages)
    patient_ids = list(data.patient_ids)
    patient_lookup = {p: i for i, p in enumerate(patient_ids)}
    lineage_lookup = {name: i for i, name in enumerate(lineages)}
    row_patient = rec["patient_id"].map(patient_lookup).to_numpy(dtype=np.int64)
    row_lineage = rec["lineage"].map(lineage_lookup).to_numpy(dtype=np.int64)
    day = rec["day"].to_numpy(dtype=np.float64)
    recovered = rec["recovered"].to_numpy(dtype=np.int64)

    x = data.covariate_matrix()
    x_mean = x.mean(axis=0) if x.shape[1] else np.zeros(0)
    patient_x = x - x_mean

    # Grid for plotted cumulative incidence: to twice the last recovery day (where the curves have
    # levelled off), never past the last observed day.
    last_event = float(day[recovered == 1].max()) if recovered.any() else float(day.max())
    grid_end = min(float(day.max()), 2.0 * last_event)
    grid = np.linspace(0.0, grid_end, GRID_POINTS)

    # Censoring time for posterior predictive draws: the patient's follow-up when the patients table
    # has it, otherwise the patient's latest censored day, otherwise the last day seen in the trial.
    censor_day = np.full(len(patient_ids), float(day.max()))
    censored_max = pd.Series(day[recovered == 0]).groupby(row_patient[recovered == 0]).max()
    censor_day[censored_max.index.to_numpy(dtype=np.int64)] = censored_max.to_numpy()
    if "followup_days" in data.patients.columns:
        follow = data.patients["followup_days"].to_numpy(dtype=np.float64)
        censor_day = np.where(np.isfinite(follow), follow, censor_day)
    row_censor = np.maximum(censor_day[row_patient], day)

    arrays = {
        "row_lineage": row_lineage,
        "row_patient": row_patient,
        "row_log_day": np.log(day),
        "row_recovered": recovered,
        "patient_center": data.center_index,
        "patient_x": patient_x,
        "grid_log_day": np.log(np.maximum(grid, 1e-6)),
    }
    coords = {
        dims.LINEAGE: lineages,
        dims.COVARIATE: list(data.covariates),
        dims.CENTER: list(data.centers),
        dims.PATIENT: patient_ids,
        dims.ROW: [f"{p} {name}" for p, name in zip(rec["patient_id"], rec["lineage"])],
        dims.DAY: report_days(spec),
        GRID_DAY: [float(g) for g in grid],
    }
    extra = {"x_mean": x_mean, "row_day": day, "row_censor_day": row_censor}
    return ModelInputs(arrays, coords, extra)


def _data_dims(name: str) -> tuple[str, ...]:
    return {
        "row_lineage": (dims.ROW,),
        "row_patient": (dims.ROW,),
        "row_log_day": (dims.ROW,),
        "row_recovered": (dims.ROW,),
        "patient_center": (dims.PATIENT,),
        "patient_x": (dims.PATIENT, dims.COVARIATE),
        "grid_log_day": (GRID_DAY,),
    }[name]


# --- the PyMC graph ------------------------------------------------------------------------------

def _hierarchical(p, name: str):
    """Lineage parameter `name` = name_mu + name_sd * z (non-centred), stored with dims lineage."""
    import pymc as pm

    mu = p[f"{name}_mu"].create(f"{name}_mu")
    sd = p[f"{name}_sd"].create(f"{name}_sd")
    z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=dims.LINEAGE)
    return pm.Deterministic(name, mu + sd * z, dims=dims.LINEAGE)


def _effects(p, key: str, name: str, spec: ModelSpec, patient_x):
    """Covariate effects (shared, or per lineage) and their contribution as a (patient, lineage) matrix."""
    import pytensor.tensor as pt

    if spec.per_lineage_effects:
        beta = p[key].create(name, dims=(dims.LINEAGE, dims.COVARIATE))
        return beta, pt.dot(patient_x, beta.T)
    beta = p[key].create(name, dims=dims.COVARIATE)
    return beta, pt.dot(patient_x, beta)[:, None]


def _effect_dims(spec: ModelSpec) -> tuple[str, ...]:
    return (dims.LINEAGE, dims.COVARIATE) if spec.per_lineage_effects else (dims.COVARIATE,)


def build(inputs: ModelInputs, spec: ModelSpec, priors) -> "pm.Model":
    """The PyMC graph; the likelihood is a Potential over all rows, arrays in pm.Data."""
    import pymc as pm
    import pytensor.tensor as pt

    p = priors.for_model("recovery")
    family = family_of(spec)
    has_x = bool(inputs.coords[dims.COVARIATE])
    days = np.asarray(inputs.coords[dims.DAY], dtype=np.float64)
    with pm.Model(coords=inputs.coords) as model:
        d = {name: pm.Data(name, value, dims=_data_dims(name)) for name, value in inputs.arrays.items()}
        n_patients = d["patient_center"].shape[0]

        # Latency: location (log median) and shape per lineage, partially pooled.
        log_median = _hierarchical(p, "log_median")
        log_shape = _hierarchical(p, "log_shape")
        shape = pm.Deterministic("shape", pt.exp(log_shape), dims=dims.LINEAGE)
        loc = pt.zeros((n_patients, 1)) + log_median[None, :]  # (patient, lineage), trial-average patient
        if has_x:
            time_beta, contribution = _effects(p, "time_beta", "time_beta", spec, d["patient_x"])
            pm.Deterministic("time_ratio", pt.exp(time_beta), dims=_effect_dims(spec))
            loc = loc + contribution
        row_loc = loc[d["row_patient"], d["row_lineage"]]
        if spec.frailty:
            frailty_sd = p["frailty_sd"].create("frailty_sd")
            frailty_z = pm.Normal("frailty_z", 0.0, 1.0, dims=dims.PATIENT)
            row_loc = row_loc + frailty_sd * frailty_z[d["row_patient"]]
        row_shape = shape[d["row_lineage"]]
        log_f, log_s = _log_density_pt(family, d["row_log_day"], row_loc, row_shape)
        event = pt.eq(d["row_recovered"], 1)

        if spec.cure:
            cure_intercept = _hierarchical(p, "cure_intercept")
            cure_center_sd = p["cure_center_sd"].create("cure_center_sd")
            cure_center_z = pm.Normal("cure_center_z", 0.0, 1.0, dims=dims.CENTER)
            center_effect = pm.Deterministic("cure_center_effect", cure_center_sd * cure_center_z, dims=dims.CENTER)
            eta = pt.zeros((n_patients, 1)) + cure_intercept[None, :] + center_effect[d["patient_center"]][:, None]
            if has_x:
                cure_beta, contribution = _effects(p, "cure_beta", "cure_beta", spec, d["patient_x"])
                pm.Deterministic("cure_odds_ratio", pt.exp(cure_beta), dims=_effect_dims(spec))
                eta = eta + contribution
            row_eta = eta[d["row_patient"], d["row_lineage"]]
            log_pi, log_1m_pi = -pt.softplus(-row_eta), -pt.softplus(row_eta)
            loglik = pt.switch(event, log_pi + log_f, pt.logaddexp(log_1m_pi, log_pi + log_s))
            pi = pm.math.invlogit(eta)  # (patient, lineage)
            pm.Deterministic("cure_fraction", 1.0 - pi.mean(axis=0), dims=dims.LINEAGE)
        else:
            loglik = pt.switch(event, log_f, log_s)
            pi = pt.ones((n_patients, 1))
        pm.Potential("recovery_loglik", loglik.sum())

        # Derived: trial-average patient median; population averages over the patients table.
        pm.Deterministic("median_days", pt.exp(log_median), dims=dims.LINEAGE)

        def incidence(log_days):
            _, log_s_grid = _log_density_pt(family, log_days[None, None, :], loc[:, :, None], shape[None, :, None])
            return (pi[:, :, None] * -pt.expm1(log_s_grid)).mean(axis=0)

        pm.Deterministic("recovered_by", incidence(pt.as_tensor(np.log(days))), dims=(dims.LINEAGE, dims.DAY))
        pm.Deterministic("cumulative_incidence", incidence(d["grid_log_day"]), dims=(dims.LINEAGE, GRID_DAY))
    return model


# --- post-processing in numpy --------------------------------------------------------------------

def _draws(post, name: str) -> np.ndarray:
    """(sample, ...) array of a posterior variable."""
    values = post[name].to_numpy()
    return values.reshape((-1,) + values.shape[2:])


def _matrix(post, base: str, beta: str, spec: ModelSpec, patient_x: np.ndarray) -> np.ndarray:
    """(sample, patient, lineage) linear predictor: lineage intercepts plus covariate effects."""
    out = _draws(post, base)[:, None, :] + np.zeros((1, patient_x.shape[0], 1))
    if patient_x.shape[1]:
        b = _draws(post, beta)
        if spec.per_lineage_effects:
            out = out + np.einsum("pk,slk->spl", patient_x, b)
        else:
            out = out + np.einsum("pk,sk->sp", patient_x, b)[:, :, None]
    return out


def pointwise(post, inputs: ModelInputs, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Per-draw row quantities: log-likelihood, latency location, shape and P(ever recovers)."""
    a = inputs.arrays
    family = family_of(spec)
    rp, rl = a["row_patient"], a["row_lineage"]
    loc = _matrix(post, "log_median", "time_beta", spec, a["patient_x"])[:, rp, rl]
    if spec.frailty:
        loc = loc + _draws(post, "frailty_sd")[:, None] * _draws(post, "frailty_z")[:, rp]
    k = _draws(post, "shape")[:, rl]
    with np.errstate(over="ignore", divide="ignore", under="ignore"):
        log_f, log_s = log_density_np(family, a["row_log_day"][None, :], loc, k)
        event = a["row_recovered"][None, :] == 1
        if spec.cure:
            eta = _matrix(post, "cure_intercept", "cure_beta", spec, a["patient_x"])
            eta = eta + _draws(post, "cure_center_effect")[:, a["patient_center"]][:, :, None]
            eta = eta[:, rp, rl]
            log_pi, log_1m_pi = -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta)
            loglik = np.where(event, log_pi + log_f, np.logaddexp(log_1m_pi, log_pi + log_s))
            pi = np.exp(log_pi)
        else:
            loglik = np.where(event, log_f, log_s)
            pi = np.ones_like(loc)
    return {"loglik": loglik, "loc": loc, "shape": k, "pi": pi}


def augment(idata, inputs: ModelInputs, spec: ModelSpec, rng: np.random.Generator) -> None:
    """Add per-row log-likelihood, recovered counts per lineage (observed and replicated) to `idata`."""
    import xarray as xr

    post = idata.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    rows = pointwise(post, inputs, spec)
    rl = inputs.arrays["row_lineage"]
    n_lineages = len(inputs.coords[dims.LINEAGE])

    recovers = rng.uniform(size=rows["pi"].shape) < rows["pi"]
    with np.errstate(over="ignore", divide="ignore"):
        latency = sample_latency_np(family_of(spec), rows["loc"], rows["shape"], rng)
    seen = recovers & (latency <= inputs.extra["row_censor_day"][None, :])
    rep = np.stack([seen[:, rl == j].sum(axis=1) for j in range(n_lineages)], axis=-1)
    obs = np.bincount(rl, weights=inputs.arrays["row_recovered"], minlength=n_lineages).astype(np.int64)

    chain_draw = ("chain", "draw")
    coords = {"chain": post["chain"].to_numpy(), "draw": post["draw"].to_numpy()}
    lineage = {dims.LINEAGE: inputs.coords[dims.LINEAGE]}
    predictive = xr.Dataset({"recovered_count": (chain_draw + (dims.LINEAGE,), rep.reshape(n_chain, n_draw, -1))},
                            coords={**coords, **lineage})
    observed = xr.Dataset(
        {
            "recovered_count": ((dims.LINEAGE,), obs),
            "at_risk": ((dims.LINEAGE,), np.bincount(rl, minlength=n_lineages).astype(np.int64)),
        },
        coords=lineage,
    )
    log_lik = xr.Dataset(
        {"recovery": (chain_draw + (dims.ROW,), rows["loglik"].reshape(n_chain, n_draw, -1))},
        coords={**coords, dims.ROW: inputs.coords[dims.ROW]},
    )
    replace_groups(idata, posterior_predictive=predictive, observed_data=observed, log_likelihood=log_lik)


def quantities(spec: ModelSpec) -> list[Quantity]:
    """Reported quantities, in order; variables absent from a fit (no covariates, no cure) are skipped."""
    per = ", {lineage}" if spec.per_lineage_effects else ""
    out = [Quantity("median_days", "Median days to recovery, {lineage}", "days")]
    if spec.cure:
        out.append(Quantity("cure_fraction", "Never recovers (cure fraction), {lineage}", "probability"))
    out += [
        Quantity("recovered_by", "P(recovered by day {day}), {lineage}", "probability"),
        Quantity("time_ratio", "Time ratio, {covariate}" + per, "ratio"),
    ]
    if spec.cure:
        out.append(Quantity("cure_odds_ratio", "Odds ratio of recovery, {covariate}" + per, "ratio"))
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
    """Posterior probability that each lineage has the longest median time to recovery."""
    median = idata.posterior["median_days"]
    values = median.to_numpy().reshape(-1, median.sizes[dims.LINEAGE])
    slowest = values.argmax(axis=1)
    names = [str(v) for v in median[dims.LINEAGE].to_numpy()]
    return [(f"P({name} is the slowest lineage to recover)", float((slowest == j).mean())) for j, name in enumerate(names)]
