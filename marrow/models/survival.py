"""Overall survival: Weibull (default) or exponential accelerated failure time model on followup_days/died.

Times are in the fit's unit (`spec.time_unit`: days, weeks or months; `followup_days` holds times in
that unit). Covariates are centred at their mean over patients (xc_i = x_i - mean x). For patient i:
  mu_i = log_median + xc_i' beta          (log median survival in the fit's unit; exp(beta) are time ratios)
  u_i  = k (log t - mu_i),  k = exp(log_shape) (weibull) or 1 (exponential)
  log S(t) = -ln2 * exp(u_i),  log f(t) = log k - log t + log ln2 + u_i + log S(t)
Likelihood: died: log f(followup); alive: log S(followup) (right-censored). Proportional hazards
also hold: hazard ratio = exp(-k beta). Population quantities average S over the trial's patients.
"""

from __future__ import annotations

import math

import numpy as np

from marrow import dims, time_units
from marrow.data import TrialData
from marrow.models.inputs import ModelInputs, Quantity, replace_groups
from marrow.spec import DEFAULT_FAMILIES, ModelSpec

DEFAULT_TARGET_ACCEPT = 0.9
DEFAULT_FAMILY = DEFAULT_FAMILIES["survival"]
GRID_POINTS = 60
LN2 = math.log(2.0)


def family_of(spec: ModelSpec) -> str:
    return spec.resolved_family


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


def build(inputs: ModelInputs, spec: ModelSpec, priors) -> "pm.Model":
    """The PyMC graph: censored Weibull/exponential likelihood as a Potential, arrays in pm.Data."""
    import pymc as pm
    import pytensor.tensor as pt

    p = priors.for_model("survival")
    weibull = family_of(spec) == "weibull"
    has_x = bool(inputs.coords[dims.COVARIATE])
    days = np.asarray(inputs.coords[dims.DAY], dtype=np.float64)
    with pm.Model(coords=inputs.coords) as model:
        d = {name: pm.Data(name, value, dims=_data_dims(name)) for name, value in inputs.arrays.items()}
        log_median = p["log_median"].create("log_median")
        if weibull:
            log_shape = p["log_shape"].create("log_shape")
            shape = pm.Deterministic("shape", pt.exp(log_shape))
        else:
            shape = pt.constant(1.0)
        mu = log_median + pt.zeros_like(d["log_followup"])
        if has_x:
            beta = p["beta"].create("beta", dims=dims.COVARIATE)
            mu = mu + pt.dot(d["patient_x"], beta)
            pm.Deterministic("time_ratio", pt.exp(beta), dims=dims.COVARIATE)
            pm.Deterministic("hazard_ratio", pt.exp(-shape * beta), dims=dims.COVARIATE)
        u = shape * (d["log_followup"] - mu)
        log_s = -LN2 * pt.exp(u)
        log_f = pt.log(shape) - d["log_followup"] + math.log(LN2) + u + log_s
        pm.Potential("survival_loglik", pt.switch(pt.eq(d["died"], 1), log_f, log_s).sum())

        def surv(log_days):
            return pt.exp(-LN2 * pt.exp(shape * (log_days[None, :] - mu[:, None]))).mean(axis=0)

        pm.Deterministic("median_days", pt.exp(log_median))
        pm.Deterministic("survival_at", surv(pt.as_tensor(np.log(days))), dims=dims.DAY)
        pm.Deterministic("survival_curve", surv(d["grid_log_day"]), dims=dims.GRID_DAY)
        # Weibull RMST(tau) = lambda * Gamma(1 + 1/k) * P(1/k, (tau/lambda)^k), lambda = median / ln2^(1/k).
        log_scale = mu - pt.log(LN2) / shape
        x_tau = pt.exp(shape * (math.log(time_units.rmst_horizon(spec.time_unit)) - log_scale))
        rmst = pt.exp(log_scale + pt.gammaln(1.0 + 1.0 / shape)) * pt.gammainc(1.0 / shape, x_tau)
        pm.Deterministic("rmst", rmst.mean())
    return model


def _draws(post, name: str) -> np.ndarray:
    values = post[name].to_numpy()
    return values.reshape((-1,) + values.shape[2:])


