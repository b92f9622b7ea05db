"""A nutpie model whose log density is PyTensor's own numba function, called from Python.

nutpie's default route (`nutpie.compile_pymc_model`) wraps PyTensor's numba function in numba C
callbacks. numba cannot cache those, so every process pays 4-14 s to build them (docs/performance.md,
"Compile"). PyTensor caches its numba functions on disk by a key of the graph, so a new process that
calls them from Python starts sampling after about a second. The price: nutpie's chains take turns
holding the GIL for each gradient, so sampling is slower; on small data the compile it saves is worth
far more. Both routes run the same compiled function: the draws are bit for bit the same (tested).
The numba function stores the free variables only: the deterministics are computed from the draws
after sampling (`marrow.fits.deterministics`), which saves compiling them into it.

The disk cache hits only if the graph is the same in every process: `marrow.fits.graph_order`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def compile_callback_model(model, var_names: list[str] | None = None) -> Any:
    """`model` compiled for nutpie with Python callbacks into PyTensor's cached numba functions.

    Returns nutpie's `PyFuncModel`: `nutpie.sample` takes it as it takes a compiled PyMC model. Its
    draws hold the free variables (of `var_names`, when given) but no deterministic: the caller adds
    those (`marrow.fits.deterministics.add_missing`)."""
    from nutpie.compile_pymc import _make_functions, _prepare_dims_and_coords, _wrap_with_lock
    from nutpie.compiled_pyfunc import from_pyfunc
    from pymc.initial_point import make_initial_point_fn

    # The initial points nutpie's own compile uses: support points, jittered.
    initial_point_fn = _wrap_with_lock(
        make_initial_point_fn(model=model, jitter_rvs=set(model.free_RVs), return_transformed=True)
    )
    n_dim, _, logp_pt, expand_pt, initial_point, shape_info = _make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=False,
        pymc_initial_point_fn=initial_point_fn,
        var_names=[rv.name for rv in model.free_RVs if var_names is None or rv.name in var_names],
    )
    logp_fn, expand_fn = logp_pt.vm.jit_fn, expand_pt.vm.jit_fn
    logp_names = [var.name for var in logp_pt.get_shared()]
    expand_names = [var.name for var in expand_pt.get_shared()]
    shared: dict[str, np.ndarray] = {}
    for var in [*logp_pt.get_shared(), *expand_pt.get_shared()]:
        value = np.array(var.get_value(), order="C", copy=True)
        value.flags.writeable = False  # the types the numba functions were compiled (and cached) for
        shared[var.name] = value
    names, _, shapes = shape_info
    # numba compiles (or loads from the disk cache) on the first call: here, not in a sampler thread.
    start = initial_point(0)
    logp_fn(start, *[shared[name] for name in logp_names])
    expand_fn(start, *[shared[name] for name in expand_names])

    def make_logp_fn():
        def logp(x, **data):
            value, grad = logp_fn(x, *[data[name] for name in logp_names])
            return float(value), grad

        return logp

    def make_expand_fn(seed1, seed2, chain):
        def expand(x, **data):
            values = expand_fn(x, *[data[name] for name in expand_names])
            return {
                name: np.asarray(value, dtype="float64", order="C").reshape(shape)
                for name, value, shape in zip(names, values, shapes, strict=True)
            }

        return expand

    dims, coords = _prepare_dims_and_coords(model, shape_info)
    return from_pyfunc(
        ndim=n_dim,
        make_logp_fn=make_logp_fn,
        make_expand_fn=make_expand_fn,
        make_initial_point_fn=initial_point,
        expanded_dtypes=[np.dtype("float64")] * len(names),
        expanded_shapes=shapes,
        expanded_names=names,
        shared_data=shared,
        dims=dims,
        coords=coords,
    )


def sampling_cores(compiled: Any, cores: int) -> int:
    """Threads nutpie should sample `compiled` with: one for a model on this route, whose chains take
    turns with the GIL anyway (two threads contending for it sampled the bundled response model in
    2.2 s against 1.6 s with one; the draws are the same, each chain has its own seed), else `cores`."""
    from nutpie.compiled_pyfunc import PyFuncModel

    return 1 if isinstance(compiled, PyFuncModel) else cores
