"""Prior sets in a fit's time unit.

Prior sets state log-time locations in days (e.g. `survival.log_median`); `priors_in_unit` shifts
them to the fit's unit (`marrow.time_units`), so a trial recorded in weeks gets the same prior as the
same trial in days.
"""

from __future__ import annotations

from dataclasses import replace

from marrow.errors import UsageError
from marrow.priors.prior import Prior
from marrow.priors.sets import PriorSet
from marrow.time_units import DAYS_PER_UNIT, check_unit, log_days_per_unit

# Prior keys that are locations on the log-time scale, stated in days in every prior set.
LOG_TIME_PRIORS = ("survival.log_median", "recovery.log_median_mu")
LOCATION_FAMILIES = ("Normal", "StudentT", "NormalMixture")  # mu is a location: moving it moves the prior


def priors_in_unit(priors: PriorSet, unit: str) -> PriorSet:
    """The prior set with its log-time location priors (stated in days) moved to `unit`.

    A Normal(mu, sigma) on log median days is Normal(mu - log(days per unit), sigma) on log median
    weeks, the same prior. Only distributions with a location `mu` (Normal, StudentT, NormalMixture)
    can be moved; any other on a log-time location is refused for a unit other than days.
    """
    if check_unit(unit) == "days":
        return priors
    shift = log_days_per_unit(unit)
    moved = dict(priors.priors)
    for key in LOG_TIME_PRIORS:
        prior = moved.get(key)
        if prior is None:
            continue
        if prior.dist not in LOCATION_FAMILIES:
            raise UsageError(
                f"prior '{key}' ({prior.dist}) is stated in log days and cannot be moved to {unit}: "
                "give it a Normal, StudentT or NormalMixture prior, or record the times in days"
            )
        table = prior.to_dict()
        mu = table["mu"]
        table["mu"] = [m - shift for m in mu] if isinstance(mu, list) else mu - shift
        table["reason"] = (
            f"{prior.reason} [stated in log days, moved to log {unit}: mu - log {DAYS_PER_UNIT[unit]:g}]".strip()
        )
        moved[key] = Prior.from_dict(key, table)
    return replace(priors, priors=moved)
