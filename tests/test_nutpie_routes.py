"""The routes from a PyMC model to nutpie (`marrow.fits.compiled.route_for`): CALLBACK and CFUNC give the
same draws, FROZEN (data compiled in) its own for a seed and the same posterior; the graph, so
PyTensor's disk-cache key, is the same in every process (`marrow.fits.graph_order`), frozen or not."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from marrow.data import load_trial
from marrow.fits import compiled, deterministics
from marrow.fits.nutpie_callback import sampling_cores
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
if FROZEN:
    from pymc.model.transform.optimization import freeze_dims_and_data

    model = freeze_dims_and_data(model)
point = make_initial_point_fn(model=model, return_transformed=True)
_, _, logp, expand, _, _ = _make_functions(
    model, mode="NUMBA", compute_grad=True, join_expanded=False, pymc_initial_point_fn=point, var_names=None
)
print(json.dumps([CACHED_SRC_FUNCTIONS.get(f.vm.jit_fn.py_func) for f in (logp, expand)]))
"""


@pytest.mark.parametrize("frozen", [False, True], ids=["shared", "frozen"])
def test_the_graph_and_its_cache_key_are_the_same_in_every_process(frozen):
    """Without `graph_order` the recovery model's key took 4 values in 5 processes (set order by address)."""
    command = [sys.executable, "-c", f"FROZEN = {frozen}\n" + KEY_SCRIPT]
    runs = [subprocess.run(command, capture_output=True, text=True, check=True) for _ in range(4)]
    keys = [json.loads(run.stdout) for run in runs]
    assert all(key[0] is not None for key in keys)  # cacheable at all
    assert all(key == keys[0] for key in keys), keys


def _draws(compiled_model, seed: int = 11, model=None, cores: int = 2) -> dict[str, np.ndarray]:
    """nutpie's draws by variable; with `model`, the deterministics nutpie did not store added as a fit adds them."""
    import nutpie

    idata = nutpie.sample(compiled_model, draws=150, tune=150, chains=2, cores=cores, seed=seed, progress_bar=False)
    posterior = idata.posterior if model is None else deterministics.add_missing(idata.posterior, model)
    return {name: values.to_numpy() for name, values in posterior.data_vars.items()}


@pytest.mark.sampling
@pytest.mark.parametrize("spec", [RESPONSE, RECOVERY], ids=["response", "recovery"])
def test_both_routes_give_the_same_draws(spec):
    """The same free variables bit for bit; the callback route's deterministics, computed with numpy after
    sampling (`marrow.fits.deterministics`), equal those compiled into the C callbacks up to rounding."""
    model = build_model(load_trial(None, None, spec.needs()), spec, load_prior_set())
    arrays = {var.name: var.get_value() for var in model.data_vars}
    callback_model = compiled.compile_uncached(model, arrays, None, compiled.CALLBACK)
    cfunc_model = compiled.compile_by_route(model, None, compiled.CFUNC)
    # marrow samples the callback route on one thread (its chains hold the GIL in turn), the C callbacks on two
    assert sampling_cores(callback_model, 2) == 1 and sampling_cores(cfunc_model, 2) == 2
    by_callback = _draws(callback_model, model=model, cores=1)
    by_cfunc = _draws(cfunc_model)
    assert list(by_callback) == list(by_cfunc)  # the same variables, in the same order
    computed = {det.name for det in model.deterministics}
    assert computed  # both models store deterministics: the test compares something
    for name in by_cfunc:
        if name in computed:
            np.testing.assert_allclose(by_callback[name], by_cfunc[name], rtol=1e-12, atol=1e-14, err_msg=name)
        else:
            assert np.array_equal(by_callback[name], by_cfunc[name]), name
    assert np.std(by_cfunc[next(iter(by_cfunc))]) > 0  # real draws, not a constant


