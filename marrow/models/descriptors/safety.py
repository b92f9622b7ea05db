"""The safety model's descriptor (implementation: `marrow/models/safety.py`)."""

from __future__ import annotations

from marrow.descriptor import Headline, ModelDescriptor, Option, PriorParameter
from marrow.models.descriptors import parameterisation

DESCRIPTOR = ModelDescriptor(
    name="safety",
    summary="Adverse-event rate, its exceedance probability and predicted events in a future cohort.",
    module="marrow.models.safety",
    examples=("marrow fit safety --threshold 0.2 --n-future 40 --out safety.nc",),
    options=(
        Option(
            "family",
            "beta-binomial",
            "Beta-binomial rate, or logistic with centers partially pooled.",
            choices=("beta-binomial", "hierarchical"),
        ),
        Option("threshold", 0.15, "Report P(adverse-event rate > THRESHOLD)."),
        Option("n_future", 50, "Size of a future cohort for predicted events."),
        parameterisation.OPTION,
    ),
    needs=lambda spec: ("adverse_event",),
    label=lambda spec: f"safety ({spec.resolved_family})",
    priors=(
        PriorParameter("safety.rate", "unit", "adverse-event rate (beta-binomial model)"),
        PriorParameter("safety.intercept", "real", "log-odds of an adverse event (hierarchical model)"),
        PriorParameter("safety.center_sd", "positive", "sd of center effects on adverse events (hierarchical model)"),
    ),
    target_accept=0.95,
    sampler="nutpie",  # through the callback route: ~1 s to start against 2-3 s for PyMC's C backend (performance.md)
    section="Safety",
    headline=(Headline("safety", "ae_rate", label="Adverse-event rate", probability="rate >"),),
    frequentist="exact, Wilson and Jeffreys intervals of the adverse-event rate",
    threshold_key="adverse_event_rate",
    plan_covariates=False,  # its priors describe a rate, not effects: covariates only when its step asks
)
