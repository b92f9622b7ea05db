"""Hierarchical response models: binary (logistic) and ordinal (cumulative logit, NR < PR < CR).

Linear predictor for patient i in center c:  eta_i = intercept + u_c + x_i' beta,
u_c = center_sd * z_c with z_c ~ Normal(0, 1) (non-centred), or u_c ~ Normal(0, center_sd) (centred, no
center_z) where every center has many responders and non-responders (`marrow.models.effects`).
Binary:   P(responder) = logistic(eta).
Ordinal:  P(response >= PR) = logistic(eta),  P(CR) = logistic(eta - cr_gap),  cr_gap > 0.
The likelihood is summed over cells of identical (center, covariates) as binomial (multinomial)
counts, which is exact; pointwise log-likelihood is per patient for PSIS-LOO (stored once per group of
identical patients above PER_PATIENT_LOO_LIMIT, expanded exactly by `marrow.loo`).
With a single center the center level is left out (`marrow.models.levels`): eta_i = intercept + x_i' beta,
and the fit has no center_sd, center_z, center_effect or new-center quantities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from marrow import dims
from marrow.data import TrialData
from marrow.models import effects, levels
from marrow.models.cells import cells
from marrow.models.descriptors.response import DESCRIPTOR
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
# nutpie: 0.3 s of sampling on the bundled trial (PyMC's NUTS ~5 s), 0 divergences in 40 of 40 seeds
# at 0.95; its ~10 s compile is paid once per process and kept (marrow.fits.compiled, marrow worker).
DEFAULT_SAMPLER = DESCRIPTOR.sampler
# With few centers the center sd is weakly identified and NUTS diverges at Stan's 0.8 (docs/models.md);
# from this many centers on it is well identified and 0.8 takes a third fewer steps per draw.
MANY_CENTERS = 20
MANY_CENTERS_TARGET_ACCEPT = 0.8
CATEGORIES = ["NR", "PR", "CR"]
# Up to this many patients the pointwise log-likelihood (for PSIS-LOO) is stored per patient; above it,
# once per group of patients with the same (cell, outcome), whose terms are identical at every draw,
# so memory grows with cells, not patients (`marrow.loo` expands PSIS-LOO to patients exactly).
PER_PATIENT_LOO_LIMIT = 5000
# What the center level adds to a fit; left out with a single center.
CENTER_VARIABLES = ("center_sd", "center_effect", "new_center_rate")


def _cell_label(center: str, covariates: tuple[str, ...], values: tuple[float, ...]) -> str:
    if not covariates:
        return center
    return center + " | " + ", ".join(f"{c}={v:g}" for c, v in zip(covariates, values, strict=True))


def inputs(data: TrialData, spec: ModelSpec) -> ModelInputs:
    """Aggregate patients into (center, covariate pattern) cells with counts per outcome category."""
    patients = data.patients
    covariates = data.covariates
    x = data.covariate_matrix()
    cell = cells(np.column_stack([data.center_index, x]))  # sorted by center, then covariates
    cell_of_patient = cell.of_row.astype(np.int64)
    n_cells = len(cell)
    cell_center = data.center_index[cell.first].astype(np.int64)
    cell_x = x[cell.first].reshape(n_cells, len(covariates))

    if spec.outcome == "ordinal":
        category = patients["response"].map({c: i for i, c in enumerate(CATEGORIES)}).to_numpy(dtype=np.int64)
    else:
        category = patients["responder"].to_numpy(dtype=np.int64)
    n_categories = 3 if spec.outcome == "ordinal" else 2
    counts = np.zeros((n_cells, n_categories), dtype=np.int64)
    np.add.at(counts, (cell_of_patient, category), 1)
    n = counts.sum(axis=1)
    responders = counts[:, 1:].sum(axis=1)

    centers = list(data.centers)
    n_center = np.bincount(cell_center, weights=n, minlength=len(centers))
    center_weights = np.zeros((len(centers), n_cells))
    center_weights[cell_center, np.arange(n_cells)] = n / n_center[cell_center]
    labels = [_cell_label(centers[c], covariates, tuple(cell_x[j])) for j, c in enumerate(cell_center)]

    arrays = {
        "cell_center": cell_center,
        "cell_x": cell_x,
        "cell_n": n.astype(np.int64),
        "cell_weight": n / n.sum(),
        "center_weight": center_weights,
    }
    if spec.outcome == "ordinal":
        arrays["cell_counts"] = counts
    else:
        arrays["cell_responders"] = responders
    coords = {
        dims.CENTER: centers,
        dims.COVARIATE: list(covariates),
        dims.CELL: labels,
        dims.PATIENT: list(data.patient_ids),
        dims.CATEGORY: CATEGORIES if spec.outcome == "ordinal" else ["NR", "R"],
    }
    extra = {"cell_of_patient": cell_of_patient, "patient_category": category}
    dropped = levels.dropped_levels({dims.CENTER: centers}, {dims.CENTER: CENTER_VARIABLES})
    information = {}
    if levels.kept(dims.CENTER, dropped):  # the fewer of responders and non-responders per center
        center_responders = np.bincount(cell_center, weights=responders, minlength=len(centers))
        information["center_effect"] = np.minimum(center_responders, n_center - center_responders)
    return ModelInputs(arrays, coords, extra, dropped, effects.resolve(spec.parameterisation, information))


def default_target_accept(inputs: ModelInputs) -> float:
    """0.95 for trials with fewer than MANY_CENTERS centers, 0.8 (Stan's default) from there on."""
    return MANY_CENTERS_TARGET_ACCEPT if len(inputs.coords[dims.CENTER]) >= MANY_CENTERS else DEFAULT_TARGET_ACCEPT


def build(inputs: ModelInputs, spec: ModelSpec, priors) -> pm.Model:
    """The PyMC graph; arrays live in pm.Data so new data can be swapped in."""
    import pymc as pm
    import pytensor.tensor as pt

    p = priors.for_model("response")
    coords = {k: v for k, v in inputs.coords.items() if k != dims.PATIENT}
    if spec.outcome != "ordinal":
        coords.pop(dims.CATEGORY)
    # No parameter checks in the log density: n >= 0 and the probabilities (invlogit, and the ordinal's
    # differences of ordered invlogits) lie in [0, 1] by construction; the checks at every cell cost
    # about 0.7 s (binary) and 2 s (ordinal) of numba compile (CPU) in a process with empty caches.
    with pm.Model(coords=coords, check_bounds=False) as model:
        d = {name: pm.Data(name, value, dims=_data_dims(name)) for name, value in inputs.arrays.items()}
        intercept = p["intercept"].create("intercept")
        centers = levels.kept(dims.CENTER, inputs.dropped)
        if centers:
            center_sd = p["center_sd"].create("center_sd")
            center_effect = effects.group_effect(
                "center_effect",
                center_sd,
                dims.CENTER,
                centred=effects.is_centred(inputs.parameterisation, "center_effect"),
                z_name="center_z",
            )
        fixed = intercept
        if inputs.coords[dims.COVARIATE]:
            beta = p["beta"].create("beta", dims=dims.COVARIATE)
            pm.Deterministic("odds_ratio", pt.exp(beta), dims=dims.COVARIATE)
            fixed = fixed + pt.dot(d["cell_x"], beta)
        if centers:
            eta = fixed + center_effect[d["cell_center"]]
            # A new center: its effect drawn from the center distribution, same patient mix as the trial.
            # Non-centred always: no data inform a new center, so the centred form would be a funnel.
            eta_new = fixed + effects.noncentred("new_center_z", center_sd)
        else:
            eta = fixed + pt.zeros_like(d["cell_n"], dtype="float64")  # one value per cell

        p_resp = pm.math.invlogit(eta)
        if spec.outcome == "ordinal":
            cr_gap = p["cr_gap"].create("cr_gap")
            p_cr = pm.math.invlogit(eta - cr_gap)
            probs = pt.stack([1.0 - p_resp, p_resp - p_cr, p_cr], axis=-1)
            pm.Multinomial(
                "response_counts", n=d["cell_n"], p=probs, observed=d["cell_counts"], dims=(dims.CELL, dims.CATEGORY)
            )
            pm.Deterministic("cr_rate", pt.dot(d["cell_weight"], p_cr))
            pm.Deterministic("pr_rate", pt.dot(d["cell_weight"], p_resp - p_cr))
        else:
            pm.Binomial("responders", n=d["cell_n"], p=p_resp, observed=d["cell_responders"], dims=dims.CELL)
        pm.Deterministic("response_rate", pt.dot(d["cell_weight"], p_resp))
        pm.Deterministic("center_rate", pt.dot(d["center_weight"], p_resp), dims=dims.CENTER)
        if centers:
            # sum(w * p) rather than dot: without covariates eta_new is a scalar and must broadcast over cells.
            pm.Deterministic("new_center_rate", pt.sum(d["cell_weight"] * pm.math.invlogit(eta_new)))
    return model


# Each data array's dims (binary outcome: cell_responders; ordinal: cell_counts).
DATA_DIMS: dict[str, tuple[str, ...]] = {
    "cell_center": (dims.CELL,),
    "cell_x": (dims.CELL, dims.COVARIATE),
    "cell_n": (dims.CELL,),
    "cell_weight": (dims.CELL,),
    "center_weight": (dims.CENTER, dims.CELL),
    "cell_responders": (dims.CELL,),
    "cell_counts": (dims.CELL, dims.CATEGORY),
}


def _data_dims(name: str) -> tuple[str, ...]:
    return DATA_DIMS[name]


def augment(idata, inputs: ModelInputs, spec: ModelSpec, rng: np.random.Generator) -> Augmented:
    """Observed data, posterior predictive counts and per-patient log-likelihood (`idata` is read only)."""
    import xarray as xr

    post = idata.posterior
    n = inputs.arrays["cell_n"]
    cell_center = inputs.arrays["cell_center"]
    n_centers = len(inputs.coords[dims.CENTER])
    cell_of_patient = inputs.extra["cell_of_patient"]
    category = inputs.extra["patient_category"]
    probs = cell_probabilities(post, inputs, spec)  # (chain, draw, cell[, category])

    per_patient = len(cell_of_patient) <= PER_PATIENT_LOO_LIMIT
    if per_patient:
        unit_cell, unit_category, group_of = cell_of_patient, category, None
    else:  # one unit per distinct (cell, outcome)
        unit = cells(np.column_stack([cell_of_patient, category]))
        unit_cell, unit_category, group_of = cell_of_patient[unit.first], category[unit.first], unit.of_row
    pointwise = log_probability(probs, unit_cell, unit_category, spec.outcome)
    if spec.outcome == "ordinal":
        observed_counts = inputs.arrays["cell_counts"]
        safe = np.clip(probs, 0, 1)
        draws = rng.multinomial(n, safe / safe.sum(-1, keepdims=True))
        rep_responders = draws[..., 1:].sum(axis=-1)
        obs_responders = observed_counts[:, 1:].sum(axis=1)
    else:
        obs_responders = inputs.arrays["cell_responders"]
        rep_responders = rng.binomial(n, probs)
    if per_patient:
        loo_dim, loo_labels = dims.PATIENT, inputs.coords[dims.PATIENT]
    else:
        loo_dim = dims.OUTCOME_GROUP
        loo_labels = [
            f"{inputs.coords[dims.CELL][c]} | {inputs.coords[dims.CATEGORY][k]}"
            for c, k in zip(unit_cell, unit_category, strict=True)
        ]

    def by_center(counts: np.ndarray) -> np.ndarray:
        out = np.zeros(counts.shape[:-1] + (n_centers,), dtype=np.int64)
        for c in range(n_centers):
            out[..., c] = counts[..., cell_center == c].sum(axis=-1)
        return out

    coords = chain_draw_coords(post)
    center_coord = {dims.CENTER: inputs.coords[dims.CENTER]}
    cell_coord = {dims.CELL: inputs.coords[dims.CELL]}
    predictive = xr.Dataset(
        {
            "responders": (CHAIN_DRAW + (dims.CELL,), rep_responders),
            "center_responders": (CHAIN_DRAW + (dims.CENTER,), by_center(rep_responders)),
            "total_responders": (CHAIN_DRAW, rep_responders.sum(axis=-1)),
        },
        coords={**coords, **center_coord, **cell_coord},
    )
    observed = xr.Dataset(
        {
            "responders": ((dims.CELL,), obs_responders),
            "center_responders": ((dims.CENTER,), by_center(obs_responders[None, :])[0]),
            "total_responders": ((), obs_responders.sum()),
            "cell_n": ((dims.CELL,), n),
            "center_n": ((dims.CENTER,), by_center(n[None, :])[0]),
        },
        coords={**center_coord, **cell_coord},
    )
    if spec.outcome == "ordinal":
        category_totals = draws.sum(axis=-2)
        predictive["category_counts"] = (CHAIN_DRAW + (dims.CATEGORY,), category_totals)
        observed["category_counts"] = ((dims.CATEGORY,), observed_counts.sum(axis=0))
        predictive = predictive.assign_coords({dims.CATEGORY: CATEGORIES})
        observed = observed.assign_coords({dims.CATEGORY: CATEGORIES})
    if group_of is not None:
        from marrow.loo import GROUP_OF_UNIT

        observed[GROUP_OF_UNIT] = xr.DataArray(
            group_of.astype(np.int64), dims=[dims.PATIENT], coords={dims.PATIENT: inputs.coords[dims.PATIENT]}
        )
    log_lik = xr.Dataset(
        {"response": (CHAIN_DRAW + (loo_dim,), pointwise)},
        coords={**coords, loo_dim: loo_labels},
        attrs={"marrow_loo_unit": loo_dim},
    )
    return Augmented({POSTERIOR_PREDICTIVE: predictive, OBSERVED_DATA: observed, LOG_LIKELIHOOD: log_lik})


def cell_probabilities(post, inputs: ModelInputs, spec: ModelSpec) -> np.ndarray:
    """Per-draw P(responder) per cell (binary), or P(NR, PR, CR) per cell (ordinal), from the posterior.

    Computed here rather than stored at every draw: at registry size the cells outnumber every other
    posterior quantity and would dominate sampling output, the file and the diagnostics."""
    from scipy.special import expit

    eta = post["intercept"].to_numpy()[..., None] + np.zeros(len(inputs.arrays["cell_center"]))
    if "center_effect" in post:  # absent when the single center's level was left out
        eta = eta + post["center_effect"].to_numpy()[..., inputs.arrays["cell_center"]]
    if inputs.coords[dims.COVARIATE]:
        eta = eta + np.einsum("ck,...k->...c", inputs.arrays["cell_x"], post["beta"].to_numpy())
    p_resp = expit(eta)
    if spec.outcome != "ordinal":
        return p_resp
    p_cr = expit(eta - post["cr_gap"].to_numpy()[..., None])
    return np.stack([1.0 - p_resp, p_resp - p_cr, p_cr], axis=-1)


def log_probability(probs: np.ndarray, cell: np.ndarray, category: np.ndarray, outcome: str) -> np.ndarray:
    """Per-draw log P(category | cell) for each (cell, category) pair: one patient's log-likelihood term."""
    if outcome == "ordinal":
        return np.log(np.clip(probs[:, :, cell, category], 1e-300, None))
    p = probs[:, :, cell]
    with np.errstate(divide="ignore"):
        return np.where(category == 1, np.log(p), np.log1p(-p))


def quantities(spec: ModelSpec) -> list[Quantity]:
    """Reported quantities, in order; variables absent from a fit (no covariates) are skipped."""
    out = [Quantity("response_rate", "Response rate (trial population)")]
    if spec.outcome == "ordinal":
        out += [Quantity("cr_rate", "Complete response rate"), Quantity("pr_rate", "Partial response rate")]
    out += [
        Quantity("center_rate", "Response rate, {center}"),
        Quantity("new_center_rate", "Response rate, new center (predictive)"),
    ]
    out.append(Quantity("odds_ratio", "Odds ratio, {covariate}", "ratio"))
    out += [
        Quantity("intercept", "Intercept (log-odds)", "log-odds"),
        Quantity("center_sd", "Center sd (log-odds)", "sd"),
    ]
    if spec.outcome == "ordinal":
        out.append(Quantity("cr_gap", "CR gap (log-odds)", "log-odds"))
    return out


def probabilities(idata, spec: ModelSpec) -> list[tuple[str, float]]:
    """Posterior probability that the population response rate exceeds the threshold."""
    rate = idata.posterior["response_rate"].to_numpy()
    return [(f"P(response rate > {spec.threshold:g})", float((rate > spec.threshold).mean()))]
