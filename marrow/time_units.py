"""Time units of a trial's time columns, and the default horizons of the time-to-event models.

A trial records `followup_days` and the recovery table's `day` in one unit: days (default), weeks
or months (`ModelSpec.time_unit`, `--time-unit`, plan key `[data] time_unit`). The column names
stay the same; their values are read in the fit's unit, and every horizon, reported time and
label is in that unit too.

The default horizons are stated once here, in days, and converted to the fit's unit (two
decimals): survival at 6, 12 and 24 months (182.6, 365.25, 730.5 days = 26.09, 52.18, 104.36
weeks = 6, 12, 24 months), restricted mean survival to 24 months, recovery by day 30, 90 and 180.
A month is 365.25 / 12 = 30.4375 days.

Prior sets state log-time locations in days (e.g. `survival.log_median`);
`marrow.priors.units.priors_in_unit` shifts them to the fit's unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from marrow.errors import UsageError

UNITS = ("days", "weeks", "months")
DEFAULT_UNIT = "days"
DAYS_PER_UNIT = {"days": 1.0, "weeks": 7.0, "months": 365.25 / 12}
SINGULAR = {"days": "day", "weeks": "week", "months": "month"}

# Default horizons, in days (the values marrow has always reported for day-based trials).
SURVIVAL_HORIZON_DAYS = (182.6, 365.25, 730.5)  # 6, 12 and 24 months
ONE_YEAR_DAYS = 365.25  # P(12-month overall survival > 0.8), deaths in the first year
RMST_HORIZON_DAYS = 730.5  # restricted mean survival time up to 24 months
RECOVERY_HORIZON_DAYS = (30.0, 90.0, 180.0)
DECIMALS = 2  # converted horizons are rounded to this many decimals (52.18 weeks)


def check_unit(unit: str) -> str:
    """`unit` if it is a known time unit, else a UsageError naming the choices."""
    if unit not in UNITS:
        raise UsageError(f"time_unit must be one of {', '.join(UNITS)}, got {unit!r}")
    return unit


def from_days(days: float, unit: str) -> float:
    """A duration given in days, in `unit` (rounded to DECIMALS for weeks and months; days unchanged)."""
    if check_unit(unit) == "days":
        return float(days)
    return round(float(days) / DAYS_PER_UNIT[unit], DECIMALS)


def to_days(value: float, unit: str) -> float:
    """A duration given in `unit`, in days (exact, not rounded)."""
    return float(value) * DAYS_PER_UNIT[check_unit(unit)]


def log_days_per_unit(unit: str) -> float:
    """log(days per unit): 0 for days, log 7 for weeks. Subtract it from a log time in days to get
    the log time in `unit`."""
    return math.log(DAYS_PER_UNIT[check_unit(unit)])


def survival_horizons(unit: str) -> tuple[float, ...]:
    """Default times of S(t): 6, 12 and 24 months in `unit`."""
    return tuple(from_days(d, unit) for d in SURVIVAL_HORIZON_DAYS)


def one_year(unit: str) -> float:
    """12 months in `unit` (the horizon of P(12-month overall survival > 0.8))."""
    return from_days(ONE_YEAR_DAYS, unit)


def rmst_horizon(unit: str) -> float:
    """Horizon of the restricted mean survival time: 24 months in `unit`."""
    return from_days(RMST_HORIZON_DAYS, unit)


def recovery_horizons(unit: str) -> tuple[float, ...]:
    """Default times of P(recovered by t): day 30, 90 and 180 in `unit`."""
    return tuple(from_days(d, unit) for d in RECOVERY_HORIZON_DAYS)


def horizons(given: Iterable[float], defaults: Iterable[float]) -> list:
    """The horizons a fit reports: those `given` (in the fit's unit) replace the defaults; sorted, and
    ints when all are whole (so labels read "day 30", "month 6")."""
    chosen = sorted({float(v) for v in given} or {float(v) for v in defaults})
    if all(v.is_integer() for v in chosen):
        return [int(v) for v in chosen]
    return chosen


def same_time(a: float, b: float) -> bool:
    """Two horizons are the same time (coords are floats; allow for rounding to DECIMALS)."""
    return abs(float(a) - float(b)) < 0.5 * 10**-DECIMALS
