"""Fitting: build the model, sample it, add derived groups and provenance. No CLI here."""

from __future__ import annotations

import importlib.util
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from marrow import dims
from marrow.data import TrialData
from marrow.fits.compiled import CALLBACK
from marrow.fits.fit import Fit
from marrow.fits.provenance import build_provenance
from marrow.models.idata import (
    CHAIN_DRAW,
    CONSTANT_DATA,
    LOG_LIKELIHOOD,
    LOG_LIKELIHOOD_OMITTED,
    MAX_POINTWISE_VALUES,
    OBSERVED_DATA,
    omitted_reason,
)
from marrow.models.inputs import ModelInputs
from marrow.priors import PriorSet
from marrow.spec import ModelSpec, SamplerSettings

# Values nutpie's trace may hold in memory (8 bytes each: 40M is 320 MB). nutpie 0.16 keeps every
# iteration, warm-up included, of the parameters and also of the unconstrained point and its gradient
# (whatever `store_unconstrained`/`store_gradient` say): the frailty model at 20,000 patients,
# 4 x 2,000 iterations x 3 x 20,000 values = 3.8 GB. A larger trace goes to a temporary zarr store on
# disk (`trace_store`); the same draws for a seed either way.
MAX_MEMORY_TRACE_VALUES = 40_000_000
# Sampler statistics a disk trace has and nutpie's in-memory conversion leaves out (its store_* settings).
DISK_ONLY_STATS = (
    "gradient",
    "unconstrained_draw",
    "mass_matrix_inv",
    "mass_matrix_eigvals",
    "mass_matrix_stds",
    "divergence_start",
    "divergence_end",
    "divergence_momentum",
    "divergence_start_gradient",
)


def sample_model(
    model,
    settings: SamplerSettings,
    target_accept: float,
    progress: bool,
    compile_key: str | None = None,
    route: str = CALLBACK,
    refits: bool | None = None,
):
    """Run NUTS on `model` with the chosen backend; returns InferenceData (no log-likelihood pass).

    nutpie runs through `marrow.fits.compiled`, which keeps the compiled model for `compile_key`
    (when given) so a later fit of the same structure in this process skips compilation; `route` is
    the model's preferred way to nutpie (its descriptor's `nutpie_route`) and `refits` whether this
    structure is fitted again (None: `compiled.refits_expected()`), which `compiled.route_for` reads."""
    import pymc as pm

    from marrow.fits import graph_order

    quiet_pymc_logs(progress)
    if settings.sampler == "nutpie":
        return _sample_nutpie(model, settings, target_accept, progress, compile_key, route, refits)
    graph_order.apply()  # the same graph, so the same C compile-cache entry, in every process (nutpie: compiled.py)
    assert settings.cores is not None  # set by SamplerSettings.__post_init__
    kwargs = dict(
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        cores=min(settings.cores, settings.chains),
        random_seed=settings.seed,
        target_accept=target_accept,
        progressbar=progress,
        nuts_sampler=settings.sampler,
        compute_convergence_checks=False,
        **settings.extra,
    )
    if settings.sampler == "pymc":
        kwargs["idata_kwargs"] = {"log_likelihood": False}  # marrow computes its own (augment)
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
        return pm.sample(**kwargs)


