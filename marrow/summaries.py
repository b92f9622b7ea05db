"""Labelled posterior summaries of the quantities a model reports, and (`all_parameters`) of every
model parameter on its own scale.

Numbers come from ArviZ (`az.summary`, kind "stats") with the interval width and kind passed
explicitly: the median and equal-tailed interval from `stat_focus="median"`, the mean, sd and HDI
from `stat_focus="mean"`. Convergence columns come from `marrow.convergence` (ArviZ's estimators).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from marrow import convergence, dims
from marrow.fits.fit import Fit
from marrow.models import Quantity, module_for

PROB = 0.95
MAX_GROUPS = 16  # covariate groups listed with their own median; more (continuous covariates) are not

# Every model parameter on its own scale (log-odds, log days, sd), per model. Variables absent from a
# fit (no covariates, no cure, exponential shape) are skipped. Derived rows (uncentred intercepts,
# medians per covariate group) are added by `_derived`.
PARAMETERS: dict[str, list[Quantity]] = {
    "response": [
        Quantity("intercept", "Intercept (log-odds, covariates uncentred)", "log-odds"),
        Quantity("beta", "Coefficient (log-odds), {covariate}", "log-odds"),
        Quantity("center_sd", "Center sd (log-odds)", "sd"),
        Quantity("center_effect", "Center effect (log-odds), {center}", "log-odds"),
        Quantity("cr_gap", "CR gap (log-odds)", "log-odds"),
    ],
    "recovery": [
        Quantity("log_median_mu", "Latency: mean log median over lineages", "log days"),
        Quantity("log_median_sd", "Latency: sd of log median over lineages", "sd"),
        Quantity("log_median", "Latency: log median (log days), {lineage}", "log days"),
        Quantity("log_shape_mu", "Latency: mean log shape over lineages", "log"),
        Quantity("log_shape_sd", "Latency: sd of log shape over lineages", "sd"),
        Quantity("log_shape", "Latency: log shape, {lineage}", "log"),
        Quantity("shape", "Latency: shape k, {lineage}", "ratio"),
        Quantity("time_beta", "Latency: log time ratio, {covariate}", "log"),
        Quantity("cure_intercept_mu", "Cure: mean recovery logit over lineages", "log-odds"),
        Quantity("cure_intercept_sd", "Cure: sd of recovery logit over lineages", "sd"),
        Quantity("cure_intercept", "Cure: recovery logit, {lineage}", "log-odds"),
        Quantity("cure_center_sd", "Cure: center sd (log-odds of recovery)", "sd"),
        Quantity("cure_center_effect", "Cure: center effect (log-odds of recovery), {center}", "log-odds"),
        Quantity("cure_beta", "Cure: coefficient (log-odds of recovery), {covariate}", "log-odds"),
        Quantity("frailty_sd", "Patient frailty sd (log latency)", "sd"),
    ],
    "survival": [
        Quantity("log_median", "Log median survival (log days)", "log days"),
        Quantity("log_shape", "Log Weibull shape", "log"),  # "Weibull": the fit's family (`_parameters`)
        Quantity("shape", "Weibull shape k", "ratio"),
        Quantity("beta", "Log time ratio, {covariate}", "log"),
    ],
    "safety": [
        Quantity("intercept", "Intercept (log-odds)", "log-odds"),
        Quantity("center_sd", "Center sd (log-odds)", "sd"),
        Quantity("center_effect", "Center effect (log-odds), {center}", "log-odds"),
    ],
}
# Posterior variables `all_parameters` leaves out, and why (docs/models.md says the same).
NOT_LISTED_DIMS = {
    dims.PATIENT: "one value per patient",
    dims.ROW: "one value per row",
    dims.GRID_DAY: "a curve for plots",
}
NOT_LISTED_SUFFIX = ("_z",)  # standardised non-centred draws; their scaled effects are listed


def quantity_labels(quantity: Quantity, da) -> list[tuple[dict, str]]:
    """Expand a quantity over its non-sample dims into (selection, label) pairs."""
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    if not extra:
        return [({}, quantity.label)]
    index = pd.MultiIndex.from_product([da[d].to_numpy() for d in extra], names=extra)
    out = []
    for values in index:
        values = values if isinstance(values, tuple) else (values,)
        selection = dict(zip(extra, values, strict=True))
        label = quantity.label.format(**{k: str(v) for k, v in selection.items()})
        if "{" not in quantity.label or len(extra) > quantity.label.count("{"):
            unnamed = [str(v) for d, v in selection.items() if "{" + d + "}" not in quantity.label]
            if unnamed:
                label += " [" + ", ".join(unnamed) + "]"
        out.append((selection, label))
    return out


def _arviz_stats(ds, hdi: bool, prob: float) -> dict[str, object]:
    """median, mean, sd, lower, upper of every element of `ds`, from az.summary (xarray form)."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's FutureWarnings about its own next version
        central = az.summary(ds, kind="stats", stat_focus="median", hdi_prob=prob, fmt="xarray", round_to="none")
        moments = az.summary(ds, kind="stats", stat_focus="mean", hdi_prob=prob, fmt="xarray", round_to="none")
    interval = moments if hdi else central  # metrics: (mean, sd, hdi lo, hdi hi) / (median, mad, eti lo, eti hi)
    metric = interval["metric"].to_numpy()
    return {
        "median": central.sel(metric="median"),
        "mean": moments.sel(metric="mean"),
        "sd": moments.sel(metric="sd"),
        "lower": interval.sel(metric=metric[2]),
        "upper": interval.sel(metric=metric[3]),
    }


