"""Prior and likelihood sensitivity: power-scaling on a saved fit, and refits under other prior sets.

Power-scaling (Kallioinen, Paananen, Buerkner and Vehtari 2023, "Detecting and diagnosing prior
and likelihood sensitivity with power-scaling", Statistics and Computing 34:57; the R package
priorsense): raise the prior (or the likelihood) to a power alpha near 1,
    p_alpha(theta | y) proportional to p(theta)^alpha p(y | theta),
and see how much each posterior quantity moves. No refit: the saved draws are reweighted by
    w = p(theta)^(alpha - 1)   (prior)   or   p(y | theta)^(alpha - 1)   (likelihood),
with Pareto-smoothed importance sampling (ArviZ `psislw`). For each quantity the cumulative
Jensen-Shannon distance (CJS) between the base and the reweighted draws is computed at
alpha = 0.99 and 1.01, and the sensitivity is its derivative with respect to log2(alpha):
    (CJS(0.99) + CJS(1.01)) / (2 log2(1.01)).
Diagnosis, priorsense's rule with its threshold 0.05:
    prior >= 0.05 and likelihood >= 0.05  -> "prior-data conflict"
    prior >  0.05 and likelihood <  0.05  -> "strong prior / weak likelihood"
    otherwise                             -> "-" (nothing flagged)
The prior component is the `log_prior` group stored by `marrow fit` (the parameters of the prior
set); the likelihood component is the sum of the pointwise `log_likelihood` group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marrow.errors import UsageError

LOWER_ALPHA = 0.99
UPPER_ALPHA = 1.01
THRESHOLD = 0.05
DIAGNOSES = {
    "prior-data conflict": "the prior and the data pull this quantity in different directions; "
    "check the prior against what the data say",
    "strong prior / weak likelihood": "the prior, not the data, determines this quantity; "
    "report it as an assumption or gather more data",
    "-": "not sensitive to the prior; responds to the data as it should",
}


# ----------------------------------------------------------------------------------------------
# the pieces
def cjs_distance(draws: np.ndarray, weights: np.ndarray) -> float:
    """Cumulative Jensen-Shannon distance between the draws and the same draws weighted by `weights`.

    Normalised to [0, 1] by its upper bound, and symmetrised over x and -x (priorsense's
    `unsigned = TRUE`), as in priorsense's `cjs_dist` for weighted versions of the same draws.
    """
    draws = np.asarray(draws, dtype="float64").reshape(-1)
    weights = np.asarray(weights, dtype="float64").reshape(-1)
    if draws.size < 2 or np.ptp(draws) == 0:
        return 0.0
    return max(_cjs_one_side(draws, weights), _cjs_one_side(-draws, weights))


def _cjs_one_side(x: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(x, kind="stable")
    x, w = x[order], weights[order]
    width = np.diff(x)
    p = (np.arange(1, x.size + 1) / x.size)[:-1]
    q = (np.cumsum(w) / w.sum())[:-1]
    p_int, q_int = float(np.dot(p, width)), float(np.dot(q, width))
    mid = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        term_pq = np.where(p > 0, p * (np.log2(np.where(p > 0, p, 1)) - np.log2(np.where(mid > 0, mid, 1))), 0.0)
        term_qp = np.where(q > 0, q * (np.log2(np.where(q > 0, q, 1)) - np.log2(np.where(mid > 0, mid, 1))), 0.0)
    cjs_pq = float(np.dot(width, term_pq)) + 0.5 / math.log(2) * (q_int - p_int)
    cjs_qp = float(np.dot(width, term_qp)) + 0.5 / math.log(2) * (p_int - q_int)
    bound = p_int + q_int
    if bound <= 0:
        return 0.0
    return math.sqrt(max(0.0, cjs_pq) / bound + max(0.0, cjs_qp) / bound)


def pareto_k_threshold(n_draws: int) -> float:
    """Largest reliable Pareto k for n importance draws: min(1 - 1/log10(n), 0.7) (Vehtari et al. 2024)."""
    return min(1 - 1 / math.log10(max(n_draws, 11)), 0.7)


def powerscale_weights(log_component: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Normalised PSIS weights for power-scaling a component by `alpha`, and the Pareto k."""
    import warnings

    import arviz as az

    log_ratio = (alpha - 1.0) * np.asarray(log_component, dtype="float64").reshape(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz warns about k itself; we report k
        smoothed, k = az.psislw(log_ratio - log_ratio.max())
    weights = np.exp(np.asarray(smoothed) - np.max(smoothed))
    return weights / weights.sum(), float(np.asarray(k))


def sensitivity_value(
    draws: np.ndarray,
    lower_weights: np.ndarray,
    upper_weights: np.ndarray,
    lower: float = LOWER_ALPHA,
    upper: float = UPPER_ALPHA,
) -> float:
    """Derivative of the CJS distance with respect to log2(alpha), by priorsense's finite difference."""
    distance = cjs_distance(draws, lower_weights) + cjs_distance(draws, upper_weights)
    return distance / (math.log2(upper) - math.log2(lower))


def diagnosis(prior: float, likelihood: float, threshold: float = THRESHOLD) -> str:
    """priorsense's rule: both sensitive -> conflict; prior only -> strong prior / weak likelihood."""
    if np.isnan(prior) or np.isnan(likelihood):
        return "-"
    if prior >= threshold and likelihood >= threshold:
        return "prior-data conflict"
    if prior > threshold and likelihood < threshold:
        return "strong prior / weak likelihood"
    return "-"


# ----------------------------------------------------------------------------------------------
# on a saved fit
def log_component(idata, component: str) -> np.ndarray | None:
    """Joint log prior or log likelihood per draw, flattened over (chain, draw); None if absent."""
    group = "log_prior" if component == "prior" else "log_likelihood"
    if group not in idata.groups():
        return None
    import xarray as xr

    from marrow.loo import group_counts

    dataset = getattr(idata, group)
    counts = group_counts(idata) if group == "log_likelihood" else None  # columns standing for several patients
    total = None
    for name in dataset.data_vars:
        da = dataset[name]
        if counts is not None:
            da = da * xr.DataArray(counts, dims=[da.dims[-1]])
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        values = (da.sum(extra) if extra else da).transpose("chain", "draw").to_numpy().reshape(-1)
        total = values if total is None else total + values
    return total


@dataclass
class Sensitivity:
    """The per-quantity table and what was power-scaled."""

    table: pd.DataFrame
    pareto_k: dict[str, float]
    k_threshold: float
    prior_variables: str
    notes: list[str]


def powerscale_table(
    quantities: list[tuple[str, np.ndarray]],
    log_prior: np.ndarray | None,
    log_likelihood: np.ndarray | None,
    threshold: float = THRESHOLD,
    lower: float = LOWER_ALPHA,
    upper: float = UPPER_ALPHA,
) -> tuple[pd.DataFrame, dict[str, float], list[str]]:
    """Sensitivity of each (label, flat draws) to power-scaling the prior and the likelihood.

    `log_prior` and `log_likelihood` are the joint log densities per draw, in the draws' order
    (None when unavailable: that column is NaN). Returns the table, the largest Pareto k of each
    component's weights, and notes in plain words.
    """
    if not 0 < lower < 1 < upper:
        raise UsageError(f"power-scaling needs lower alpha < 1 < upper alpha, got {lower} and {upper}")
    notes: list[str] = []
    weights: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    pareto: dict[str, float] = {}
    for component, log_values in (("prior", log_prior), ("likelihood", log_likelihood)):
        if log_values is None:
            weights[component] = None
            group = "log_prior" if component == "prior" else "log_likelihood"
            notes.append(
                f"this fit has no {group} group, so its {component} sensitivity is not available; "
                "refit it with this version of marrow"
            )
            continue
        w_low, k_low = powerscale_weights(log_values, lower)
        w_up, k_up = powerscale_weights(log_values, upper)
        weights[component] = (w_low, w_up)
        pareto[component] = max(k_low, k_up)
    if weights["prior"] is None and weights["likelihood"] is None:
        raise UsageError("this fit has neither a log_prior nor a log_likelihood group; nothing to power-scale")
    n_draws = len(quantities[0][1]) if quantities else 0
    k_limit = pareto_k_threshold(n_draws)
    for component, k in pareto.items():
        if k > k_limit:
            notes.append(
                f"Pareto k of the {component} importance weights is {k:.2f} (> {k_limit:.2f}): "
                f"the {component} sensitivity values are unreliable; refit with more draws"
            )
    rows = []
    for label, draws in quantities:
        values = {}
        for component in ("prior", "likelihood"):
            pair = weights[component]
            values[component] = float("nan") if pair is None else sensitivity_value(draws, *pair, lower, upper)
        rows.append(
            {
                "quantity": label,
                "prior": values["prior"],
                "likelihood": values["likelihood"],
                "diagnosis": diagnosis(values["prior"], values["likelihood"], threshold),
            }
        )
    return pd.DataFrame(rows, columns=["quantity", "prior", "likelihood", "diagnosis"]), pareto, notes


def powerscale_sensitivity(
    fit, threshold: float = THRESHOLD, lower: float = LOWER_ALPHA, upper: float = UPPER_ALPHA
) -> Sensitivity:
    """Prior and likelihood power-scaling sensitivity of every quantity the model reports."""
    from marrow.models import module_for
    from marrow.summaries import quantity_labels

    idata, spec = fit.idata, fit.spec
    posterior = idata.posterior
    quantities = []
    for quantity in module_for(spec.model).quantities(spec):
        if quantity.var not in posterior:
            continue
        da = posterior[quantity.var].transpose("chain", "draw", ...)
        for selection, label in quantity_labels(quantity, da):
            quantities.append((label, da.sel(selection).to_numpy().reshape(-1)))
    table, pareto, notes = powerscale_table(
        quantities, log_component(idata, "prior"), log_component(idata, "likelihood"), threshold, lower, upper
    )
    n_draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    variables = idata.log_prior.attrs.get("marrow_prior_variables", "") if "log_prior" in idata.groups() else ""
    return Sensitivity(table, pareto, pareto_k_threshold(n_draws), str(variables), notes)


# ----------------------------------------------------------------------------------------------
# refits under several prior sets
def refit_under_priors(
    data, spec, prior_names: list[str], settings, progress: bool = False, announce=None
) -> pd.DataFrame:
    """Fit `spec` under each prior set; one row per reported quantity, 'median [2.5%, 97.5%]' per set."""
    from marrow.fits.run import fit_model
    from marrow.priors import load_prior_set
    from marrow.summaries import posterior_probabilities, posterior_summary

    if not prior_names:
        raise UsageError("--priors needs at least one prior set, e.g. weakly-informative,skeptical,enthusiastic")
    prior_sets = [load_prior_set(name) for name in prior_names]  # validate all before any sampling
    columns: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for name, priors in zip(prior_names, prior_sets, strict=True):
        if announce:
            announce(f"fitting {spec.label} under prior set '{priors.name}'")
        fitted = fit_model(data, spec, priors, settings, progress=progress)
        summary = posterior_summary(fitted)
        column = {}
        for _, row in summary.iterrows():
            column[row["quantity"]] = f"{row['median']:.3f} [{row['lower']:.3f}, {row['upper']:.3f}]"
            if row["quantity"] not in order:
                order.append(row["quantity"])
        for label, value in posterior_probabilities(fitted):
            column[label] = f"{value:.3f}"
            if label not in order:
                order.append(label)
        columns[_unique(name, columns)] = column
    rows = [{"quantity": q, **{name: col.get(q, "-") for name, col in columns.items()}} for q in order]
    return pd.DataFrame(rows)


def _unique(name: str, taken: dict) -> str:
    label = name
    i = 2
    while label in taken:
        label = f"{name} ({i})"
        i += 1
    return label
