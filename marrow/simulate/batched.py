"""Refit B replicates of the response model at once: one PyMC model of B independent blocks, one NUTS run.

Every variable of the binary hierarchical response model (`marrow.models.response`, centred or not as
the design's template resolves it) gets a leading `replicate` dim, and every data array too: block b is
replicate b's model, and no term links two blocks, so the joint posterior is the product of the B
posteriors and each block's marginal is its replicate's posterior. One nutpie run samples all B:
the per-step cost of nutpie (its Rust loop, the call into the compiled density) is paid once for B
models, and the density is evaluated vectorised over them.

What the blocks share is the sampler: one step size and one tree per draw (the mass matrix is
diagonal, so adapted per coordinate). A divergence or a tree-depth hit is a fact about the joint run,
not about one block: `BatchFit.divergences` counts the batch's, and a study charges it to every
replicate of the batch. R-hat and ESS are per block, from the block's slice of the draws.

The model is compiled once per process per (design, B) (`marrow.fits.compiled`) and refitted by
swapping the stacked arrays, as `marrow.simulate.refit` does for one replicate.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from marrow import convergence, dims
from marrow.models import effects, levels, response
from marrow.models.inputs import ModelInputs
from marrow.spec import ModelSpec, SamplerSettings

if TYPE_CHECKING:
    import pymc as pm

    from marrow.priors import PriorSet

FLOOR_ACCEPT = 0.6  # the lowest target acceptance a batch is given (`batch_target_accept`)
# Each data array's dims after the leading replicate dim: the binary response model's arrays.
DATA_DIMS = {name: d for name, d in response.DATA_DIMS.items() if name != "cell_counts"}


def build_batched(template: ModelInputs, spec: ModelSpec, priors: PriorSet, size: int) -> pm.Model:
    """The binary response model of `marrow.models.response` for `size` replicates of `template`'s
    shapes: every variable and data array with a leading `replicate` dim, no term across replicates.
    Variables: intercept, center_sd and center_effect (and center_z when non-centred; with centers),
    beta (with covariates) and response_rate: what a study stores, not the report's quantities."""
    import pymc as pm
    import pytensor.tensor as pt

    if spec.model != "response" or spec.outcome != "binary":
        raise ValueError(f"batched refits handle the binary response model, not {spec.model} ({spec.outcome})")
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    p = priors.for_model("response")
    coords = {k: v for k, v in template.coords.items() if k in (dims.CENTER, dims.COVARIATE, dims.CELL)}
    coords[dims.REPLICATE] = [str(b) for b in range(size)]
    arrays = stack([template] * size)
    r = dims.REPLICATE
    with pm.Model(coords=coords) as model:
        d = {name: pm.Data(name, arrays[name], dims=(r, *DATA_DIMS[name])) for name in DATA_DIMS}
        eta = p["intercept"].create("intercept", dims=r)[:, None]
        if levels.kept(dims.CENTER, template.dropped):
            center_sd = p["center_sd"].create("center_sd", dims=r)
            # Centred or not as the template resolved it (`marrow.models.effects`), as the single model.
            if effects.is_centred(template.parameterisation, "center_effect"):
                center_effect = pm.Normal("center_effect", 0.0, center_sd[:, None], dims=(r, dims.CENTER))
            else:
                z = pm.Normal("center_z", 0.0, 1.0, dims=(r, dims.CENTER))
                center_effect = pm.Deterministic("center_effect", center_sd[:, None] * z, dims=(r, dims.CENTER))
            eta = eta + pt.take_along_axis(center_effect, d["cell_center"], axis=1)
        if template.coords[dims.COVARIATE]:
            beta = p["beta"].create("beta", dims=(r, dims.COVARIATE))
            eta = eta + (d["cell_x"] * beta[:, None, :]).sum(axis=-1)
        eta = eta + pt.zeros_like(d["cell_n"], dtype="float64")  # (replicate, cell) in every case
        # The binomial log-likelihood without its data-only term log C(n, y): the same posterior, and
        # no log-gamma functions at every gradient (a stack of 2 took 12 us per gradient with
        # pm.Binomial, 5.5 us with this kernel: docs/performance.md, "Batched refits").
        kernel = d["cell_responders"] * eta - d["cell_n"] * pt.softplus(eta)
        pm.Potential("responders", kernel.sum())
        pm.Deterministic("response_rate", (d["cell_weight"] * pm.math.invlogit(eta)).sum(axis=-1), dims=r)
    return model