def _convergence(ds) -> dict[str, object]:
    """R-hat, ESS and MCSE for every element of every variable of a (chain, draw, ...) dataset."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "mcse_mean": az.mcse(ds, method="mean"),
            "ess_bulk": convergence.per_variable(ds, convergence.ess_bulk),
            "ess_tail": convergence.per_variable(ds, convergence.ess_tail),
            "r_hat": convergence.per_variable(ds, convergence.rhat),
        }


def _rows(ds, quantities: list[Quantity], hdi: bool, prob: float, kind: str) -> list[dict]:
    if not quantities:
        return []
    ds = ds[[q.var for q in quantities]]
    stats = {**_arviz_stats(ds, hdi, prob), **_convergence(ds)}
    rows = []
    for quantity in quantities:
        for selection, label in quantity_labels(quantity, ds[quantity.var]):
            values = {name: float(table[quantity.var].sel(selection)) for name, table in stats.items()}
            rows.append(
                {
                    "quantity": label,
                    "variable": quantity.var,
                    "kind": kind,
                    "element": ", ".join(str(v) for v in selection.values()),
                    "scale": quantity.scale,
                    **{
                        k: values[k]
                        for k in (
                            "median",
                            "mean",
                            "sd",
                            "lower",
                            "upper",
                            "mcse_mean",
                            "ess_bulk",
                            "ess_tail",
                            "r_hat",
                        )
                    },
                }
            )
    return rows


def posterior_summary(fit: Fit, hdi: bool = False, prob: float = PROB, all_parameters: bool = False) -> pd.DataFrame:
    """One row per reported scalar: quantity (label), variable, kind, element, scale, median, mean, sd,
    interval (lower, upper), MCSE, ESS, R-hat.

    With `all_parameters`, rows of kind "parameter" follow the reported quantities: every model
    parameter on its own scale (`PARAMETERS`), derived ones (uncentred intercepts, latency or
    survival medians per covariate group, safety center effects) and any other posterior variable
    not excluded by `NOT_LISTED_DIMS`/`NOT_LISTED_SUFFIX`; `attrs["notes"]` says what was left out.
    """
    spec = fit.spec
    posterior = fit.idata.posterior
    present = [q for q in module_for(spec.model).quantities(spec) if q.var in posterior]
    rows = _rows(posterior, present, hdi, prob, "quantity")
    notes: list[str] = []
    if all_parameters:
        derived, notes = _derived(fit)
        ds = posterior.assign(derived) if derived else posterior
        parameters = [q for q in _parameters(spec) if q.var in ds]
        parameters += [
            _derived_quantity(name, da) for name, da in derived.items() if name not in {q.var for q in parameters}
        ]
        parameters = [_in_unit(q, spec.time_unit) for q in parameters]
        listed = {q.var for q in present} | {q.var for q in parameters}
        # Anything else sampled (a parameter added to a model and not yet labelled here) is still listed.
        parameters += [
            Quantity(name, name, "") for name in posterior.data_vars if name not in listed and _listed(posterior[name])
        ]
        # The parameter table is complete on its own: intercept and sds appear there even when reported above.
        rows += _rows(ds, parameters, hdi, prob, "parameter")
        left_out = sorted(name for name in posterior.data_vars if not _listed(posterior[name]))
        if left_out:
            notes.append(
                "not listed: " + ", ".join(left_out) + " (standardised draws, or one value per patient, "
                "row or curve point)"
            )
    table = pd.DataFrame(rows)
    table.attrs["interval"] = f"{prob:.0%} {'HDI' if hdi else 'equal-tailed'}"
    table.attrs["notes"] = notes
    return table


def _parameters(spec) -> list[Quantity]:
    """`PARAMETERS` of the fit's model; survival shape labels name the fit's family ('Log-logistic shape k')."""
    quantities = PARAMETERS.get(spec.model, [])
    if spec.model != "survival":
        return quantities
    from marrow.models.survival import FAMILY_NAMES, family_of, shape_label

    family = family_of(spec)
    labels = {
        "log_shape": f"Log {FAMILY_NAMES[family]} shape" + (" (log k = -log sigma)" if family == "lognormal" else ""),
        "shape": shape_label(family) + ("" if family == "lognormal" else " k"),
    }
    return [Quantity(q.var, labels.get(q.var, q.label), q.scale) for q in quantities]


def _in_unit(quantity: Quantity, unit: str) -> Quantity:
    """`quantity` with its label and scale in the fit's time unit (`PARAMETERS` are written in days)."""
    if unit == "days":
        return quantity
    label = quantity.label.replace("log days", f"log {unit}").replace("Median days", f"Median {unit}")
    scale = {"log days": f"log {unit}", "days": unit}.get(quantity.scale, quantity.scale)
    return Quantity(quantity.var, label, scale)


