"""Safety: adverse-event rate, its exceedance probability and events predicted in a future cohort.

beta-binomial (default): events ~ Binomial(n, rate), rate ~ Beta(safety.rate); conjugate, so the
  posterior is Beta(a + events, b + n - events), but it is sampled like every other model.
hierarchical: events_c ~ Binomial(n_c, logistic(intercept + u_c)), u_c = center_sd * z_c
  (non-centred); ae_rate is the trial-population average sum_c n_c p_c / n.
With a single center the hierarchical model leaves the center level out (`marrow.models.levels`):
  events ~ Binomial(n, logistic(intercept)), no center_sd.
future_events ~ Binomial(n_future, ae_rate) (posterior predictive, also stored in the posterior so
that summaries report it). Pointwise log-likelihood is stored per patient (Bernoulli).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from marrow import dims
from marrow.data import TrialData
from marrow.models import effects, levels
from marrow.models.descriptors.safety import DESCRIPTOR
from marrow.models.idata import (
    CHAIN_DRAW,
    LOG_LIKELIHOOD,
    OBSERVED_DATA,
    POSTERIOR_PREDICTIVE,
    Augmented,
    chain_draw_coords,
)
from marrow.models.inputs import ModelInputs, Quantity
from marrow.spec import ModelSpec

if TYPE_CHECKING:
    import pymc as pm

DEFAULT_TARGET_ACCEPT = DESCRIPTOR.target_accept
DEFAULT_FAMILY = str(DESCRIPTOR.default_family)  # the descriptor's `family` option
CENTER_VARIABLES = ("center_sd",)  # what the hierarchical model's center level adds


def family_of(spec: ModelSpec) -> str:
    return spec.resolved_family or DEFAULT_FAMILY  # never None: the model has a default family


def inputs(data: TrialData, spec: ModelSpec) -> ModelInputs:
    """Events and patients per center (exact aggregation); per-patient events kept for LOO."""
    centers = list(data.centers)
    center = data.center_index
    event = data.patients["adverse_event"].to_numpy(dtype=np.int64)
    arrays = {
        "center_n": np.bincount(center, minlength=len(centers)).astype(np.int64),
        "center_events": np.bincount(center, weights=event, minlength=len(centers)).astype(np.int64),
    }
    coords = {dims.CENTER: centers, dims.PATIENT: list(data.patient_ids)}
    dropped: tuple = ()
    information = {}
    if family_of(spec) == "hierarchical":  # the beta-binomial model has no center level
        dropped = levels.dropped_levels({dims.CENTER: centers}, {dims.CENTER: CENTER_VARIABLES})
        if levels.kept(dims.CENTER, dropped):  # the fewer of events and non-events per center
            information["center_effect"] = np.minimum(
                arrays["center_events"], arrays["center_n"] - arrays["center_events"]
            )
    extra = {"patient_center": center, "patient_event": event}
    return ModelInputs(arrays, coords, extra, dropped, effects.resolve(spec.parameterisation, information))


def build(inputs: ModelInputs, spec: ModelSpec, priors) -> pm.Model:
    """The PyMC graph; per-center binomial counts in pm.Data."""
    import pymc as pm
    import pytensor.tensor as pt

    p = priors.for_model("safety")
    coords = {k: v for k, v in inputs.coords.items() if k != dims.PATIENT}
    with pm.Model(coords=coords) as model:
        d = {name: pm.Data(name, value, dims=dims.CENTER) for name, value in inputs.arrays.items()}
        if family_of(spec) == "beta-binomial":
            rate = p["rate"].create("ae_rate")
            pm.Binomial("events", n=d["center_n"].sum(), p=rate, observed=d["center_events"].sum())
        else:
            intercept = p["intercept"].create("intercept")
            if levels.kept(dims.CENTER, inputs.dropped):
                center_sd = p["center_sd"].create("center_sd")
                # Non-centred: center_sd * center_z, not stored (summaries derive center_effect from it).
                centred = effects.is_centred(inputs.parameterisation, "center_effect")
                effect = effects.group_effect(
                    "center_effect", center_sd, dims.CENTER, centred=centred, z_name="center_z", store=False
                )
                eta = intercept + effect
            else:
                eta = intercept + pt.zeros_like(d["center_n"], dtype="float64")
            center_rate = pm.Deterministic("center_rate", pm.math.invlogit(eta), dims=dims.CENTER)
            pm.Binomial("events", n=d["center_n"], p=center_rate, observed=d["center_events"], dims=dims.CENTER)
            pm.Deterministic("ae_rate", pt.dot(d["center_n"], center_rate) / d["center_n"].sum())
    return model


def augment(idata, inputs: ModelInputs, spec: ModelSpec, rng: np.random.Generator) -> Augmented:
    """Per-patient log-likelihood and future events (posterior predictive and posterior; `idata` is read only)."""
    import xarray as xr

    post = idata.posterior
    coords = chain_draw_coords(post)
    if family_of(spec) == "beta-binomial":
        p_patient = post["ae_rate"].to_numpy()[..., None] * np.ones(len(inputs.extra["patient_event"]))
    else:
        p_patient = post["center_rate"].to_numpy()[..., inputs.extra["patient_center"]]
    event = inputs.extra["patient_event"]
    with np.errstate(divide="ignore"):
        pointwise = np.where(event == 1, np.log(p_patient), np.log1p(-p_patient))
    future = rng.binomial(spec.n_future, np.clip(post["ae_rate"].to_numpy(), 0.0, 1.0))
    n = inputs.arrays["center_n"]
    events = inputs.arrays["center_events"]
    predictive = xr.Dataset(
        {
            "future_events": (CHAIN_DRAW, future),
            "events": (CHAIN_DRAW, rng.binomial(int(n.sum()), np.clip(post["ae_rate"].to_numpy(), 0.0, 1.0))),
        },
        coords=coords,
    )
    observed = xr.Dataset(
        {
            "events": ((), int(events.sum())),
            "center_events": ((dims.CENTER,), events),
            "center_n": ((dims.CENTER,), n),
        },
        coords={dims.CENTER: inputs.coords[dims.CENTER]},
    )
    log_lik = xr.Dataset(
        {"adverse_event": (CHAIN_DRAW + (dims.PATIENT,), pointwise)},
        coords={**coords, dims.PATIENT: inputs.coords[dims.PATIENT]},
    )
    return Augmented(
        {POSTERIOR_PREDICTIVE: predictive, OBSERVED_DATA: observed, LOG_LIKELIHOOD: log_lik},
        posterior={"future_events": (CHAIN_DRAW, future)},
    )


def _future_patients(n: int) -> str:
    return f"{n} future patient{'' if n == 1 else 's'}"


def quantities(spec: ModelSpec) -> list[Quantity]:
    """Reported quantities; center terms only in the hierarchical model."""
    return [
        Quantity("ae_rate", "Adverse-event rate (trial population)", "rate"),
        Quantity("future_events", f"Predicted adverse events among {_future_patients(spec.n_future)}", "count"),
        Quantity("center_rate", "Adverse-event rate, {center}", "rate"),
        Quantity("center_sd", "Center sd (log-odds)", "sd"),
    ]


def probabilities(idata, spec: ModelSpec) -> list[tuple[str, float]]:
    """P(rate > threshold) and P(at least one event among the future patients)."""
    rate = idata.posterior["ae_rate"].to_numpy()
    out = [(f"P(adverse-event rate > {spec.threshold:g})", float((rate > spec.threshold).mean()))]
    if "future_events" in idata.posterior:
        future = idata.posterior["future_events"].to_numpy()
        out.append(
            (f"P(at least one adverse event among {_future_patients(spec.n_future)})", float((future > 0).mean()))
        )
    return out
