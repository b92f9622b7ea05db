"""Refit one model design many times, lean: build and compile once per process, swap arrays, sample.

A simulation study needs the posterior of each replicate and its sampler diagnostics, not a saved fit:
no posterior predictive, no pointwise log-likelihood, no LOO, no provenance. `DesignRefitter` builds the
PyMC model from a template `ModelInputs` (the design's arrays: same shapes in every replicate), and
each `fit(inputs, seed)` swaps the replicate's arrays in and samples: with nutpie through
`marrow.fits.compiled.sample_arrays` (the compiled model kept per process, draws read from nutpie's Arrow
trace without an ArviZ conversion), with other samplers through `marrow.fits.run.sample_model`. `refitter_for` keeps one
refitter per design in the process, so a Dask worker compiles once and refits for every later task.

The draws equal those of a fresh `marrow fit` of the same arrays with the same seed and settings (the
same sampler path); the test checks it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from marrow import convergence
from marrow.fits.run import default_target_accept, resolve_sampler, sample_model
from marrow.models import module_for, swap_data
from marrow.models.inputs import ModelInputs
from marrow.spec import ModelSpec, SamplerSettings

if TYPE_CHECKING:
    import xarray as xr

    from marrow.priors import PriorSet


@dataclass(frozen=True)
class Refit:
    """One replicate's posterior draws and the sampler diagnostics a study reports per replicate."""

    posterior: xr.Dataset
    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float


class DesignRefitter:
    """Build `spec` once on `template` (arrays of the design's shapes) and refit it on new arrays.

    `priors` are as the model uses them (log times in `spec.time_unit`: `priors.units.priors_in_unit`).
    `var_names` limits the stored variables (None: all of them)."""

    def __init__(
        self,
        spec: ModelSpec,
        priors: PriorSet,
        settings: SamplerSettings,
        template: ModelInputs,
        var_names: list[str] | None = None,
    ) -> None:
        from dataclasses import replace

        from marrow.fits.compiled import structure_key

        self.spec, self.priors, self.template = spec, priors, template
        self.module = module_for(spec.model)
        self.model = self.module.build(template, spec, priors)
        extra = dict(settings.extra)
        if var_names is not None:
            extra["var_names"] = var_names
        self.settings = replace(settings, sampler=resolve_sampler(settings.sampler, self.module), extra=extra)
        self.target_accept = settings.target_accept or default_target_accept(self.module, template)
        self.key = structure_key(spec, priors, template, var_names)

    def fit(self, inputs: ModelInputs, seed: int) -> Refit:
        """Sample the model with `inputs` swapped in (same array names and ranks as the template)."""
        missing = set(self.template.arrays) - set(inputs.arrays)
        if missing:
            raise ValueError(f"replicate inputs lack arrays {sorted(missing)}")
        swap_data(self.model, inputs)
        if self.settings.sampler == "nutpie":
            draws, diverging = self._sample_nutpie(int(seed))
        else:
            draws, diverging = self._sample_other(int(seed))
        # Every element of every variable as one (chain, draw, element) array: one call per statistic.
        values = np.concatenate([v.reshape(v.shape[0], v.shape[1], -1) for v in draws.values()], axis=-1)
        return Refit(
            posterior=self._dataset(draws),
            divergences=int(diverging.sum()),
            max_rhat=_worst(values, convergence.rhat, np.nanmax),
            min_ess_bulk=_worst(values, convergence.ess_bulk, np.nanmin),
            min_ess_tail=_worst(values, convergence.ess_tail, np.nanmin),
        )

    def _sample_nutpie(self, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        var_names = self.settings.extra.get("var_names")
        return sample_nutpie(self.model, self.key, self.settings, seed, self.target_accept, var_names)

    def _sample_other(self, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        from dataclasses import replace

        settings = replace(self.settings, seed=seed)
        idata = sample_model(self.model, settings, self.target_accept, progress=False, compile_key=self.key)
        posterior = idata.posterior.transpose("chain", "draw", ...)
        draws = {name: da.to_numpy() for name, da in posterior.data_vars.items()}
        stats = idata.sample_stats
        diverging = stats["diverging"].to_numpy() if "diverging" in stats else np.zeros(1, dtype=bool)
        return draws, diverging

    def _dataset(self, draws: dict[str, np.ndarray]) -> xr.Dataset:
        """The draws as a posterior dataset with the model's dims and the swapped data's labels."""
        import xarray as xr

        model = self.model
        variables = {}
        for name, values in draws.items():
            var_dims = tuple(model.named_vars_to_dims.get(name, ()))
            if len(var_dims) != values.ndim - 2:
                var_dims = tuple(f"{name}_dim_{i}" for i in range(values.ndim - 2))
            variables[name] = (("chain", "draw", *var_dims), values)
        used = {d for dims_, _ in variables.values() for d in dims_[2:]}
        coords: dict[str, Any] = {
            d: list(labels) for d, labels in model.coords.items() if d in used and labels is not None
        }
        first = next(iter(draws.values()))
        coords |= {"chain": np.arange(first.shape[0]), "draw": np.arange(first.shape[1])}
        return xr.Dataset(variables, coords=coords)


def sample_nutpie(
    model, key: str, settings: SamplerSettings, seed: int, target_accept: float, var_names: list[str] | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draws (chain, draw, ...) per variable and the divergence flags of one nutpie run of `model`,
    compiled once per process under `key` (`marrow.fits.compiled.sample_arrays`) with `settings`."""
    from marrow.fits.compiled import sample_arrays

    assert settings.cores is not None  # set by SamplerSettings.__post_init__
    return sample_arrays(
        model,
        key,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        cores=settings.cores,
        seed=seed,
        target_accept=target_accept,
        var_names=var_names,
    )


def _worst(values: np.ndarray, statistic, reducer) -> float:
    """`reducer` (nanmax/nanmin) of `statistic` over every element of a (chain, draw, element) array
    (NaN when no element has a finite value)."""
    found = statistic(values)
    return float(reducer(found)) if np.isfinite(found).any() else float("nan")


_REFITTERS: dict[str, DesignRefitter] = {}


def design_key(
    spec: ModelSpec, priors: PriorSet, settings: SamplerSettings, template: ModelInputs, **extra: Any
) -> str:
    """A key for one design in one process: spec, priors, sampler settings (not the seed), array shapes."""
    payload = {
        "spec": spec.to_json(),
        "priors": priors.to_json(),
        "settings": {k: v for k, v in json.loads(settings.to_json()).items() if k != "seed"},
        "shapes": {k: [str(v.dtype), list(v.shape)] for k, v in sorted(template.arrays.items())},
        "coords": {k: len(v) for k, v in sorted(template.coords.items())},
        "extra": extra,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def refitter_for(
    spec: ModelSpec,
    priors: PriorSet,
    settings: SamplerSettings,
    template: ModelInputs,
    var_names: list[str] | None = None,
) -> DesignRefitter:
    """The process's refitter for this design (built, and compiled at its first fit, once per process)."""
    key = design_key(spec, priors, settings, template, var_names=var_names)
    refitter = _REFITTERS.get(key)
    if refitter is None:
        refitter = _REFITTERS[key] = DesignRefitter(spec, priors, settings, template, var_names)
    return refitter
