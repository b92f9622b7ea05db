"""The two routes from a PyMC model to nutpie (`marrow.fits.compiled.route_for`) give the same draws,
and the graph, so PyTensor's disk-cache key, is the same in every process (`marrow.fits.graph_order`)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from marrow.data import load_trial
from marrow.fits import compiled
from marrow.models import build_model
from marrow.priors import load_prior_set
from marrow.spec import ModelSpec

pytest.importorskip("nutpie")

RESPONSE = ModelSpec("response", covariates=("prior_atg", "active_infection"))
RECOVERY = ModelSpec("recovery", covariates=("prior_atg", "active_infection"))

# Prints the numba cache keys of the recovery model's log density and of its stored variables.
KEY_SCRIPT = """
import json
from marrow.data import load_trial
from marrow.fits import graph_order
from marrow.models import build_model
from marrow.priors import load_prior_set
from marrow.spec import ModelSpec
from nutpie.compile_pymc import _make_functions
from pymc.initial_point import make_initial_point_fn
from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

graph_order.apply()
spec = ModelSpec("recovery", covariates=("prior_atg", "active_infection"))
model = build_model(load_trial(None, None, spec.needs()), spec, load_prior_set())
point = make_initial_point_fn(model=model, return_transformed=True)
_, _, logp, expand, _, _ = _make_functions(
    model, mode="NUMBA", compute_grad=True, join_expanded=False, pymc_initial_point_fn=point, var_names=None
)
print(json.dumps([CACHED_SRC_FUNCTIONS.get(f.vm.jit_fn.py_func) for f in (logp, expand)]))
"""


def test_the_graph_and_its_cache_key_are_the_same_in_every_process():
    """Without `graph_order` the recovery model's key took 4 values in 5 processes (set order by address)."""
    command = [sys.executable, "-c", KEY_SCRIPT]
    runs = [subprocess.run(command, capture_output=True, text=True, check=True) for _ in range(4)]
    keys = [json.loads(run.stdout) for run in runs]
    assert all(key[0] is not None for key in keys)  # cacheable at all
    assert all(key == keys[0] for key in keys), keys


def _draws(compiled_model, seed: int = 11) -> dict[str, np.ndarray]:
    import nutpie

    idata = nutpie.sample(compiled_model, draws=150, tune=150, chains=2, cores=2, seed=seed, progress_bar=False)
    return {name: values.to_numpy() for name, values in idata.posterior.data_vars.items()}


@pytest.mark.sampling
@pytest.mark.parametrize("spec", [RESPONSE, RECOVERY], ids=["response", "recovery"])
def test_both_routes_give_the_same_draws(spec):
    model = build_model(load_trial(None, None, spec.needs()), spec, load_prior_set())
    arrays = {var.name: var.get_value() for var in model.data_vars}
    by_callback = _draws(compiled.compile_uncached(model, arrays, None, compiled.CALLBACK))
    by_cfunc = _draws(compiled.compile_by_route(model, None, compiled.CFUNC))
    assert by_callback.keys() == by_cfunc.keys()
    for name in by_cfunc:
        assert np.array_equal(by_callback[name], by_cfunc[name]), name
    assert np.std(by_cfunc[next(iter(by_cfunc))]) > 0  # real draws, not a constant


def test_the_route_follows_the_model_the_size_and_refits():
    small = {"x": np.zeros(100)}
    large = {"x": np.zeros(compiled.CALLBACK_MAX_VALUES + 1)}
    assert compiled.route_for(small, refits=False) == compiled.CALLBACK
    assert compiled.route_for(small, refits=False, preferred=compiled.CFUNC) == compiled.CFUNC
    assert compiled.route_for(small, refits=True) == compiled.CFUNC
    assert compiled.route_for(large, refits=False) == compiled.CFUNC
    with pytest.raises(ValueError, match="nutpie route"):
        compiled.route_for(small, refits=False, preferred="jax")