def _sample_nutpie(
    model,
    settings: SamplerSettings,
    target_accept: float,
    progress: bool,
    compile_key: str | None,
    route: str,
    refits: bool | None,
):
    """nutpie with a (possibly cached) compiled model; the same seeds and groups as `pm.sample` gives."""
    import nutpie
    import pymc as pm
    from arviz import dict_to_dataset
    from pymc.backends.arviz import coords_and_dims_for_inferencedata, find_constants, find_observations
    from pymc.util import _get_seeds_per_chain

    from marrow.fits import deterministics
    from marrow.fits.compiled import compile_uncached, compiled_nutpie_model
    from marrow.fits.nutpie_callback import sampling_cores

    assert settings.cores is not None  # set by SamplerSettings.__post_init__
    extra = dict(settings.extra)
    var_names = extra.pop("var_names", None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*np.dot.. is faster on contiguous arrays.*")  # numba
        if compile_key is None:
            compiled = compile_uncached(model, _data_values(model), var_names, route, refits)
        else:
            compiled = compiled_nutpie_model(
                model, compile_key, _data_values(model), var_names, refits=refits, preferred=route
            )
        start = time.time()
        with trace_store(trace_values(compiled.n_dim, settings)) as store:
            idata = nutpie.sample(
                compiled,
                draws=settings.draws,
                tune=settings.tune,
                chains=settings.chains,
                cores=sampling_cores(compiled, min(settings.cores, settings.chains)),
                target_accept=target_accept,
                seed=_get_seeds_per_chain(settings.seed, 1)[0],
                progress_bar=progress,
                save_warmup=False,
                **({} if store is None else {"zarr_store": store}),
                **extra,
            )
            if store is not None:
                idata = read_disk_trace(idata)
    # nutpie also stores the unconstrained values (e.g. center_sd_log__); PyMC's NUTS does not.
    transformed = [model.rvs_to_values[rv].name for rv in model.free_RVs if model.rvs_to_transforms.get(rv) is not None]
    idata.posterior = idata.posterior.drop_vars([name for name in transformed if name in idata.posterior])
    idata.posterior.attrs["sampling_time"] = time.time() - start
    idata.posterior.attrs["tuning_steps"] = settings.tune
    # the callback route stores the free variables only; its deterministics are computed here, once
    idata.posterior = deterministics.add_missing(idata.posterior, model, var_names)
    coords, dims = coords_and_dims_for_inferencedata(model)
    groups = {
        name: dict_to_dataset(values, library=pm, coords=coords, dims=dims, default_dims=[])
        for name, values in ((CONSTANT_DATA, find_constants(model)), (OBSERVED_DATA, find_observations(model)))
    }
    idata.add_groups(groups, coords=coords, dims=dims)
    return idata


def trace_values(n_dim: int, settings: SamplerSettings) -> int:
    """Values nutpie's trace holds at least: every iteration, warm-up included, of the sampled
    parameters, the unconstrained point and its gradient (3 x `n_dim` per iteration)."""
    return settings.chains * (settings.tune + settings.draws) * 3 * n_dim


@contextmanager
def trace_store(values: int, limit: int | None = None) -> Iterator[Any]:
    """None (nutpie keeps its trace in memory) for a trace of at most `limit` values
    (default `MAX_MEMORY_TRACE_VALUES`, read at call time), else a zarr store in a temporary folder,
    removed on leaving; read what is kept from it (`read_disk_trace`) before then. A disk without room
    for the trace is a `UsageError` before sampling (the folder is in the system's temporary folder,
    `TMPDIR`)."""
    if values <= (MAX_MEMORY_TRACE_VALUES if limit is None else limit):
        yield None
        return
    import nutpie

    from marrow.fits.io import check_space

    with tempfile.TemporaryDirectory(prefix="marrow-trace-") as folder:
        check_space(Path(folder) / "trace", 8 * values)
        yield nutpie.zarr_store.LocalStore(folder)


def read_disk_trace(idata):
    """The posterior and sampler statistics of a trace nutpie wrote to disk, in memory: what its in-memory
    trace gives (no warm-up, no per-draw unconstrained point, gradient, mass matrix or divergence
    trajectories), so both give the same fit."""
    import arviz as az

    groups = {}
    for name in ("posterior", "sample_stats"):
        dataset = getattr(idata, name)
        dataset = dataset.drop_vars([v for v in DISK_ONLY_STATS if v in dataset.variables])
        used = {dim for variable in dataset.data_vars.values() for dim in variable.dims}
        dataset = dataset.drop_vars([c for c in dataset.coords if not set(dataset[c].dims) <= used]).load()
        # chain and draw labelled 0, 1, ... as arviz labels the in-memory trace
        dataset = dataset.assign_coords({dim: np.arange(dataset.sizes[dim]) for dim in CHAIN_DRAW})
        for variable in dataset.variables.values():
            variable.encoding = {}  # zarr's chunking and codecs, not NetCDF's
        groups[name] = dataset
    return az.InferenceData(**groups)


def _data_values(model) -> dict:
    """Current values of the model's pm.Data containers, by name."""
    return {var.name: var.get_value() for var in model.data_vars}


def quiet_pymc_logs(progress: bool) -> None:
    """PyMC's INFO lines duplicate marrow's own messages; keep them only with a progress bar."""
    import logging

    logging.getLogger("pymc").setLevel(logging.INFO if progress else logging.WARNING)


def drop_oversized_log_likelihood(idata, limit: int = MAX_POINTWISE_VALUES) -> str:
    """Drop a log_likelihood group too large to keep; returns the reason ('' when kept).

    Registry-sized recovery tables (60,000 rows x 4,000 draws = 240M values, 1.9 GB) would dominate
    memory and the file; PSIS-LOO is then reported as not computed, never silently.
    """
    if LOG_LIKELIHOOD not in idata.groups():
        return ""
    size = sum(int(v.size) for v in getattr(idata, LOG_LIKELIHOOD).data_vars.values())
    if size <= limit:
        return ""
    delattr(idata, LOG_LIKELIHOOD)
    return omitted_reason(size, limit)


def _descriptor(module):
    """The registered descriptor of a model's implementation module."""
    from marrow.descriptor import REGISTRY

    return next(d for d in REGISTRY if d.module == module.__name__)


def resolve_sampler(name: str, module) -> str:
    """'auto' -> the model's default sampler (its descriptor's) when installed, else PyMC's own NUTS."""
    if name != "auto":
        return name
    preferred = _descriptor(module).sampler
    if preferred != "pymc" and importlib.util.find_spec(preferred) is None:
        return "pymc"
    return preferred


def default_target_accept(module, inputs) -> float:
    """The model's own default (its descriptor's), which may depend on the data (e.g. the number of centers)."""
    chooser = getattr(module, "default_target_accept", None)
    return chooser(inputs) if chooser is not None else _descriptor(module).target_accept


def _stated_levels(module, inputs, spec) -> list[str]:
    """Sentences from a model that states its left-out levels itself (`dropped_levels(n_centers, n_lineages,
    spec)`), besides the `ModelInputs.dropped` record every model can give."""

    hook = getattr(module, "dropped_levels", None)
    if hook is None:
        return []
    return list(hook(len(inputs.coords.get(dims.CENTER, ())), len(inputs.coords.get(dims.LINEAGE, ())), spec))


def fit_model(
    data: TrialData,
    spec: ModelSpec,
    priors: PriorSet,
    settings: SamplerSettings,
    progress: bool = False,
    model=None,
    postprocess: bool = True,
    inputs: ModelInputs | None = None,
) -> Fit:
    """Fit `spec` to `data`. Pass a `model` built earlier (and data swapped in) to skip rebuilding,
    and `inputs` (the model's arrays of `data`) when the caller has them already.
    `postprocess=False` keeps the draws only: no posterior predictive, pointwise log-likelihood
    (PSIS-LOO) or log prior, for callers that fit many times and read the posterior alone.

    `priors` are as stated (log times in days); the fit uses and records them in `spec.time_unit`.
    The provenance records the hierarchy levels the data could not estimate (`dropped_levels`)."""
    from marrow.models import levels, module_for
    from marrow.priors.units import priors_in_unit

    module = module_for(spec.model)
    priors = priors_in_unit(priors, spec.time_unit)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    inputs = module.inputs(data, spec) if inputs is None else inputs
    # A model built earlier is refitted (`marrow.api.Refitter`): `compiled.route_for` then takes nutpie's
    # C callbacks with swappable data, built once.
    refit = model is not None
    route = _descriptor(module).nutpie_route
    if model is None:
        model = module.build(inputs, spec, priors)
    else:
        from marrow.models import swap_data

        swap_data(model, inputs)
    timings["build_s"] = time.perf_counter() - start
    target_accept = settings.target_accept or default_target_accept(module, inputs)
    settings = replace(settings, sampler=resolve_sampler(settings.sampler, module))

    from marrow.fits.compiled import structure_key

    key = structure_key(spec, priors, inputs, settings.extra.get("var_names"))
    start = time.perf_counter()
    idata = sample_model(
        model, settings, target_accept, progress, compile_key=key, route=route, refits=True if refit else None
    )
    timings["sample_s"] = time.perf_counter() - start  # includes compilation
    notes: dict[str, str] = {}
    if postprocess:
        from marrow.fits.log_prior import add_log_prior

        add_log_prior(idata, model, spec, priors)  # per-draw log prior, for `marrow sensitivity`

        start = time.perf_counter()
        rng = np.random.default_rng([settings.seed, 1])
        augmented = module.augment(idata, inputs, spec, rng)
        augmented.apply(idata)
        notes.update(augmented.notes)  # e.g. why the model left out the pointwise log-likelihood
        dropped = drop_oversized_log_likelihood(idata)
        if dropped:
            notes[LOG_LIKELIHOOD_OMITTED] = dropped
        timings["augment_s"] = time.perf_counter() - start
    else:
        notes[LOG_LIKELIHOOD_OMITTED] = "not computed: fitted with postprocess=False (draws only)"
    provenance = build_provenance(
        data,
        spec,
        priors,
        settings,
        extra={
            "target_accept": target_accept,
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "parameterisation": inputs.parameterisation,  # level -> centred/noncentred, as sampled
            # the means the model centred covariates at, for uncentred intercepts (`summarize --all`)
            **(
                {
                    "covariate_means": dict(
                        zip(inputs.coords["covariate"], map(float, inputs.extra["x_mean"]), strict=True)
                    )
                }
                if "x_mean" in inputs.extra
                else {}
            ),
            **notes,
            levels.ATTR: levels.to_json([*inputs.dropped, *_stated_levels(module, inputs, spec)]),
        },
    )
    return Fit(idata, provenance)
