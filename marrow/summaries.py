"""Labelled posterior summaries of the quantities a model reports."""

from __future__ import annotations

import numpy as np
import pandas as pd

from marrow import convergence
from marrow.fits.fit import Fit
from marrow.models import Quantity, module_for

PROB = 0.95


def _labels(quantity: Quantity, da) -> list[tuple[dict, str]]:
    """Expand a quantity over its non-sample dims into (selection, label) pairs."""
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    if not extra:
        return [({}, quantity.label)]
    index = pd.MultiIndex.from_product([da[d].to_numpy() for d in extra], names=extra)
    out = []
    for values in index:
        values = values if isinstance(values, tuple) else (values,)
        selection = dict(zip(extra, values))
        label = quantity.label.format(**{k: str(v) for k, v in selection.items()})
        if "{" not in quantity.label:
            label += " [" + ", ".join(str(v) for v in values) + "]"
        out.append((selection, label))
    return out


def _interval(flat: np.ndarray, hdi: bool, prob: float) -> tuple[float, float]:
    import arviz as az

    if hdi:
        lower, upper = az.hdi(flat, hdi_prob=prob)
    else:
        lower, upper = np.quantile(flat, [(1 - prob) / 2, (1 + prob) / 2])
    return float(lower), float(upper)


def _convergence(ds) -> dict[str, object]:
    """R-hat, ESS and MCSE for every element of every variable of a (chain, draw, ...) dataset."""
    import warnings

    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "mcse_mean": az.mcse(ds, method="mean"),
            "ess_bulk": convergence.per_variable(ds, convergence.ess_bulk),
            "ess_tail": convergence.per_variable(ds, convergence.ess_tail),
            "r_hat": convergence.per_variable(ds, convergence.rhat),
        }


def posterior_summary(fit: Fit, hdi: bool = False, prob: float = PROB) -> pd.DataFrame:
    """One row per reported scalar: label, variable, element, median, mean, sd, interval, MCSE, ESS, R-hat."""
    spec = fit.spec
    posterior = fit.idata.posterior
    present = [q for q in module_for(spec.model).quantities(spec) if q.var in posterior]
    convergence = _convergence(posterior[[q.var for q in present]])
    rows = []
    for quantity in present:
        da = posterior[quantity.var]
        for selection, label in _labels(quantity, da):
            flat = da.sel(selection).to_numpy().reshape(-1)
            lower, upper = _interval(flat, hdi, prob)
            stats = {name: float(ds[quantity.var].sel(selection)) for name, ds in convergence.items()}
            rows.append({
                "quantity": label, "variable": quantity.var, "element": ", ".join(str(v) for v in selection.values()),
                "scale": quantity.scale, "median": float(np.median(flat)), "mean": float(flat.mean()),
                "sd": float(flat.std(ddof=1)) if flat.size > 1 else 0.0, "lower": lower, "upper": upper, **stats,
            })
    table = pd.DataFrame(rows)
    table.attrs["interval"] = f"{prob:.0%} {'HDI' if hdi else 'equal-tailed'}"
    return table


def posterior_probabilities(fit: Fit) -> list[tuple[str, float]]:
    """Posterior probabilities of the statements the model reports, e.g. P(rate > threshold)."""
    return module_for(fit.spec.model).probabilities(fit.idata, fit.spec)