def test_the_route_follows_the_model_the_size_and_refits():
    small = {"x": np.zeros(100)}
    large = {"x": np.zeros(compiled.CALLBACK_MAX_VALUES + 1)}
    assert compiled.route_for(small, refits=False) == compiled.CALLBACK
    assert compiled.route_for(small, refits=True) == compiled.CFUNC
    assert compiled.route_for(large, refits=False) == compiled.CFUNC
    # a model that prefers C callbacks, fitted once: its data compiled in, up to CALLBACK_MAX_VALUES values;
    # larger data, or refitted: swappable data
    assert compiled.route_for(small, refits=False, preferred=compiled.CFUNC) == compiled.FROZEN
    assert compiled.route_for(large, refits=False, preferred=compiled.CFUNC) == compiled.CFUNC
    assert compiled.route_for(large, refits=True, preferred=compiled.CFUNC) == compiled.CFUNC
    with pytest.raises(ValueError, match="nutpie route"):
        compiled.route_for(small, refits=False, preferred="jax")


def test_the_data_key_follows_the_values():
    data = {"a": np.arange(5.0), "b": np.array([1, 2], dtype=np.int64)}
    key = compiled.data_key(data)
    assert key == compiled.data_key({"b": data["b"].copy(), "a": data["a"].copy()})  # values, not objects
    assert key != compiled.data_key({**data, "a": np.arange(5.0) + 1e-12})
    assert key != compiled.data_key({**data, "b": data["b"].astype(np.int32)})
    assert key != compiled.data_key({**data, "a": data["a"].reshape(5, 1)})


@dataclasses.dataclass(frozen=True)
class _Built:
    """Stands in for a compiled nutpie model (plumbing only: nothing is sampled)."""

    data: tuple
    shared_data: dict = dataclasses.field(default_factory=dict)
    _coords: dict = dataclasses.field(default_factory=dict)

    @property
    def coords(self):
        return self._coords

    def with_data(self, **updates):
        assert not updates  # a frozen model has no data to swap
        return self


def test_a_frozen_compile_is_reused_for_the_same_data_only(monkeypatch):
    built = []

    def fake_compile(model, var_names, route):
        built.append(route)
        return _Built(tuple(var.get_value().tolist() for var in model.data_vars))

    monkeypatch.setattr(compiled, "compile_by_route", fake_compile)
    compiled.clear()
    spec = RECOVERY
    model = build_model(load_trial(None, None, spec.needs()), spec, load_prior_set())
    arrays = {var.name: var.get_value() for var in model.data_vars}
    first = compiled.compiled_nutpie_model(model, "key", arrays, None, refits=False, preferred=compiled.CFUNC)
    again = compiled.compiled_nutpie_model(model, "key", dict(arrays), None, refits=False, preferred=compiled.CFUNC)
    assert built == [compiled.FROZEN] and again.data == first.data
    other = {**arrays, "event_log_day": arrays["event_log_day"] + 0.5}
    compiled.compiled_nutpie_model(model, "key", other, None, refits=False, preferred=compiled.CFUNC)
    assert built == [compiled.FROZEN, compiled.FROZEN]  # other values: compiled again, not swapped
    compiled.clear()


@pytest.mark.sampling
def test_frozen_draws_are_reproducible_and_from_the_same_posterior():
    model = build_model(load_trial(None, None, RECOVERY.needs()), RECOVERY, load_prior_set())
    frozen = compiled.compile_by_route(model, None, compiled.FROZEN)
    assert not frozen.shared_data  # the data are constants of the compiled code
    once, twice = _draws(frozen), _draws(compiled.compile_by_route(model, None, compiled.FROZEN))
    for name in once:
        assert np.array_equal(once[name], twice[name]), name
    shared = _draws(compiled.compile_by_route(model, None, compiled.CFUNC))
    for name in ("median_days", "cure_fraction", "time_ratio"):
        a, b = once[name].reshape(-1, *once[name].shape[2:]), shared[name].reshape(-1, *shared[name].shape[2:])
        # 300 draws each: means within 4 Monte Carlo standard errors (ESS ~ a quarter of the draws)
        se = np.sqrt((a.var(axis=0) + b.var(axis=0)) / (len(a) / 4))
        assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) < 4 * se), name