def batch_target_accept(single: float, size: int) -> float:
    """The joint run's target acceptance that gives each of `size` blocks the step size a single fit
    at `single` gets (at least FLOOR_ACCEPT).

    The energy error of the joint run is the sum of the blocks' independent errors: its sd grows as
    sqrt(size), and for small errors 1 - acceptance grows with that sd. Holding the joint run at the
    single fit's target would shrink every block's step size by about size**(-1/4) (the steps per
    draw double from B = 8 on: docs/performance.md); 1 - sqrt(size) * (1 - single) does not."""
    return max(FLOOR_ACCEPT, 1.0 - math.sqrt(size) * (1.0 - single))


def stack(replicates: Sequence[ModelInputs]) -> dict[str, np.ndarray]:
    """The replicates' response arrays stacked along a new leading axis (same shapes in each)."""
    return {name: np.stack([inputs.arrays[name] for inputs in replicates]) for name in DATA_DIMS}


@dataclass(frozen=True)
class BatchFit:
    """One batched run: draws (chain, draw, replicate, ...) per variable, the batch's divergences, and
    per replicate the worst R-hat and ESS over its variables' elements."""

    draws: dict[str, np.ndarray]
    divergences: int
    max_rhat: np.ndarray
    min_ess_bulk: np.ndarray
    min_ess_tail: np.ndarray

    def replicate(self, name: str, b: int) -> np.ndarray:
        """Replicate b's (chain, draw, ...) draws of `name`."""
        return self.draws[name][:, :, b]


class BatchedRefitter:
    """The response model for batches of `size` replicates of `template`'s shapes, built once; `fit`
    swaps a batch's arrays in and samples it with nutpie."""

    def __init__(
        self,
        spec: ModelSpec,
        priors: PriorSet,
        settings: SamplerSettings,
        template: ModelInputs,
        size: int,
        scale_accept: bool = True,
    ) -> None:
        from marrow.fits.compiled import structure_key
        from marrow.fits.run import default_target_accept
        from marrow.models import module_for

        self.size, self.settings, self.template = size, settings, template
        self.model = build_batched(template, spec, priors, size)
        single = settings.target_accept or default_target_accept(module_for(spec.model), template)
        self.target_accept = batch_target_accept(single, size) if scale_accept else single
        from marrow.simulate.study import STORED

        # The variables a single refit of a study keeps, on which the diagnostics are computed:
        # center_effect whether centred or not, not center_z.
        self.var_names = [n for n in STORED if n in self.model.named_vars]
        self.key = (
            "batched:"
            + hashlib.sha256(f"{structure_key(spec, priors, template, self.var_names)}:{size}".encode()).hexdigest()
        )

    def fit(self, replicates: Sequence[ModelInputs], seed: int) -> BatchFit:
        """Sample the `size` replicates' posteriors in one run (exactly `size`: pad a short batch)."""
        import pymc as pm

        from marrow.simulate.refit import sample_nutpie

        if len(replicates) != self.size:
            raise ValueError(f"a batch holds {self.size} replicates, got {len(replicates)}")
        with self.model:
            pm.set_data(stack(replicates))
        draws, diverging = sample_nutpie(
            self.model, self.key, self.settings, int(seed), self.target_accept, self.var_names
        )
        rhat, bulk, tail = per_replicate_diagnostics(draws, self.size)
        return BatchFit(draws, int(diverging.sum()), rhat, bulk, tail)


def per_replicate_diagnostics(draws: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, ...]:
    """Per replicate: the largest R-hat and the smallest bulk and tail ESS over every element of
    every variable (as `marrow.simulate.refit` reports for one fit), each computed on the replicate's
    own slice. Arrays are (chain, draw, replicate, ...)."""
    flat = np.concatenate([v.reshape(v.shape[0], v.shape[1], size, -1) for v in draws.values()], axis=-1)
    m, n, _, k = flat.shape
    elements = flat.reshape(m, n, size * k)
    out = []
    for statistic, reducer in (
        (convergence.rhat, np.nanmax),
        (convergence.ess_bulk, np.nanmin),
        (convergence.ess_tail, np.nanmin),
    ):
        values = statistic(elements).reshape(size, k)
        out.append(np.array([reducer(row) if np.isfinite(row).any() else np.nan for row in values]))
    return tuple(out)


_REFITTERS: dict[str, BatchedRefitter] = {}


def batched_refitter_for(
    spec: ModelSpec, priors: PriorSet, settings: SamplerSettings, template: ModelInputs, size: int
) -> BatchedRefitter:
    """The process's batched refitter for this design and batch size (built once, compiled at its first fit)."""
    from marrow.simulate.refit import design_key

    key = design_key(spec, priors, settings, template, batch=size)
    refitter = _REFITTERS.get(key)
    if refitter is None:
        refitter = _REFITTERS[key] = BatchedRefitter(spec, priors, settings, template, size)
    return refitter
