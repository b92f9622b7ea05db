"""The `log_prior` group of a fit: per-draw log prior density, for power-scaling sensitivity.

Power-scaling the prior (Kallioinen et al. 2023) reweights the posterior draws by
p(theta)^(alpha - 1), so it needs log p(theta) at every draw. PyMC computes it with
`pm.compute_log_prior`, on the constrained scale of each parameter (no Jacobian), which is
the density the prior set states.

Only the parameters the prior set governs are included (e.g. `intercept`, `beta`,
`center_sd`), like brms's `lprior`: the standard-normal offsets of a non-centred hierarchy
(`center_z`, `new_center_z`) are part of the model's structure, not a choice a user makes in a
prior set, and power-scaling them would mix structure with assumptions.
"""

from __future__ import annotations

import warnings

ATTR_VARIABLES = "marrow_prior_variables"


def prior_variables(model, spec, priors) -> list[str]:
    """Free random variables of `model` that the prior set governs (named after catalog keys).

    Falls back to every free random variable except standard-normal offsets (`*_z`) when a model
    names its variables otherwise (e.g. the safety model's `ae_rate` for the key `safety.rate`).
    """
    free = [rv.name for rv in model.free_RVs]
    governed = set(priors.for_model(spec.model))
    # A governed parameter may be a Deterministic of the sampled ones (a centred level's population
    # mean, `effects.centred_with_mean`): its prior is still the prior set's.
    chosen = [name for name in free + [v.name for v in model.deterministics] if name in governed]
    return chosen or [name for name in free if not name.endswith("_z")] or free


def add_log_prior(idata, model, spec, priors) -> list[str]:
    """Add a `log_prior` group (chain, draw[, dims]) per governed variable to `idata`, in place.

    Variables named after the prior set's keys are evaluated with the prior's scipy.stats
    distribution on the draws, vectorised (about a millisecond; PyMC's `compute_log_prior` compiled a
    function for 1.2 s in every fit); any others through PyMC. The two agree (tested on every model).
    Returns the variables included; an empty list (and a warning) if PyMC could not compute it,
    in which case the fit is still usable but `marrow sensitivity` cannot power-scale its prior.
    """
    import xarray as xr

    from marrow.models.idata import LOG_PRIOR, replace_groups

    names = prior_variables(model, spec, priors)
    stated = priors.for_model(spec.model)
    values = {
        name: xr.apply_ufunc(stated[name].scipy().logpdf, idata.posterior[name]) for name in names if name in stated
    }
    others = [name for name in names if name not in stated]
    if others:
        try:
            dataset = pymc_log_prior(idata, model, others)
        except Exception as exc:  # a model PyMC cannot evaluate here should not lose the whole fit
            warnings.warn(
                f"log prior not stored ({type(exc).__name__}: {exc}); prior sensitivity unavailable",
                RuntimeWarning,
                stacklevel=2,
            )
            return []
        values.update({name: dataset[name] for name in others})
    log_prior = xr.Dataset({name: values[name] for name in names})
    log_prior.attrs = {ATTR_VARIABLES: ",".join(names)}
    replace_groups(idata, **{LOG_PRIOR: log_prior})
    return names


def pymc_log_prior(idata, model, names: list[str]):
    """PyMC's per-draw log prior of `names` (constrained scale, no Jacobian) as a Dataset."""
    import pymc as pm

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
        dataset = pm.compute_log_prior(
            idata, var_names=names, model=model, extend_inferencedata=False, progressbar=False
        )
    # compute_log_prior may hand back an InferenceData or a Dataset depending on the version.
    return dataset.log_prior if hasattr(dataset, "log_prior") else dataset
