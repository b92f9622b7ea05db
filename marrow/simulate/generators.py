"""Simulators for simulation-based calibration: parameters from a prior set, data of the design's shapes.

One generator per model family, pure numpy, written from the model's definition in `marrow/models/`:
- `template`: the design's `ModelInputs` with fixed shapes (what the refitter builds and compiles once);
- `draw(priors, rng)`: one draw of every free parameter from `priors` (names as in the posterior);
- `simulate(params, rng)`: a dataset from those parameters on the design, as `ModelInputs` of the
  template's shapes (only the outcome arrays change);
- `quantities(params, inputs)`: the ranked quantities (top-level parameters and the log-likelihood of
  `inputs`) for parameters with a leading sample axis; the same function serves the truth (one sample)
  and the posterior draws, so truth and draws are always compared on the same definition.

Designs: response and safety keep the model's cells (center, covariate pattern); survival keeps one
row per patient, censored at the patient's follow-up; recovery keeps one cell per (patient, lineage)
row with 0/1 weights (events, censored rows), so every simulated trial has the same array shapes.
Recovery rows are censored at the patient's `followup_days` when the table has it, otherwise at the
patient's last recorded day; simulated times are exact (no visit intervals).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.special import expit, gammaln, log_expit

from marrow import dims
from marrow.data import TrialData
from marrow.errors import UsageError
from marrow.models import latency, levels, module_for
from marrow.models.inputs import ModelInputs
from marrow.spec import ModelSpec

Params = dict[str, np.ndarray]


def _draw(prior, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """Draws of one prior (`marrow.priors.Prior`) as a float array of shape () or (size,)."""
    value = prior.scipy().rvs(size=size, random_state=rng)
    return np.asarray(value, dtype=np.float64)


def _labelled(name: str, values: np.ndarray, labels: list[str]) -> dict[str, np.ndarray]:
    """{name[label]: values[:, j]} for a (sample, k) array."""
    return {f"{name}[{label}]": values[:, j] for j, label in enumerate(labels)}


def _binomial_logpmf(k: np.ndarray, n: np.ndarray, log_p: np.ndarray, log_1mp: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + k * log_p + (n - k) * log_1mp


# --- response -------------------------------------------------------------------------------------


def latency_family(spec: ModelSpec) -> str:
    """The latency family `spec` fits; every model with event times has a default (its descriptor's)."""
    family = spec.resolved_family
    if family is None:
        raise ValueError(f"{spec.model} has no latency family")
    return family


@dataclass(frozen=True)
class ResponseGenerator:
    """Binary: responders_j ~ Binomial(n_j, logistic(eta_j)); ordinal: Multinomial(n_j, (1 - p, p - p_cr, p_cr))
    with eta_j = intercept + center_sd * center_z[c_j] + x_j' beta and p_cr = logistic(eta_j - cr_gap)."""

    spec: ModelSpec
    template: ModelInputs

    @property
    def centers(self) -> bool:
        return levels.kept(dims.CENTER, self.template.dropped)

    def draw(self, priors, rng: np.random.Generator) -> Params:
        p = priors.for_model("response")
        out = {"intercept": _draw(p["intercept"], rng)}
        if self.centers:
            out["center_sd"] = _draw(p["center_sd"], rng)
            out["center_z"] = rng.standard_normal(len(self.template.coords[dims.CENTER]))
        if self.template.coords[dims.COVARIATE]:
            out["beta"] = _draw(p["beta"], rng, len(self.template.coords[dims.COVARIATE]))
        if self.spec.outcome == "ordinal":
            out["cr_gap"] = _draw(p["cr_gap"], rng)
        return out

    def _eta(self, params: Params) -> np.ndarray:
        """(sample, cell) linear predictor."""
        a = self.template.arrays
        eta = params["intercept"][:, None] + np.zeros(len(a["cell_n"]))
        if "center_sd" in params:
            eta = eta + (params["center_sd"][:, None] * params["center_z"])[:, a["cell_center"]]
        if "beta" in params:
            eta = eta + params["beta"] @ a["cell_x"].T
        return eta

    def simulate(self, params: Params, rng: np.random.Generator) -> ModelInputs:
        eta = self._eta(batch(params))[0]
        n = self.template.arrays["cell_n"]
        p = expit(eta)
        if self.spec.outcome == "ordinal":
            p_cr = expit(eta - params["cr_gap"])
            probs = np.clip(np.column_stack([1.0 - p, p - p_cr, p_cr]), 0.0, 1.0)
            counts = rng.multinomial(n, probs / probs.sum(axis=1, keepdims=True))
            return _with_arrays(self.template, cell_counts=counts.astype(np.int64))
        return _with_arrays(self.template, cell_responders=rng.binomial(n, p).astype(np.int64))

    def quantities(self, params: Params, inputs: ModelInputs) -> dict[str, np.ndarray]:
        a = inputs.arrays
        eta = self._eta(params)
        out = {"intercept": params["intercept"]}
        if "center_sd" in params:
            out["center_sd"] = params["center_sd"]
        if "beta" in params:
            out.update(_labelled("beta", params["beta"], self.template.coords[dims.COVARIATE]))
        out["response_rate"] = expit(eta) @ a["cell_weight"]
        if self.spec.outcome == "ordinal":
            out["cr_gap"] = params["cr_gap"]
            log_probs = np.stack(
                [
                    log_expit(-eta),
                    _log_diff_expit(eta, eta - params["cr_gap"][:, None]),
                    log_expit(eta - params["cr_gap"][:, None]),
                ],
                axis=-1,
            )
            counts = a["cell_counts"]
            constant = gammaln(a["cell_n"] + 1).sum() - gammaln(counts + 1).sum()
            out["loglik"] = (counts * log_probs).sum(axis=(1, 2)) + constant
        else:
            k, n = a["cell_responders"], a["cell_n"]
            out["loglik"] = _binomial_logpmf(k, n, log_expit(eta), log_expit(-eta)).sum(axis=1)
        return out


def _log_diff_expit(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(logistic(a) - logistic(b)) for a >= b, stably."""
    with np.errstate(divide="ignore"):
        return log_expit(a) + np.log(-np.expm1(log_expit(b) - log_expit(a)))


# --- safety ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SafetyGenerator:
    """beta-binomial: events_c ~ Binomial(n_c, ae_rate); hierarchical: Binomial(n_c, logistic(intercept +
    center_sd * center_z_c)), ae_rate = sum_c n_c p_c / n."""

    spec: ModelSpec
    template: ModelInputs

    @property
    def hierarchical(self) -> bool:
        return self.spec.resolved_family == "hierarchical"

    def draw(self, priors, rng: np.random.Generator) -> Params:
        p = priors.for_model("safety")
        if not self.hierarchical:
            return {"ae_rate": _draw(p["rate"], rng)}
        out = {"intercept": _draw(p["intercept"], rng)}
        if levels.kept(dims.CENTER, self.template.dropped):
            out["center_sd"] = _draw(p["center_sd"], rng)
            out["center_z"] = rng.standard_normal(len(self.template.coords[dims.CENTER]))
        return out

    def _logit(self, params: Params) -> np.ndarray:
        """(sample, center) log-odds of an event."""
        n_centers = len(self.template.arrays["center_n"])
        if not self.hierarchical:
            rate = params["ae_rate"][:, None] + np.zeros(n_centers)
            return np.log(rate) - np.log1p(-rate)
        eta = params["intercept"][:, None] + np.zeros(n_centers)
        if "center_sd" in params:
            eta = eta + params["center_sd"][:, None] * params["center_z"]
        return eta

    def simulate(self, params: Params, rng: np.random.Generator) -> ModelInputs:
        p = expit(self._logit(batch(params))[0])
        events = rng.binomial(self.template.arrays["center_n"], p).astype(np.int64)
        return _with_arrays(self.template, center_events=events)

    def quantities(self, params: Params, inputs: ModelInputs) -> dict[str, np.ndarray]:
        n, k = inputs.arrays["center_n"], inputs.arrays["center_events"]
        eta = self._logit(params)
        out: dict[str, np.ndarray] = {}
        if self.hierarchical:
            out["intercept"] = params["intercept"]
            if "center_sd" in params:
                out["center_sd"] = params["center_sd"]
            out["ae_rate"] = expit(eta) @ n / n.sum()
        else:
            out["ae_rate"] = params["ae_rate"]
        out["loglik"] = _binomial_logpmf(k, n, log_expit(eta), log_expit(-eta)).sum(axis=1)
        return out


# --- survival -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SurvivalGenerator:
    """T_i with log S(t) of the family at mu_i = log_median + xc_i' beta, shape exp(log_shape) (1 for the
    exponential); observed min(T_i, C_i), died = T_i <= C_i, with C_i the patient's follow-up in the design."""

    spec: ModelSpec
    template: ModelInputs

    @property
    def family(self) -> str:
        return latency_family(self.spec)

    @property
    def kind(self) -> str:
        return "weibull" if self.family == "exponential" else self.family

    def draw(self, priors, rng: np.random.Generator) -> Params:
        p = priors.for_model("survival")
        out = {"log_median": _draw(p["log_median"], rng)}
        if self.family != "exponential":
            out["log_shape"] = _draw(p["log_shape"], rng)
        if self.template.coords[dims.COVARIATE]:
            out["beta"] = _draw(p["beta"], rng, len(self.template.coords[dims.COVARIATE]))
        return out

    def _location(self, params: Params) -> tuple[np.ndarray, np.ndarray]:
        """(sample, patient) location and (sample, 1) shape."""
        x = self.template.arrays["patient_x"]
        mu = params["log_median"][:, None] + np.zeros(len(x))
        if "beta" in params:
            mu = mu + params["beta"] @ x.T
        k = np.exp(params["log_shape"])[:, None] if "log_shape" in params else np.ones((len(mu), 1))
        return mu, k

    def simulate(self, params: Params, rng: np.random.Generator) -> ModelInputs:
        mu, k = self._location(batch(params))
        log_u = np.log(rng.uniform(size=mu.shape[1]))
        log_t = latency.log_time_at_log_survival(self.kind, log_u, mu[0], k[0])
        log_c = np.log(self.template.extra["followup"])
        died = (log_t <= log_c).astype(np.int64)
        return _with_arrays(self.template, log_followup=np.where(died == 1, log_t, log_c), died=died)

    def quantities(self, params: Params, inputs: ModelInputs) -> dict[str, np.ndarray]:
        a = inputs.arrays
        mu, k = self._location(params)
        with np.errstate(over="ignore", under="ignore"):
            log_f, log_s = latency.log_density(self.kind, a["log_followup"][None, :], mu, k)
        out = {"log_median": params["log_median"]}
        if "log_shape" in params:
            out["log_shape"] = params["log_shape"]
        if "beta" in params:
            out.update(_labelled("beta", params["beta"], self.template.coords[dims.COVARIATE]))
        out["loglik"] = np.where(a["died"][None, :] == 1, log_f, log_s).sum(axis=1)
        return out


# --- recovery -------------------------------------------------------------------------------------

_LINEAGE_PARAMETERS = ("log_median", "log_shape", "cure_intercept")


@dataclass(frozen=True)
class RecoveryGenerator:
    """Per (patient i, lineage l) row: ever recovers with pi = logistic(a_l + u_c(i) + xc_i' gamma) (cure model),
    then T from the latency family at mu = m_l + xc_i' beta, shape k_l; recovered on day T when T <= C_i,
    otherwise censored at C_i. Lineage parameters are hyper mean + sd * z (non-centred), as in the model."""

    spec: ModelSpec
    template: ModelInputs

    @property
    def pooled(self) -> bool:
        return len(self.template.coords[dims.LINEAGE]) > 1

    @property
    def center_effect(self) -> bool:
        return bool(self.spec.cure) and len(self.template.coords[dims.CENTER]) > 1

    def draw(self, priors, rng: np.random.Generator) -> Params:
        p = priors.for_model("recovery")
        n_lineages = len(self.template.coords[dims.LINEAGE])
        names = _LINEAGE_PARAMETERS if self.spec.cure else _LINEAGE_PARAMETERS[:2]
        out: Params = {}
        for name in names:
            out[f"{name}_mu"] = _draw(p[f"{name}_mu"], rng)
            if self.pooled:
                out[f"{name}_sd"] = _draw(p[f"{name}_sd"], rng)
                out[f"{name}_z"] = rng.standard_normal(n_lineages)
        n_covariates = len(self.template.coords[dims.COVARIATE])
        if n_covariates:
            out["time_beta"] = _draw(p["time_beta"], rng, n_covariates)
        if self.center_effect:
            out["cure_center_sd"] = _draw(p["cure_center_sd"], rng)
            out["cure_center_z"] = rng.standard_normal(len(self.template.coords[dims.CENTER]))
        if self.spec.cure and n_covariates:
            out["cure_beta"] = _draw(p["cure_beta"], rng, n_covariates)
        return out

    @staticmethod
    def _lineage(params: Params, name: str) -> np.ndarray:
        """(sample, lineage) value of a lineage parameter: mu + sd * z, or mu without pooling."""
        if f"{name}_sd" in params:
            return params[f"{name}_mu"][:, None] + params[f"{name}_sd"][:, None] * params[f"{name}_z"]
        return params[f"{name}_mu"][:, None]

    def _rows(self, params: Params) -> dict[str, np.ndarray]:
        """(sample, row) latency location, shape and (cure) logit of ever recovering."""
        a, e = self.template.arrays, self.template.extra
        n_lineages = len(self.template.coords[dims.LINEAGE])
        lineage, pattern = e["row_lineage"], e["row_loc"] // n_lineages
        x = a["pattern_x"][pattern]
        mu = self._lineage(params, "log_median")[:, lineage]
        if "time_beta" in params:
            mu = mu + params["time_beta"] @ x.T
        out = {"mu": mu, "k": np.exp(self._lineage(params, "log_shape"))[:, lineage]}
        if self.spec.cure:
            eta = self._lineage(params, "cure_intercept")[:, lineage]
            if "cure_center_sd" in params:
                center = a["group_center"][e["row_cure"] // n_lineages]
                eta = eta + (params["cure_center_sd"][:, None] * params["cure_center_z"])[:, center]
            if "cure_beta" in params:
                eta = eta + params["cure_beta"] @ x.T
            out["eta"] = eta
        return out

    def simulate(self, params: Params, rng: np.random.Generator) -> ModelInputs:
        rows = {k: v[0] for k, v in self._rows(batch(params)).items()}
        n_rows = len(rows["mu"])
        uniform = np.log(rng.uniform(size=n_rows))
        log_t = latency.log_time_at_log_survival(latency_family(self.spec), uniform, rows["mu"], rows["k"])
        recovers = rng.uniform(size=n_rows) < expit(rows["eta"]) if self.spec.cure else np.ones(n_rows, bool)
        log_c = np.log(self.template.extra["row_censor_day"])
        recovered = (recovers & (log_t <= log_c)).astype(np.int64)
        return recovery_inputs(self.template, np.where(recovered == 1, log_t, log_c), recovered, self.spec)

    def quantities(self, params: Params, inputs: ModelInputs) -> dict[str, np.ndarray]:
        a = inputs.arrays
        rows = self._rows(params)
        log_day = a["event_log_day"][None, :]
        with np.errstate(over="ignore", under="ignore", divide="ignore"):
            log_f, log_s = latency.log_density(latency_family(self.spec), log_day, rows["mu"], rows["k"])
            event = a["event_weight"][None, :] == 1
            if self.spec.cure:
                log_pi, log_1m_pi = log_expit(rows["eta"]), log_expit(-rows["eta"])
                loglik = np.where(event, log_pi + log_f, np.logaddexp(log_1m_pi, log_pi + log_s))
            else:
                loglik = np.where(event, log_f, log_s)
        out = {}
        names = _LINEAGE_PARAMETERS if self.spec.cure else _LINEAGE_PARAMETERS[:2]
        for name in names:
            out[f"{name}_mu"] = params[f"{name}_mu"]
            if f"{name}_sd" in params:
                out[f"{name}_sd"] = params[f"{name}_sd"]
        if self.pooled:
            out.update(_labelled("log_median", self._lineage(params, "log_median"), self.template.coords[dims.LINEAGE]))
        for name in ("time_beta", "cure_beta"):
            if name in params:
                out.update(_labelled(name, params[name], self.template.coords[dims.COVARIATE]))
        if "cure_center_sd" in params:
            out["cure_center_sd"] = params["cure_center_sd"]
        out["loglik"] = loglik.sum(axis=1)
        return out


def recovery_inputs(
    template: ModelInputs,
    log_day: np.ndarray,
    recovered: np.ndarray,
    spec: ModelSpec,
    weight: np.ndarray | None = None,
) -> ModelInputs:
    """The recovery model's arrays with one cell per (patient, lineage) row: event cells weighted by
    `recovered`, censored cells by 1 - `recovered` (a zero weight drops a term exactly), so the shapes
    never depend on the outcomes. `template` is the model's own `inputs` of the design. `weight`
    (default 1) multiplies each row's weights: 0 leaves a row out (a patient not enrolled yet)."""
    e = template.extra
    if weight is not None:
        recovered = recovered * weight
    n_rows = len(log_day)
    rows = {"loc": e["row_loc"], "lineage": e["row_lineage"], "log_day": log_day}
    arrays = {
        k: v for k, v in template.arrays.items() if not k.startswith(("event_", "censored_", "interval_", "cure_"))
    }
    for prefix in ("event", "censored"):
        arrays.update({f"{prefix}_{name}": value for name, value in rows.items()})
    arrays["event_weight"] = recovered.astype(np.float64)
    censored = (1.0 if weight is None else weight) - recovered
    if not spec.cure:
        arrays["censored_weight"] = censored
    else:
        n_lineages = len(template.coords[dims.LINEAGE])
        shape = template.arrays["group_events"].shape
        cure = e["row_cure"]
        arrays["group_events"] = np.bincount(cure, recovered, shape[0] * n_lineages).reshape(shape)
        arrays["group_censored"] = np.bincount(cure, censored, shape[0] * n_lineages).reshape(shape)
        arrays.update({"cure_censored": np.arange(n_rows), "cure_group": cure, "cure_weight": censored})
    return replace(template, arrays=arrays)


# --- construction ---------------------------------------------------------------------------------

GENERATORS = {
    "response": ResponseGenerator,
    "safety": SafetyGenerator,
    "survival": SurvivalGenerator,
    "recovery": RecoveryGenerator,
}


def check_supported(spec: ModelSpec) -> None:
    """Refuse options the generators do not simulate (UsageError, exit 2)."""
    if spec.model == "recovery":
        unsupported = [
            name
            for name, on in (
                ("--frailty", spec.frailty),
                ("--per-lineage-effects", spec.per_lineage_effects),
                ("--competing-death", spec.competing_death),
            )
            if on
        ]
        if unsupported:
            raise UsageError(f"marrow sbc does not simulate recovery fits with {', '.join(unsupported)} yet")


def generator_for(spec: ModelSpec, design: TrialData) -> Any:
    """The model's generator on `design` (its centers, sizes, covariates, lineages and follow-up)."""
    check_supported(spec)
    # Non-centred at every level: the generators draw (and SBC ranks) the standardised effects `*_z`.
    inputs = replace(module_for(spec.model).inputs(design, spec), parameterisation={})
    if spec.model == "recovery":
        inputs = _recovery_template(inputs, design, spec)
    return GENERATORS[spec.model](spec, inputs)


def _recovery_template(inputs: ModelInputs, design: TrialData, spec: ModelSpec) -> ModelInputs:
    """Per-row arrays of the design's own outcomes (exact days) and each row's censoring day."""
    e = inputs.extra
    day = e["row_day"]
    patient = e["row_patient"]
    censor = np.zeros(len(design.patients))
    np.maximum.at(censor, patient, day)
    if "followup_days" in design.patients.columns:
        follow = design.patients["followup_days"].to_numpy(dtype=np.float64)
        censor = np.where(np.isfinite(follow), np.maximum(follow, censor), censor)
    extra = {**e, "row_censor_day": censor[patient]}
    template = replace(inputs, extra=extra)
    return recovery_inputs(template, np.log(day), e["row_recovered"], spec)


def batch(params: Params) -> Params:
    """Parameters of one draw with a leading sample axis of length 1."""
    return {k: np.asarray(v)[None, ...] for k, v in params.items()}


def _with_arrays(template: ModelInputs, **arrays: np.ndarray) -> ModelInputs:
    return replace(template, arrays={**template.arrays, **arrays})
