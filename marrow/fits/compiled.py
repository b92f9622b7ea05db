"""Compiled nutpie models kept for the life of the process, keyed by model structure.

Compiling a model for nutpie (numba) takes ~10 s; sampling a small trial takes ~0.3 s. A process that
fits the same structure again (the resident `marrow worker`, a simulation study) reuses the compiled
model and swaps the new data in (`CompiledPyMCModel.with_data`), so only the first fit pays.
The key covers everything the compiled code depends on: model spec, priors, the length of every
coordinate (not its labels: a simulated replicate with other center or cell names reuses the
compiled model, relabelled with its own coordinates), the rank and dtype of every data array, the
parameterisation of every hierarchy level as resolved from the data (centred or not: another graph),
and the variables stored. Same key, same compiled code: the draws are identical to a fresh compile
with the same seed (tested). A model compiled with its data frozen in (`FROZEN`) cannot swap data:
its key also covers the data values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from typing import Any

import numpy as np

from marrow.models.inputs import ModelInputs
from marrow.priors import PriorSet
from marrow.spec import ModelSpec

MAX_ENTRIES = 8
_CACHE: OrderedDict[str, Any] = OrderedDict()
CALLBACK, CFUNC, FROZEN = "callback", "cfunc", "frozen"
CALLBACK_MAX_VALUES = 20_000  # the largest data (sum of array sizes) fitted through CALLBACK (route_for)
_REFITS_EXPECTED = False


def structure_key(spec: ModelSpec, priors: PriorSet, inputs: ModelInputs, var_names: list[str] | None) -> str:
    """SHA-256 of what the compiled code depends on (not the data values)."""
    arrays = {name: [str(value.dtype), int(value.ndim)] for name, value in sorted(inputs.arrays.items())}
    payload = json.dumps(
        {
            "spec": spec.to_json(),
            "priors": priors.to_json(),
            "coord_sizes": {k: len(v) for k, v in inputs.coords.items()},
            "arrays": arrays,
            "parameterisation": inputs.parameterisation,
            "var_names": var_names,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def compiled_nutpie_model(
    model,
    key: str,
    arrays: dict,
    var_names: list[str] | None,
    *,
    refits: bool | None = None,
    preferred: str = CALLBACK,
):
    """The nutpie-compiled `model` with `arrays` as its data and `model`'s coordinate labels: from the
    cache when `key` was seen.

    `refits` (whether the process will fit this structure again; None: `refits_expected()`) and
    `preferred` (the model's route) choose the route to nutpie (`route_for`)."""
    import pandas as pd

    route = route_for(arrays, refits_expected() if refits is None else refits, preferred)
    key = f"{key}|{route}" + (f"|{data_key(arrays)}" if route == FROZEN else "")
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        # Only arrays the graph uses are in the compiled model (e.g. no covariate matrix without covariates;
        # none when FROZEN: the same data are compiled in, by the key).
        swapped = cached.with_data(
            **{name: _read_only(value) for name, value in arrays.items() if name in _shared_names(cached)}
        )
        labels = {name: pd.Index(values) for name, values in model.coords.items() if values is not None}
        return dataclasses.replace(swapped, _coords={**(swapped.coords or {}), **labels})
    compiled = compile_by_route(model, var_names, route)
    _CACHE[key] = compiled
    while len(_CACHE) > MAX_ENTRIES:
        _CACHE.popitem(last=False)
    return compiled


def compile_uncached(
    model, arrays: dict, var_names: list[str] | None, preferred: str = CALLBACK, refits: bool | None = None
):
    """`model` compiled for nutpie by the route `route_for` chooses, not kept."""
    return compile_by_route(
        model, var_names, route_for(arrays, refits_expected() if refits is None else refits, preferred)
    )


def compile_by_route(model, var_names: list[str] | None, route: str):
    """`model` compiled for nutpie by `route` (`CALLBACK`, `CFUNC` or `FROZEN`)."""
    from marrow.fits import graph_order

    graph_order.apply()
    if route == CALLBACK:
        from marrow.fits.nutpie_callback import compile_callback_model

        return compile_callback_model(model, var_names)
    import nutpie

    # FROZEN: PyMC's freeze_dims_and_data makes every pm.Data array and dim length a constant.
    return nutpie.compile_pymc_model(model, var_names=var_names, freeze_model=route == FROZEN)


def data_key(arrays: dict) -> str:
    """SHA-256 of the data values (names, dtypes, shapes and bytes): what a `FROZEN` compile depends on
    besides the structure."""
    digest = hashlib.sha256()
    for name, value in sorted(arrays.items()):
        value = np.ascontiguousarray(value)
        digest.update(f"{name}|{value.dtype}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _shared_names(compiled) -> set[str]:
    shared = getattr(compiled, "shared_data", None)
    return set(shared if shared is not None else compiled._shared_data)


def _read_only(value):
    """C-ordered and read-only, as the arrays the numba functions were compiled (and cached) for."""
    array = np.array(value, order="C", copy=True)
    array.flags.writeable = False
    return array


def route_for(arrays: dict, refits: bool, preferred: str = CALLBACK) -> str:
    """How the model's log density reaches nutpie, chosen by the numbers of docs/performance.md
    ("Compile"). `CALLBACK` (PyTensor's disk-cached numba function called from Python: about a
    second to start, but the chains take turns with the GIL) when the model prefers it (its
    descriptor's `nutpie_route`) and the process fits it once on data of at most
    `CALLBACK_MAX_VALUES` array values. Otherwise nutpie's numba C callbacks (rebuilt in every
    process, then the chains run in parallel): `CFUNC`, the data in pm.Data arrays that a refit
    swaps, when the process refits the structure (simulation, SBC, the resident worker) or the
    model prefers `CALLBACK` but the data are larger; `FROZEN`, the data compiled in as constants,
    when a model that prefers C callbacks is fitted once: its callbacks build in about half the
    time of `CFUNC`'s (recovery: 16 data arrays unpacked from nutpie's user data, run-time shape
    checks), and the same data reuse PyTensor's disk cache, but new data values compile PyTensor's
    function anew, as a script with numpy constants does. `CALLBACK` and `CFUNC` run the same
    compiled function and give the same draws; `FROZEN`'s constant-folded graph rounds differently,
    so its draws for a seed are its own (the same posterior)."""
    if preferred not in (CALLBACK, CFUNC):
        raise ValueError(f"nutpie route must be {CALLBACK!r} or {CFUNC!r}, not {preferred!r}")
    if refits:
        return CFUNC
    size = sum(int(np.size(value)) for value in arrays.values())
    if size > CALLBACK_MAX_VALUES:
        return CFUNC  # large data are not compiled in as constants (a registry: 60,000 recovery rows)
    return FROZEN if preferred == CFUNC else CALLBACK


def expect_refits(value: bool = True) -> None:
    """Declare that this process will fit the same structures again (the resident worker does)."""
    global _REFITS_EXPECTED
    _REFITS_EXPECTED = value


def refits_expected() -> bool:
    return _REFITS_EXPECTED


def cached_entries() -> int:
    return len(_CACHE)


def clear() -> None:
    _CACHE.clear()


def sample_arrays(
    model, key: str, *, draws: int, tune: int, chains: int, cores: int, seed: int, target_accept: float, var_names=None
) -> tuple[dict[str, Any], Any]:
    """NUTS through the cached nutpie model, returned lean: ({variable: (chain, draw, ...) array}, the
    (chain, draw) divergence flags), read straight from nutpie's Arrow trace.

    For many refits (a simulation study) that need the draws, not an InferenceData: ArviZ's conversion
    took about a third of a bundled response refit. Same compiled code, same seeds and same settings as
    `marrow.fits.run.sample_model`, so the same draws (tested)."""
    import nutpie
    import pyarrow
    from pymc.util import _get_seeds_per_chain

    arrays = {var.name: var.get_value() for var in model.data_vars}
    compiled = compiled_nutpie_model(model, key, arrays, var_names, refits=True)
    results = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=min(cores, chains),
        target_accept=target_accept,
        seed=_get_seeds_per_chain(seed, 1)[0],
        progress_bar=False,
        save_warmup=False,
        return_raw_trace=True,
    )
    draw_batches, stat_batches = results.get_arrow_trace()
    # nutpie also stores the unconstrained values (e.g. center_sd_log__); keep the model's own variables.
    keep = {rv.name for rv in model.free_RVs} | {v.name for v in model.deterministics}
    out: dict[str, list] = {}
    diverging = []
    for draw, stat in zip(draw_batches, stat_batches, strict=True):
        # nutpie hands over arro3 batches; pyarrow reads them (as nutpie's own conversion does).
        kept = ~pyarrow.array(stat.column("tuning")).to_numpy(zero_copy_only=False).astype(bool)
        diverging.append(pyarrow.array(stat.column("diverging")).to_numpy(zero_copy_only=False)[kept].astype(bool))
        for name in draw.column_names:
            if name not in keep:
                continue
            metadata = draw.column(name).field.metadata or {}
            column = pyarrow.array(draw.column(name))
            shape = metadata.get(b"shape", b"")
            item_shape = tuple(int(s) for s in shape.decode().split(",")) if shape else ()
            flat = column.flatten() if hasattr(column, "flatten") else column
            out.setdefault(name, []).append(flat.to_numpy(zero_copy_only=False).reshape((-1, *item_shape))[kept])
    return {name: np.stack(chains_) for name, chains_ in out.items()}, np.stack(diverging)
