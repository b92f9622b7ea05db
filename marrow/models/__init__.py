"""Model builders: one module per model family, found through a small registry.

Each module provides:
- `inputs(data, spec) -> ModelInputs`: pure numpy, no PyMC;
- `build(inputs, spec, priors) -> pm.Model`: the graph, never sampled here; every variable has dims;
- `augment(idata, inputs, spec, rng) -> Augmented` (`marrow.models.idata`): observed_data,
  posterior_predictive and pointwise log_likelihood computed from the posterior draws (no second pass
  through PyMC), derived posterior variables and provenance notes; it leaves `idata` unchanged;
- `quantities(spec) -> list[Quantity]`: what summaries report (labels may name a dim: '{center}');
- `probabilities(idata, spec) -> list[tuple[str, float]]`: posterior probabilities of statements.
Everything else about a model (name, options, defaults, needs, priors, sampler, report and plots) is its
descriptor's (`marrow/models/descriptors/`), registered in `marrow/models/registry.py`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from marrow.models.inputs import ModelInputs, Quantity

if TYPE_CHECKING:
    import pymc as pm

    from marrow.data import TrialData
    from marrow.priors import PriorSet
    from marrow.spec import ModelSpec


def module_for(model: str) -> ModuleType:
    """The module implementing `model` (its descriptor's `module`, imported on first use)."""
    from marrow.descriptor import REGISTRY

    return importlib.import_module(REGISTRY.get(model).module)


def model_inputs(data: TrialData, spec: ModelSpec) -> ModelInputs:
    return module_for(spec.model).inputs(data, spec)


def build_model(data: TrialData, spec: ModelSpec, priors: PriorSet, inputs: ModelInputs | None = None) -> pm.Model:
    """Build (never sample) the PyMC model for `spec` on `data` with `priors` (log times stated in days,
    moved to `spec.time_unit` as `marrow.fits.run.fit_model` does). `inputs`: the model's arrays of
    `data`, when the caller has them already."""
    from marrow.priors.units import priors_in_unit

    module = module_for(spec.model)
    inputs = module.inputs(data, spec) if inputs is None else inputs
    return module.build(inputs, spec, priors_in_unit(priors, spec.time_unit))


def swap_data(model: pm.Model, inputs: ModelInputs) -> None:
    """Put new data of the same structure into a built model (cells or rows may change in number)."""
    import pymc as pm

    with model:
        pm.set_data(inputs.arrays, coords={k: v for k, v in inputs.coords.items() if k in model.coords})


__all__ = ["ModelInputs", "Quantity", "build_model", "model_inputs", "module_for", "swap_data"]
