"""Every parameter a marrow model takes a prior for: its key, support and meaning.

A prior set must give each of these; a key not listed here is rejected as unknown.
"""

from __future__ import annotations

PARAMETERS: dict[str, tuple[str, str]] = {
    # response (binary and ordinal)
    "response.intercept": ("real", "log-odds of response for a typical center at covariates = 0"),
    "response.beta": ("real", "covariate effects, log odds ratios"),
    "response.center_sd": ("positive", "sd of center effects on the log-odds scale"),
    "response.cr_gap": ("positive", "ordinal: log-odds gap between any response and complete response"),
    # recovery (cure and latency)
    "recovery.cure_intercept_mu": (
        "real",
        "mean over lineages of the log-odds of ever recovering, trial-average covariates",
    ),
    "recovery.cure_intercept_sd": ("positive", "spread over lineages of the log-odds of ever recovering"),
    "recovery.cure_beta": ("real", "covariate effects on ever recovering, log odds ratios"),
    "recovery.cure_center_sd": ("positive", "sd of center effects on ever recovering, log-odds scale"),
    "recovery.log_median_mu": (
        "real",
        "mean over lineages of the log median latency (log days), trial-average covariates",
    ),
    "recovery.log_median_sd": ("positive", "spread over lineages of the log median latency"),
    "recovery.log_shape_mu": ("real", "mean over lineages of the log shape of the latency distribution"),
    "recovery.log_shape_sd": ("positive", "spread over lineages of the log shape"),
    "recovery.time_beta": ("real", "covariate effects on latency, log time ratios"),
    "recovery.frailty_sd": ("positive", "sd of the patient frailty shared across lineages"),
    # overall survival
    "survival.log_median": (
        "real",
        "log median survival time in days, trial-average covariates (covariates are centred)",
    ),
    "survival.log_shape": (
        "real",
        "log shape k of the survival family: Weibull or log-logistic k, log-normal 1/sigma "
        "(Weibull: 0 = exponential; the exponential family has none)",
    ),
    "survival.beta": ("real", "covariate effects, log time ratios"),
    # safety
    "safety.rate": ("unit", "adverse-event rate (beta-binomial model)"),
    "safety.intercept": ("real", "log-odds of an adverse event (hierarchical model)"),
    "safety.center_sd": ("positive", "sd of center effects on adverse events (hierarchical model)"),
}
