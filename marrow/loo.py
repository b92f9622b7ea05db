"""PSIS-LOO per patient, also for fits that store the log-likelihood once per group of identical patients.

A binary outcome in a (center, covariate) cell has only two distinct pointwise log-likelihoods: every
responder of the cell contributes log p and every non-responder log(1 - p), at every draw. Patients
with identical log-likelihood draws have identical PSIS weights, Pareto k and LOO terms, so a fit may
store one column per group (`observed_data.loo_group`, the group of each patient) and this module
expands the results to patients exactly. At 20,000 patients that is ~1,600 columns instead of 20,000.
"""

from __future__ import annotations

import warnings

import numpy as np

GROUP_OF_UNIT = "loo_group"  # observed_data variable: for each patient, its column in the log-likelihood


def group_of_unit(idata) -> np.ndarray | None:
    """For each patient, its log-likelihood column; None when the log-likelihood is per patient already."""
    if "observed_data" in idata.groups() and GROUP_OF_UNIT in idata.observed_data:
        return idata.observed_data[GROUP_OF_UNIT].to_numpy()
    return None


def group_counts(idata) -> np.ndarray | None:
    """How many patients each log-likelihood column stands for (None when one each)."""
    groups = group_of_unit(idata)
    if groups is None:
        return None
    n_groups = _log_likelihood(idata).shape[-1]
    return np.bincount(groups, minlength=n_groups)


def _log_likelihood(idata):
    names = list(idata.log_likelihood.data_vars)
    if len(names) != 1:
        raise ValueError(f"expected one log-likelihood variable, found {names}")
    return idata.log_likelihood[names[0]]


def psis_loo(idata, scale: str = "log"):
    """`arviz.loo(idata, pointwise=True)`, per patient also for grouped log-likelihoods."""
    import arviz as az
    import xarray as xr
    from arviz.stats.stats_utils import ELPDData
    from scipy.special import logsumexp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grouped = az.loo(idata, pointwise=True, scale=scale)
    groups = group_of_unit(idata)
    if groups is None:
        return grouped
    unit_dim = idata.observed_data[GROUP_OF_UNIT].dims[0]
    units = idata.observed_data[GROUP_OF_UNIT][unit_dim].to_numpy()
    scale_value = {"log": 1.0, "negative_log": -1.0, "deviance": -2.0}[scale]
    loo_i = np.asarray(grouped.loo_i)[groups]
    pareto_k = np.asarray(grouped.pareto_k)[groups]
    ll = _log_likelihood(idata)
    draws = ll.stack(__sample__=("chain", "draw")).transpose(..., "__sample__").to_numpy()
    lppd = float((logsumexp(draws, axis=-1) - np.log(draws.shape[-1]))[groups].sum())
    elpd = float(loo_i.sum())
    n = loo_i.size
    good_k = float(grouped.good_k)
    return ELPDData(
        data=[
            elpd,
            float((n * np.var(loo_i)) ** 0.5),
            lppd - elpd / scale_value,
            int(grouped.n_samples),
            n,
            bool(np.any(pareto_k > good_k)),
            xr.DataArray(loo_i, dims=[unit_dim], coords={unit_dim: units}, name="loo_i"),
            xr.DataArray(pareto_k, dims=[unit_dim], coords={unit_dim: units}),
            scale,
            good_k,
        ],
        index=[
            "elpd_loo",
            "se",
            "p_loo",
            "n_samples",
            "n_data_points",
            "warning",
            "loo_i",
            "pareto_k",
            "scale",
            "good_k",
        ],
    )
