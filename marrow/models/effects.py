"""Group effects of every hierarchical model, centred or non-centred, and the rule choosing between them.

Non-centred: effect = loc + sd * z, z ~ Normal(0, 1) per group. NUTS samples z and sd without the
funnel that the centred form has when the groups' data say little (the bundled trial).
Centred: effect ~ Normal(loc, sd) per group. When every group is pinned down by its own data (a
registry's thousands of events per lineage), the non-centred form has a narrow curved ridge in
(loc, sd, z) instead, and NUTS needs several times the leapfrog steps per draw.

`centred(information)` chooses from the data, per level: centred when every group of the level has
at least `CENTRED_FROM` informative observations (`information`: events per lineage, the minority
outcome per center, events per patient; each model counts its own). `resolve` applies a model's
`parameterisation` option (auto, centred, noncentred) to all of its levels; the result goes into
`ModelInputs.parameterisation` (so it keys compiled models and is recorded in the fit's provenance).
docs/models.md ("Parameterisation") gives the measurements behind the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PARAMETERISATIONS = ("auto", "centred", "noncentred")  # the models' `parameterisation` option
CENTRED = "centred"
NONCENTRED = "noncentred"
# Informative observations per group from which a level is centred (docs/models.md, "Parameterisation"):
# measured on `marrow fit recovery --no-cure`, the centred lineage levels took 4-10 times fewer leapfrog
# steps from about 500 recoveries per lineage on, but still diverged (14-131 of 4,000 draws) at 547,
# 1,436 and 3,133; at about 6,000 (the 20,000-patient registry) 0 and 1. Below 200 non-centred was
# better on every count (0 divergences against 13-26, fewer steps).
CENTRED_FROM = 5000


def centred(information: Iterable[float], threshold: float = CENTRED_FROM) -> bool:
    """Whether a level whose groups have `information` informative observations each (events, or the
    minority outcome) is best sampled centred: every group has at least `threshold`. A level without
    groups is non-centred."""
    values = [float(v) for v in information]
    return bool(values) and min(values) >= threshold


def resolve(option: str, information: Mapping[str, Iterable[float]]) -> dict[str, str]:
    """Level name -> 'centred' or 'noncentred': `option` itself when forced, else `centred(...)` of each
    level's information per group."""
    if option not in PARAMETERISATIONS:
        raise ValueError(f"unknown parameterisation {option!r}; choose {', '.join(PARAMETERISATIONS)}")
    if option != "auto":
        return dict.fromkeys(information, option)
    return {level: CENTRED if centred(values) else NONCENTRED for level, values in information.items()}


def is_centred(parameterisation: Mapping[str, str], level: str) -> bool:
    """Whether `level` is centred in a resolved `parameterisation` (a level not listed is non-centred)."""
    return parameterisation.get(level) == CENTRED


def group_effect(
    name: str,
    sd: Any,
    dims: str | None = None,
    loc: Any = None,
    *,
    centred: bool = False,
    z_name: str | None = None,
    store: bool = True,
) -> Any:
    """The group effect `name` ~ Normal(loc, sd) (loc 0 without `loc`) over `dims`; returns it.

    Centred: the random variable `name` itself. Non-centred: `loc + sd * z` with z = `z_name` (default
    `name_z`) ~ Normal(0, 1), stored as the Deterministic `name` when `store` (a large level such as
    patient frailty may leave it unstored; readers then use sd * z). `sd` (and `loc`) are created by
    the caller first, so the model's variables keep their order."""
    import pymc as pm

    if centred:
        return pm.Normal(name, 0.0 if loc is None else loc, sd, dims=dims)
    return noncentred(z_name or f"{name}_z", sd, dims, loc=loc, name=name if store else None)


def centred_with_mean(name: str, mean_prior: Any, sd: Any, dims: str, n_groups: int) -> Any:
    """Centred group effect `name` ~ Normal(mu, sd) whose population mean `mu` (`name_mu`) has a Normal
    prior, sampled as an offset from its conditional posterior: mu = m + s * `name_mu_z`, where m and s
    are the mean and sd of mu given the effects and sd. Returns the effect (`name_mu` is stored).

    Same joint density as the plain centred form: integrating mu out, the effects are multivariate
    normal, Normal(m0, sd^2 I + s0^2 J) (`_log_marginal`), and `name_mu_z` ~ Normal(0, 1) exactly,
    independent of the rest. The plain form couples mu and sd in a funnel (mu's conditional sd is
    sd / sqrt(groups)): with 3 lineages pinned by a registry's data, NUTS took about 60 leapfrog steps
    per draw; this form about 28 (docs/models.md, "Parameterisation")."""
    import pymc as pm
    import pytensor.tensor as pt

    m0, s0 = float(mean_prior.args["mu"]), float(mean_prior.args["sigma"])
    # Declared Normal(m0, s0) so that sampling starts at the prior mean; the Potential swaps that
    # density for the effects' marginal one.
    effect = pm.Normal(name, m0, s0, dims=dims)
    z = pm.Normal(f"{name}_mu_z", 0.0, 1.0)
    precision = 1.0 / s0**2 + n_groups / sd**2
    mean = (m0 / s0**2 + effect.sum() / sd**2) / precision
    pm.Deterministic(f"{name}_mu", mean + z / pt.sqrt(precision))
    declared = pm.logp(pm.Normal.dist(m0, s0), effect).sum()
    pm.Potential(f"{name}_density", _log_marginal(effect, sd, m0, s0, n_groups) - declared)
    return effect


def _log_marginal(effect: Any, sd: Any, m0: float, s0: float, n: int) -> Any:
    """log Normal(effect | m0 1, sd^2 I + s0^2 1 1'): eigenvalues sd^2 (n - 1 times) and sd^2 + n s0^2
    (along 1), so the spread around the effects' mean and the mean's distance from m0 separate."""
    import numpy as np
    import pytensor.tensor as pt

    along = sd**2 + n * s0**2
    spread = ((effect - effect.mean()) ** 2).sum()
    return (
        -0.5 * n * np.log(2 * np.pi)
        - (n - 1) * pt.log(sd)
        - 0.5 * pt.log(along)
        - spread / (2 * sd**2)
        - n * (effect.mean() - m0) ** 2 / (2 * along)
    )


def noncentred(z_name: str, sd: Any, dims: str | None = None, loc: Any = None, name: str | None = None) -> Any:
    """`loc + sd * z` (`sd * z` without `loc`), z = `z_name` ~ Normal(0, 1) over `dims` (a scalar
    without). `sd` (and `loc`) are created by the caller first, so the model's variables keep their
    order. Stored as the Deterministic `name` (with `dims`) when given; returns the effect."""
    import pymc as pm

    z = pm.Normal(z_name, 0.0, 1.0, dims=dims)
    effect = sd * z if loc is None else loc + sd * z
    return effect if name is None else pm.Deterministic(name, effect, dims=dims)
