"""The one rule for when a frequentist estimate is not estimable, and why.

A maximum-likelihood fit can return numbers that mean nothing: an odds ratio of 4e-20 with an
interval spanning 300 orders of magnitude (separation), a cure fraction at 0 or 1 (the boundary),
an estimate without an interval, a non-converged optimiser or a Hessian that is not positive
definite. Such rows are flagged `not estimable: <reason>` and their numbers are not shown, in every
output format. Each row is judged on its working scale:

- `log` (ratios, medians, shapes, sds): the estimate must be > 0 and finite, |log estimate| <=
  MAX_ABS_LOG and the interval's width on the log scale <= MAX_LOG_WIDTH;
- `logit` (model-based proportions such as a cure fraction): the same on the logit scale;
- `identity` (log-odds coefficients, intercepts): |estimate| <= MAX_ABS_LOG, width <= MAX_LOG_WIDTH;
- None (exact and Kaplan-Meier estimates): only a finite estimate and an interval are required
  (a Kaplan-Meier median's upper limit may be infinite: not reached);
- `point` (estimators that give no interval by construction, such as the Turnbull NPMLE): only a
  finite estimate is required; the row shows '-' for its interval.

`problem` is what the fitting code knows about the fit (non-convergence, Hessian, boundary); it is
the reason when given.
"""

from __future__ import annotations

import math

MAX_ABS_LOG = 15.0  # exp(15) = 3.3e6: no clinical odds, time or hazard ratio is this far from 1
MAX_LOG_WIDTH = 20.0  # an interval spanning more than e^20 (8.7 orders of magnitude) says nothing
WORKING_SCALES = ("log", "logit", "identity", "point")


def _number(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _transform(value: float, working: str) -> float:
    """`value` on the working scale; +/-inf at the boundary of the natural scale."""
    if working == "identity":
        return value
    if working == "log":
        return math.log(value) if value > 0 else -math.inf
    if value <= 0:
        return -math.inf
    if value >= 1:
        return math.inf
    return math.log(value / (1 - value))


def not_estimable(estimate, lower, upper, working: str | None = None, problem: str = "") -> str:
    """The reason a row is not estimable, or '' when its numbers can be shown (see module docstring)."""
    if problem:
        return problem
    value, low, high = _number(estimate), _number(lower), _number(upper)
    if value is None:
        return "no estimate"
    if math.isinf(value):
        return "estimate is infinite"
    if working == "point":
        return ""
    if low is None or high is None:
        return "estimate without an interval (no standard error)"
    if working is None:
        return ""
    if working not in WORKING_SCALES:
        raise ValueError(f"unknown working scale {working!r}")
    scale = {"log": "log", "logit": "logit", "identity": ""}[working]
    point = _transform(value, working)
    if math.isinf(point):
        return "estimate at the boundary of its range" + (f" ({value:g})" if working != "identity" else "")
    if abs(point) > MAX_ABS_LOG:
        what = f"{scale} estimate" if scale else "estimate"
        return f"{what} {point:.3g} beyond +/-{MAX_ABS_LOG:g} (separation or boundary)"
    width = _transform(high, working) - _transform(low, working)
    if math.isinf(width) or math.isnan(width):
        return "interval unbounded"
    if width > MAX_LOG_WIDTH:
        span = f" ({width / math.log(10):.0f} orders of magnitude)" if working == "log" else ""
        return f"interval width {width:.3g} on the {scale or 'natural'} scale exceeds {MAX_LOG_WIDTH:g}{span}"
    return ""