def pointwise(post, inputs: ModelInputs, spec: ModelSpec) -> dict[str, np.ndarray]:
    """(sample, patient) log-likelihood, location and shape from posterior draws."""
    a = inputs.arrays
    mu = _draws(post, "log_median")[:, None] + np.zeros((1, len(a["died"])))
    if a["patient_x"].shape[1]:
        mu = mu + np.einsum("pk,sk->sp", a["patient_x"], _draws(post, "beta"))
    k = _draws(post, "shape")[:, None] if family_of(spec) == "weibull" else np.ones((mu.shape[0], 1))
    with np.errstate(over="ignore", under="ignore"):
        u = k * (a["log_followup"][None, :] - mu)
        log_s = -LN2 * np.exp(np.minimum(u, 700.0))
        log_f = np.log(k) - a["log_followup"][None, :] + math.log(LN2) + u + log_s
    return {"loglik": np.where(a["died"][None, :] == 1, log_f, log_s), "mu": mu, "shape": k}


def augment(idata, inputs: ModelInputs, spec: ModelSpec, rng: np.random.Generator) -> None:
    """Add per-patient log-likelihood and replicated numbers of deaths within follow-up to `idata`."""
    import xarray as xr

    post = idata.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    rows = pointwise(post, inputs, spec)
    v = rng.uniform(size=rows["mu"].shape)
    with np.errstate(divide="ignore", over="ignore"):
        death_day = np.exp(rows["mu"] + np.log(-np.log(v) / LN2) / rows["shape"])
    followup = inputs.extra["followup"]
    year = time_units.one_year(spec.time_unit)
    deaths = (death_day <= followup[None, :]).sum(axis=1)
    deaths_year = (death_day <= np.minimum(followup, year)[None, :]).sum(axis=1)
    died = inputs.arrays["died"]
    chain_draw = ("chain", "draw")
    coords = {"chain": post["chain"].to_numpy(), "draw": post["draw"].to_numpy()}
    predictive = xr.Dataset(
        {"deaths": (chain_draw, deaths.reshape(n_chain, n_draw)),
         "deaths_first_year": (chain_draw, deaths_year.reshape(n_chain, n_draw))},
        coords=coords,
    )
    observed = xr.Dataset({
        "deaths": ((), int(died.sum())),
        "deaths_first_year": ((), int(((followup <= year) & (died == 1)).sum())),
    })
    log_lik = xr.Dataset(
        {"survival": (chain_draw + (dims.PATIENT,), rows["loglik"].reshape(n_chain, n_draw, -1))},
        coords={**coords, dims.PATIENT: inputs.coords[dims.PATIENT]},
    )
    replace_groups(idata, posterior_predictive=predictive, observed_data=observed, log_likelihood=log_lik)


def quantities(spec: ModelSpec) -> list[Quantity]:
    """Reported quantities; absent variables (no covariates, exponential shape) are skipped. Times are
    in the fit's unit (the variable names keep `days` for every unit)."""
    unit, one = spec.time_unit, time_units.SINGULAR[spec.time_unit]
    return [
        Quantity("survival_at", f"Overall survival at {one} {{day}}", "probability"),
        Quantity("rmst", f"Restricted mean survival to {one} {time_units.rmst_horizon(unit):g} ({unit})", unit),
        Quantity("median_days", f"Median survival ({unit}), trial-average patient", unit),
        Quantity("time_ratio", "Time ratio, {covariate}", "ratio"),
        Quantity("hazard_ratio", "Hazard ratio of death, {covariate}", "ratio"),
        Quantity("shape", "Weibull shape", "ratio"),
    ]


def probabilities(idata, spec: ModelSpec) -> list[tuple[str, float]]:
    """Posterior probability that 12-month overall survival exceeds 80% (a common benchmark); none when
    the fit's horizons leave out 12 months."""
    at = idata.posterior["survival_at"]
    year = [t for t in at[dims.DAY].to_numpy() if time_units.same_time(t, time_units.one_year(spec.time_unit))]
    if not year:
        return []
    values = at.sel({dims.DAY: year[0]}).to_numpy()
    return [("P(12-month overall survival > 0.8)", float((values > 0.8).mean()))]
