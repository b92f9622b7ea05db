"""The recovery model's descriptor (implementation: `marrow/models/recovery.py`)."""

from __future__ import annotations

from marrow import time_units
from marrow.descriptor import Headline, ModelDescriptor, Option, PriorParameter, Times
from marrow.models.descriptors import parameterisation


def _needs(spec) -> tuple[str, ...]:
    return ("recovery", "followup", "died") if spec.competing_death else ("recovery",)


def _label(spec) -> str:
    unit = f", {spec.time_unit}" if spec.time_unit != time_units.DEFAULT_UNIT else ""
    death = ", death competing" if spec.competing_death else ""
    return f"recovery ({spec.resolved_family} {'cure' if spec.cure else 'AFT, no cure'}{death}{unit})"


DESCRIPTOR = ModelDescriptor(
    name="recovery",
    summary="Lineage-specific time to recovery, with a cure fraction by default.",
    module="marrow.models.recovery",
    examples=(
        "marrow fit recovery --covariates prior_atg,active_infection --out recovery.nc",
        "marrow fit recovery --family lognormal --no-cure --out aft.nc",
        "marrow fit recovery --time-unit weeks --by 2,4,12 --data trial.csv --recovery rec.csv --out weeks.nc",
        "marrow fit recovery --competing-death --out competing.nc",
    ),
    options=(
        # Log-logistic by default: it passes PSIS-LOO on the bundled trial where Weibull does not (docs/models.md).
        Option(
            "family",
            "loglogistic",
            "Latency distribution among those who recover (see docs/models.md).",
            choices=("weibull", "lognormal", "loglogistic"),
        ),
        Option("cure", True, "Mixture cure model (some never recover) or a plain censored AFT model."),
        Option("per_lineage_effects", False, "Covariate effects specific to each lineage."),
        Option("frailty", False, "Patient frailty shared across lineages."),
        Option(
            "competing_death",
            False,
            "Death (died/followup_days) competes with recovery: its own Weibull hazard, and cumulative "
            "incidences of recovery and of death before recovery.",
            plan=False,  # the report's comparison and figures do not show competing risks yet
        ),
        parameterisation.OPTION,
    ),
    times=Times("by", "--by-day", "by_days", "P(recovered by t)", "day 30, 90 and 180", "7,14,30"),
    needs=_needs,
    label=_label,
    priors=(
        PriorParameter(
            "recovery.cure_intercept_mu",
            "real",
            "mean over lineages of the log-odds of ever recovering, trial-average covariates",
        ),
        PriorParameter(
            "recovery.cure_intercept_sd", "positive", "spread over lineages of the log-odds of ever recovering"
        ),
        PriorParameter("recovery.cure_beta", "real", "covariate effects on ever recovering, log odds ratios"),
        PriorParameter(
            "recovery.cure_center_sd", "positive", "sd of center effects on ever recovering, log-odds scale"
        ),
        PriorParameter(
            "recovery.log_median_mu",
            "real",
            "mean over lineages of the log median latency (log days), trial-average covariates",
        ),
        PriorParameter("recovery.log_median_sd", "positive", "spread over lineages of the log median latency"),
        PriorParameter(
            "recovery.log_shape_mu", "real", "mean over lineages of the log shape of the latency distribution"
        ),
        PriorParameter("recovery.log_shape_sd", "positive", "spread over lineages of the log shape"),
        PriorParameter("recovery.time_beta", "real", "covariate effects on latency, log time ratios"),
        PriorParameter("recovery.frailty_sd", "positive", "sd of the patient frailty shared across lineages"),
    ),
    target_accept=0.99,
    sampler="nutpie",  # ~120 leapfrog steps per draw at target_accept 0.99: low per-step overhead matters
    nutpie_route="cfunc",  # those steps cost more, taking turns with the GIL, than the C callbacks' build saves
    section="Time to recovery",
    headline=(Headline("recovery", "median_days"), Headline("recovery", "cure_fraction")),
    plots=("recovery", "effects"),
    frequentist="Kaplan-Meier medians and incidence, Turnbull (interval-censored), AFT MLEs by family, cure model MLE",
)
