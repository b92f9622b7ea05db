"""The response model's descriptor (implementation: `marrow/models/response.py`)."""

from __future__ import annotations

from marrow.descriptor import Headline, ModelDescriptor, Option, PriorParameter
from marrow.models.descriptors import parameterisation


def _needs(spec) -> tuple[str, ...]:
    return ("response", "ordinal") if spec.outcome == "ordinal" else ("response",)


DESCRIPTOR = ModelDescriptor(
    name="response",
    summary="Hierarchical response model: response probability partially pooled over centers.",
    module="marrow.models.response",
    examples=(
        "marrow fit response --out response.nc",
        "marrow fit response --outcome ordinal --covariates prior_atg,active_infection --out ordinal.nc",
        "marrow fit response --data my_trial.csv --covariates prior_atg --out mine.nc",
        "marrow fit response --adam adam/ --covariates prior_atg --out mine.nc   # ADSL, ADRS (docs/data.md)",
    ),
    options=(
        Option(
            "outcome",
            "binary",
            "binary: responder (CR or PR); ordinal: CR > PR > NR, cumulative logit.",
            choices=("binary", "ordinal"),
            plan=False,  # the plan names it by step: [models.response] and [models.ordinal]
        ),
        Option("threshold", 0.15, "Report P(response rate > THRESHOLD), e.g. the null rate of the design."),
        parameterisation.OPTION,
    ),
    needs=_needs,
    label=lambda spec: f"response ({spec.outcome})",
    priors=(
        PriorParameter("response.intercept", "real", "log-odds of response for a typical center at covariates = 0"),
        PriorParameter("response.beta", "real", "covariate effects, log odds ratios"),
        PriorParameter("response.center_sd", "positive", "sd of center effects on the log-odds scale"),
        PriorParameter(
            "response.cr_gap", "positive", "ordinal: log-odds gap between any response and complete response"
        ),
    ),
    target_accept=0.95,  # 0.8 from 20 centers on: marrow.models.response.default_target_accept
    sampler="nutpie",
    section="Response",
    headline=(
        Headline("response", "response_rate", label="Response rate (CR or PR)", probability="rate >"),
        Headline("ordinal", "cr_rate", label="Complete response (CR) rate"),
        Headline("ordinal", "pr_rate", label="Partial response (PR) rate"),
        Headline("response", "odds_ratio"),
    ),
    plots=("ppc", "centers", "effects"),
    frequentist="exact, Wilson and Jeffreys intervals; logistic regression, GEE, Firth; random-intercept GLMM",
    steps={"response": {"outcome": "binary"}, "ordinal": {"outcome": "ordinal"}},
    threshold_key="response_rate",
)
