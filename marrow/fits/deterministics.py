"""A model's deterministics computed from the posterior draws once, after sampling, with numpy.

nutpie stores every variable through an "expand" function called at each draw. On the callback
route (`marrow.fits.nutpie_callback`) that function is PyTensor's numba code, and compiling the
deterministics into it cost about 1.5 s of numba compile in a process with empty caches (the response
model's expand graph: 30 nodes with them, 12 without); a script's plain model has fewer. So that
route stores the free variables only, and `add_missing` computes the deterministics afterwards: the
same PyTensor graph of each, vectorised over the draws (`vectorize_graph`), run once by PyTensor's
Python linker, which calls numpy and compiles nothing (about 0.05 s for 4,000 draws). The free
variables' draws are those of the compiled route; the deterministics equal its values up to rounding
(numpy's and numba's `exp` may differ in the last bit; tested).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

BLOCK_DRAWS = 250  # draws evaluated together at most (survival: 4,000 at once took 1.4 s, in blocks 0.3 s)
CHUNK_VALUES = 4_000_000  # values per intermediate array at most, roughly (32 MB of float64)


def missing(model, posterior, var_names: Iterable[str] | None = None) -> list[str]:
    """Deterministics of `model` to store (all, or those in `var_names`) that `posterior` lacks, in model order."""
    wanted = None if var_names is None else set(var_names)
    return [
        det.name
        for det in model.deterministics
        if (wanted is None or det.name in wanted) and det.name not in posterior.data_vars
    ]


def draws(model, posterior, names: list[str]) -> dict[str, np.ndarray]:
    """{name: (chain, draw, ...) values} of the deterministics `names`, from the free variables' draws."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode
    from pytensor.graph.replace import vectorize_graph

    free = list(model.free_RVs)
    # each free variable with a leading draw axis; the deterministics' graphs start from the free variables
    batched = {rv: pt.tensor(name=rv.name, dtype=rv.dtype, shape=(None, *rv.type.shape)) for rv in free}
    outputs = vectorize_graph([model[name] for name in names], replace=batched)
    function = pytensor.function(
        list(batched.values()), outputs, mode=Mode(linker="py", optimizer="None"), on_unused_input="ignore"
    )
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    values = [posterior[rv.name].to_numpy().reshape(n_chains * n_draws, *posterior[rv.name].shape[2:]) for rv in free]
    # Intermediates (e.g. a probability per cell, or per patient and time point) hold a draw axis:
    # evaluated in blocks of at most BLOCK_DRAWS draws, fewer when the data are large (the data's size
    # as the measure of one draw's intermediates), so each stays small and in cache.
    per_draw = max(1, sum(int(np.size(var.get_value())) for var in model.data_vars))
    step = max(1, min(BLOCK_DRAWS, CHUNK_VALUES // per_draw))
    blocks = [function(*(value[i : i + step] for value in values)) for i in range(0, n_chains * n_draws, step)]
    return {
        name: np.concatenate([np.asarray(block[k], dtype="float64") for block in blocks]).reshape(
            n_chains, n_draws, *np.shape(blocks[0][k])[1:]
        )
        for k, name in enumerate(names)
    }


def add_missing(posterior, model, var_names: Iterable[str] | None = None):
    """`posterior` (an xarray Dataset) with the deterministics it lacks (`missing`) added, in model order."""
    import xarray as xr

    names = missing(model, posterior, var_names)
    if not names:
        return posterior
    computed = draws(model, posterior, names)
    for name in names:
        value = computed[name]
        dims = tuple(model.named_vars_to_dims.get(name) or (f"{name}_dim_{i}" for i in range(value.ndim - 2)))
        labels = {dim: list(model.coords[dim]) for dim in dims if model.coords.get(dim) is not None}
        posterior = posterior.assign(
            {
                name: xr.DataArray(
                    value,
                    dims=("chain", "draw", *dims),
                    coords={**posterior["chain"].coords, **posterior["draw"].coords, **labels},
                )
            }
        )
    return posterior
