"""Small helpers shared by the plot modules."""

from __future__ import annotations

import numpy as np

from marrow.errors import UsageError

PROB = 0.95  # marrow's interval: 95% equal-tailed


def need(fit, group: str, variables: list[str], kind: str) -> None:
    """Raise a clear error when the fit lacks what a plot kind draws."""
    idata = fit.idata
    if group not in idata.groups():
        raise UsageError(f"--kind {kind} needs the {group} group, which this {fit.spec.label} fit does not have")
    missing = [v for v in variables if v not in idata[group]]
    if missing:
        raise UsageError(f"--kind {kind} needs {', '.join(missing)} in {group}; this is a {fit.spec.label} fit")


def draws(da) -> np.ndarray:
    """Samples first: (chain*draw, ...)."""
    values = da.to_numpy()
    return values.reshape((-1,) + values.shape[2:])


def interval(samples: np.ndarray, prob: float = PROB, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and equal-tailed interval along `axis`."""
    lower, median, upper = np.quantile(samples, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=axis)
    return median, lower, upper


def other_dim(da, exclude: tuple[str, ...]) -> str | None:
    rest = [d for d in da.dims if d not in ("chain", "draw") + exclude]
    return rest[0] if rest else None


# Prior keys whose variable in the model has another name.
PRIOR_VARIABLES = {("safety", "rate"): "ae_rate"}


def prior_variables(fit) -> list[tuple[str, str, object]]:
    """(prior key, posterior variable, Prior) for every parameter of the fit that has a prior."""
    model = fit.spec.model
    posterior = fit.idata.posterior
    out = []
    for key, prior in fit.priors.for_model(model).items():
        name = PRIOR_VARIABLES.get((model, key), key)
        if name in posterior:
            out.append((key, name, prior))
    return out