def _listed(da) -> bool:
    return not da.name.endswith(NOT_LISTED_SUFFIX) and not any(d in NOT_LISTED_DIMS for d in da.dims)


# --- derived parameters ---------------------------------------------------------------------------

_DERIVED_LABELS = {
    "log_median_uncentred": ("Log median at x = 0 (uncentred){lineage}", "log days"),
    "cure_intercept_uncentred": ("Cure: recovery logit at x = 0 (uncentred){lineage}", "log-odds"),
    "group_median_days": ("Median days, {lineage_group}", "days"),
    "center_effect": ("Center effect (log-odds), {center}", "log-odds"),
}


def _derived_quantity(name: str, da) -> Quantity:
    label, scale = _DERIVED_LABELS[name]
    if dims.LINEAGE in da.dims and name in ("log_median_uncentred", "group_median_days"):
        label = "Latency: " + label[0].lower() + label[1:]
    label = label.replace("{lineage}", ", {lineage}" if dims.LINEAGE in da.dims else "")
    label = label.replace("{lineage_group}", "{lineage}, {group}" if dims.LINEAGE in da.dims else "{group}")
    return Quantity(name, label, scale)


def covariate_means(fit: Fit) -> dict[str, float] | None:
    """The covariate means the model centred at: recorded in the fit's provenance, else computed from
    the patients file the fit records (when it is still there with the same SHA-256); None otherwise."""
    covariates = list(fit.spec.covariates)
    if not covariates:
        return {}
    if "covariate_means" in fit.provenance:
        means = json.loads(fit.provenance["covariate_means"])
        if set(covariates) <= set(means):
            return {c: float(means[c]) for c in covariates}
    from marrow.data.load import coerce_covariate, file_sha256

    for source in fit.data_sources:
        path = Path(source["path"])
        if source["role"] != "patients" or not path.exists() or file_sha256(path) != source["sha256"]:
            continue
        table = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path, dtype=str)
        if set(covariates) <= set(table.columns):
            return {c: float(coerce_covariate(table[c]).astype(float).mean()) for c in covariates}
    return None


def _draws(posterior, name: str) -> np.ndarray:
    return posterior[name].to_numpy()


