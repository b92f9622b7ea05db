"""Frequentist counterparts of marrow's Bayesian quantities, computed from the data with scipy,
statsmodels and lifelines (Firth's logistic regression, the Weibull mixture cure model and the
random-intercept logistic MLE by adaptive quadrature, which those libraries lack, are implemented
here with numpy/scipy).

One module per method family, each returning tidy pandas DataFrames:
- `binomial`: proportions with exact, Wilson and Jeffreys intervals (response, CR, PR, centers, adverse events);
- `logistic`: odds ratios by Logit (Wald, profile likelihood), GEE, Fisher's exact test; separation check;
- `firth`: Firth's penalised logistic regression with profile penalised-likelihood intervals;
- `glmm`: the random-intercept logistic model by maximum likelihood (adaptive Gauss-Hermite quadrature);
- `survival`: Kaplan-Meier, Weibull/log-logistic/log-normal/exponential AFT, Weibull mixture cure model, Cox;
- `estimable`: the one rule for flagging estimates as not estimable;
- `table`: `comparison_table(data, fits)`, the side-by-side table with flags and skipped sections.

Heavy libraries are imported inside the functions that use them.
"""

from __future__ import annotations


def comparison_table(data, fits=(), covariates=None, prob: float = 0.95):
    """See `marrow.frequentist.table.comparison_table`."""
    from marrow.frequentist.table import comparison_table as build

    return build(data, fits, covariates, prob)


__all__ = ["comparison_table"]
