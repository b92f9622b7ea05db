"""The overall survival model's descriptor (implementation: `marrow/models/survival.py`)."""

from __future__ import annotations

from marrow import time_units
from marrow.descriptor import Headline, ModelDescriptor, Option, PriorParameter, Times


def _label(spec) -> str:
    unit = f", {spec.time_unit}" if spec.time_unit != time_units.DEFAULT_UNIT else ""
    return f"survival ({spec.resolved_family}{unit})"


DESCRIPTOR = ModelDescriptor(
    name="survival",
    summary="Overall survival on followup_days and died.",
    module="marrow.models.survival",
    examples=(
        "marrow fit survival --out survival.nc",
        "marrow fit survival --time-unit months --at 6,12,36 --data trial.csv --out survival.nc",
    ),
    options=(
        Option(
            "family",
            "weibull",
            "Parametric survival distribution (AFT); exponential = Weibull with shape 1.",
            choices=("weibull", "exponential", "lognormal", "loglogistic"),
        ),
    ),
    times=Times("at", "--at-days", "at_days", "survival probabilities S(t)", "6, 12 and 24 months", "3,6,12"),
    needs=lambda spec: ("followup", "died"),
    label=_label,
    priors=(
        PriorParameter(
            "survival.log_median",
            "real",
            "log median survival time in days, trial-average covariates (covariates are centred)",
        ),
        PriorParameter(
            "survival.log_shape",
            "real",
            "log shape k of the survival family: Weibull or log-logistic k, log-normal 1/sigma "
            "(Weibull: 0 = exponential; the exponential family has none)",
        ),
        PriorParameter("survival.beta", "real", "covariate effects, log time ratios"),
    ),
    target_accept=0.9,
    sampler="nutpie",  # through the callback route: ~1 s to start against 2-3 s for PyMC's C backend (performance.md)
    section="Overall survival",
    headline=(Headline("survival", "survival_at", "12 months", "12-month overall survival"),),  # in the fit's unit
    plots=("survival", "effects"),
    frequentist="Kaplan-Meier survival, Cox hazard ratios, AFT MLEs by family",
)
