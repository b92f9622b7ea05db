"""Meta-analytic-predictive priors: the NUTS fit of the historical studies and the whole derivation.

The model and the mixture approximation are described in `marrow.priors.map`, which holds the pure
parts (EM mixtures, robustification, effective sample size, the prior-set file); the history table
is read by `marrow.data.history`. Sampling lives here, in the fits layer, like every other fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from marrow.data.history import read_history
from marrow.data.load import file_sha256
from marrow.errors import UsageError
from marrow.fits.run import quiet_pymc_logs
from marrow.priors.map import (
    DEFAULT_TAU_SD,
    MU_PRIOR,
    HistoryFit,
    MapResult,
    choose_mixture,
    robustify,
    summarise,
)


def fit_history(
    history: pd.DataFrame,
    tau_sd: float = DEFAULT_TAU_SD,
    draws: int = 2000,
    tune: int = 1000,
    chains: int = 2,
    seed: int = 2017,
    predictive_per_draw: int = 10,
) -> HistoryFit:
    """NUTS fit of the hierarchical logistic model; `predictive_per_draw` new-study draws per posterior draw."""
    import warnings

    import pymc as pm

    if tau_sd <= 0:
        raise UsageError(f"--tau-sd must be > 0, got {tau_sd:g}")
    quiet_pymc_logs(False)
    with pm.Model(coords={"study": list(history["study"])}) as model:
        mu = MU_PRIOR.create("mu")
        tau = pm.HalfNormal("tau", tau_sd)
        z = pm.Normal("z", 0.0, 1.0, dims="study")
        theta = mu + tau * z
        pm.Binomial(
            "responders",
            n=history["n"].to_numpy(),
            p=pm.math.invlogit(theta),
            observed=history["responders"].to_numpy(),
            dims="study",
        )
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=min(2, chains),
            random_seed=seed,
            target_accept=0.95,
            progressbar=False,
            compute_convergence_checks=False,
        )
    mu_draws = idata.posterior["mu"].to_numpy().reshape(-1)
    tau_draws = idata.posterior["tau"].to_numpy().reshape(-1)
    rng = np.random.default_rng([seed, 7])
    z_new = rng.standard_normal((mu_draws.size, predictive_per_draw))
    theta_new = (mu_draws[:, None] + tau_draws[:, None] * z_new).reshape(-1)
    divergences = int(idata.sample_stats["diverging"].to_numpy().sum())
    return HistoryFit(mu_draws, tau_draws, theta_new, divergences, tau_sd)


def derive_map_prior(
    history_path: Path | str,
    robust_weight: float = 0.2,
    tau_sd: float = DEFAULT_TAU_SD,
    max_components: int = 3,
    draws: int = 2000,
    tune: int = 1000,
    chains: int = 2,
    seed: int = 2017,
) -> MapResult:
    """Read history, fit the hierarchy, approximate the predictive by a normal mixture, robustify, summarise."""
    if not 0 <= robust_weight < 1:
        raise UsageError(f"--robust-weight must be in [0, 1), got {robust_weight:g}")
    history = read_history(history_path)
    fitted = fit_history(history, tau_sd=tau_sd, draws=draws, tune=tune, chains=chains, seed=seed)
    best, candidates = choose_mixture(fitted.theta_new, max_components)
    robust = robustify(best, robust_weight)
    result = MapResult(
        history, fitted, best, candidates, robust, robust_weight, str(history_path), file_sha256(Path(history_path))
    )
    result.summary = summarise(result)
    return result