def _derived(fit: Fit) -> tuple[dict, list[str]]:
    """Derived parameter DataArrays (chain, draw, ...) and notes on what could not be derived."""
    import xarray as xr

    spec, posterior = fit.spec, fit.idata.posterior
    out: dict = {}
    notes: list[str] = []
    chain_draw = ("chain", "draw")
    if spec.model == "safety" and "center_z" in posterior and "center_effect" not in posterior:
        out["center_effect"] = posterior["center_sd"] * posterior["center_z"]
    centred = {
        "recovery": (("log_median", "time_beta"), ("cure_intercept", "cure_beta")),
        "survival": (("log_median", "beta"),),
    }.get(spec.model, ())
    if not spec.covariates or not centred:
        return out, notes
    means = covariate_means(fit)
    if means is None:
        notes.append(
            "uncentred intercepts and medians per covariate group need the covariate means: "
            "the fit does not record them and its patients file is not available"
        )
        return out, notes
    x_mean = np.array([means[c] for c in spec.covariates])
    per_lineage = spec.model == "recovery" and spec.per_lineage_effects
    for base, beta in centred:
        if base not in posterior or beta not in posterior:
            continue
        b, intercept = _draws(posterior, beta), _draws(posterior, base)
        shift = np.einsum("...k,k->...", b, x_mean)  # x_mean' beta: (chain, draw[, lineage])
        values = intercept - (shift if shift.ndim == intercept.ndim else shift[..., None])
        name = "log_median_uncentred" if base == "log_median" else "cure_intercept_uncentred"
        out[name] = xr.DataArray(values, dims=posterior[base].dims, coords=posterior[base].coords)
    groups = _covariate_groups(fit, x_mean)
    if groups is None:
        notes.append(f"medians per covariate group not listed (more than {MAX_GROUPS} distinct covariate groups)")
    elif len(groups[0]):
        labels, x_centred = groups
        base = _draws(posterior, "log_median")
        b = _draws(posterior, "time_beta" if spec.model == "recovery" else "beta")
        if spec.model == "recovery":
            effect = (
                np.einsum("gk,cdlk->cdgl", x_centred, b)
                if per_lineage
                else np.einsum("gk,cdk->cdg", x_centred, b)[..., None]
            )
            values = np.exp(base[:, :, None, :] + effect)
            coords = {"group": labels, dims.LINEAGE: posterior[dims.LINEAGE].to_numpy()}
            out["group_median_days"] = xr.DataArray(
                values,
                dims=chain_draw + ("group", dims.LINEAGE),
                coords={**coords, "chain": posterior["chain"], "draw": posterior["draw"]},
            )
        else:
            values = np.exp(base[:, :, None] + np.einsum("gk,cdk->cdg", x_centred, b))
            out["group_median_days"] = xr.DataArray(
                values,
                dims=chain_draw + ("group",),
                coords={"group": labels, "chain": posterior["chain"], "draw": posterior["draw"]},
            )
        if spec.model == "recovery":
            notes.append("medians per covariate group are latency medians (among those who recover)")
    notes.insert(0, "intercepts and log medians are at the covariate means (centred), except those 'at x = 0'")
    return out, notes


def _covariate_groups(fit: Fit, x_mean: np.ndarray) -> tuple[list[str], np.ndarray] | None:
    """(labels, centred covariate rows) of the distinct covariate groups of the fitted data, from its
    constant_data; None when there are more than MAX_GROUPS; empty when the data are not stored."""
    idata = fit.idata
    name = {"recovery": "pattern_x", "survival": "patient_x"}[fit.spec.model]
    if "constant_data" not in idata.groups() or name not in idata.constant_data:
        return [], np.zeros((0, len(x_mean)))
    rows = np.unique(np.round(idata.constant_data[name].to_numpy().reshape(-1, len(x_mean)), 12), axis=0)
    if len(rows) > MAX_GROUPS:
        return None
    raw = np.round(rows + x_mean, 9) + 0.0  # centring and back leaves ~1e-13 of rounding (and -0)
    labels = [", ".join(f"{c}={v:.6g}" for c, v in zip(fit.spec.covariates, row, strict=True)) for row in raw]
    return labels, rows


def posterior_probabilities(fit: Fit) -> list[tuple[str, float]]:
    """Posterior probabilities of the statements the model reports, e.g. P(rate > threshold)."""
    return module_for(fit.spec.model).probabilities(fit.idata, fit.spec)
