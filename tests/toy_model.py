"""A toy model family for tests/test_registry.py: one pooled response rate, added through the registry only.

Its descriptor and its implementation (`inputs`, `build`, `augment`, `quantities`, `probabilities`) are
what CONTRIBUTING.md asks of a new model; nothing else in marrow names it."""

from __future__ import annotations

import numpy as np

from marrow import dims
from marrow.descriptor import Headline, ModelDescriptor, Option
from marrow.models.idata import LOG_LIKELIHOOD, OBSERVED_DATA, Augmented
from marrow.models.inputs import ModelInputs, Quantity

DESCRIPTOR = ModelDescriptor(
    name="toy",
    summary="Toy model: one response rate pooled over centers.",
    module=__name__,
    examples=("marrow fit toy --out toy.nc",),
    options=(
        Option(
            "family",
            "uniform",
            "Prior of the rate: uniform Beta(1, 1) or jeffreys Beta(1/2, 1/2).",
            choices=("uniform", "jeffreys"),
        ),
        Option("threshold", 0.3, "Report P(toy rate > THRESHOLD)."),
    ),
    needs=lambda spec: ("response",),
    label=lambda spec: f"toy ({spec.resolved_family})",
    target_accept=0.85,
    section="Toy endpoint",
    headline=(Headline("toy", "toy_rate", label="Toy response rate", probability="toy rate >"),),
    threshold_key="toy_rate",
)


def inputs(data, spec) -> ModelInputs:
    """Responders and patients per center."""
    center = data.center_index
    responder = data.patients["responder"].to_numpy(dtype=np.int64)
    n_centers = len(data.centers)
    arrays = {
        "center_n": np.bincount(center, minlength=n_centers).astype(np.int64),
        "center_responders": np.bincount(center, weights=responder, minlength=n_centers).astype(np.int64),
    }
    return ModelInputs(arrays, {dims.CENTER: list(data.centers)})


def build(inputs: ModelInputs, spec, priors):
    import pymc as pm

    a = 1.0 if (spec.family or "uniform") == "uniform" else 0.5
    with pm.Model(coords=inputs.coords) as model:
        d = {name: pm.Data(name, value, dims=dims.CENTER) for name, value in inputs.arrays.items()}
        rate = pm.Beta("toy_rate", a, a)
        pm.Binomial("responders", n=d["center_n"], p=rate, observed=d["center_responders"], dims=dims.CENTER)
        pm.Deterministic("center_rate", rate * pm.math.ones_like(d["center_n"]), dims=dims.CENTER)
    return model


def augment(idata, inputs: ModelInputs, spec, rng) -> Augmented:
    """Observed counts and the pointwise log-likelihood per center, from the draws."""
    import xarray as xr
    from scipy.stats import binom

    post = idata.posterior
    rate = post["toy_rate"].to_numpy()[..., None]
    n, k = inputs.arrays["center_n"], inputs.arrays["center_responders"]
    coords = {
        "chain": post["chain"].to_numpy(),
        "draw": post["draw"].to_numpy(),
        dims.CENTER: inputs.coords[dims.CENTER],
    }
    log_lik = xr.Dataset({"responders": (("chain", "draw", dims.CENTER), binom.logpmf(k, n, rate))}, coords=coords)
    observed = xr.Dataset({"responders": ((dims.CENTER,), k)}, coords={dims.CENTER: inputs.coords[dims.CENTER]})
    return Augmented({OBSERVED_DATA: observed, LOG_LIKELIHOOD: log_lik})


def quantities(spec) -> list[Quantity]:
    return [Quantity("toy_rate", "Toy response rate"), Quantity("center_rate", "Toy rate, {center}")]


def probabilities(idata, spec) -> list[tuple[str, float]]:
    rate = idata.posterior["toy_rate"].to_numpy()
    return [(f"P(toy rate > {spec.threshold:g})", float((rate > spec.threshold).mean()))]
