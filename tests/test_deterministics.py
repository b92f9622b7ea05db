"""Deterministics computed from the draws after sampling (`marrow.fits.deterministics`): values, dims, order,
and only those missing; and the response model's log density without parameter checks is the same density."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from marrow.data import load_trial
from marrow.fits import deterministics
from marrow.models import build_model
from marrow.priors import load_prior_set
from marrow.spec import ModelSpec


def _model():
    x = np.array([[1.0, 0.0], [0.5, 2.0], [0.0, 1.0]])
    with pm.Model(coords={"group": ["a", "b", "c"], "k": ["u", "v"]}) as model:
        data = pm.Data("x", x, dims=("group", "k"))
        sd = pm.HalfNormal("sd", 1.0)
        z = pm.Normal("z", 0.0, 1.0, dims="k")
        eta = pm.Deterministic("eta", sd * pt.dot(data, z), dims="group")
        pm.Deterministic("total", pt.sigmoid(eta).sum())
        pm.Deterministic("ratio", pt.exp(z))  # no dims: named after the variable, as ArviZ names them
    return model, x


def _posterior(rng, chains=2, draws=5):
    sd = np.abs(rng.normal(size=(chains, draws)))
    z = rng.normal(size=(chains, draws, 2))
    return (
        xr.Dataset(
            {"sd": (("chain", "draw"), sd), "z": (("chain", "draw", "k"), z)},
            coords={"chain": np.arange(chains), "draw": np.arange(draws), "k": ["u", "v"]},
        ),
        sd,
        z,
    )


def test_missing_deterministics_are_computed_from_the_draws():
    model, x = _model()
    posterior, sd, z = _posterior(np.random.default_rng(3))
    out = deterministics.add_missing(posterior, model)
    eta = sd[..., None] * np.einsum("gk,cdk->cdg", x, z)
    np.testing.assert_allclose(out["eta"].to_numpy(), eta, rtol=1e-14)
    np.testing.assert_allclose(out["total"].to_numpy(), (1 / (1 + np.exp(-eta))).sum(-1), rtol=1e-14)
    np.testing.assert_allclose(out["ratio"].to_numpy(), np.exp(z), rtol=1e-14)
    assert list(out.data_vars) == ["sd", "z", "eta", "total", "ratio"]  # model order, after the free variables
    assert out["eta"].dims == ("chain", "draw", "group") and list(out["group"].to_numpy()) == ["a", "b", "c"]
    assert out["total"].dims == ("chain", "draw")
    assert out["ratio"].dims == ("chain", "draw", "ratio_dim_0")


def test_blocks_of_draws_give_the_same_values(monkeypatch):
    """Large data: the draws go through in blocks (CHUNK_VALUES), with the same result as all at once."""
    model, _ = _model()
    posterior, _, _ = _posterior(np.random.default_rng(6), chains=3, draws=7)
    whole = deterministics.draws(model, posterior, ["eta", "total", "ratio"])
    monkeypatch.setattr(deterministics, "CHUNK_VALUES", 12)  # the data hold 6 values: 2 draws per block
    blocks = deterministics.draws(model, posterior, ["eta", "total", "ratio"])
    for name in whole:
        assert blocks[name].shape == whole[name].shape and np.array_equal(blocks[name], whole[name]), name


def test_only_the_missing_and_wanted_ones_are_computed():
    model, _ = _model()
    posterior, _, _ = _posterior(np.random.default_rng(4))
    posterior["total"] = (("chain", "draw"), np.full((2, 5), 7.0))  # stored already: kept as it is
    assert deterministics.missing(model, posterior, ["eta", "total", "sd"]) == ["eta"]
    out = deterministics.add_missing(posterior, model, ["eta", "total"])
    assert "ratio" not in out and np.all(out["total"].to_numpy() == 7.0) and "eta" in out
    assert deterministics.add_missing(out, model, ["eta", "total"]) is out  # nothing missing: unchanged


def test_the_response_density_is_the_same_without_parameter_checks():
    """`build` leaves out PyMC's parameter checks (n >= 0, 0 <= p <= 1 hold by construction): same log density."""
    from pytensor.compile.mode import Mode

    spec = ModelSpec("response", covariates=("prior_atg", "active_infection"))
    model = build_model(load_trial(None, None, spec.needs()), spec, load_prior_set())
    assert not model.check_bounds
    rng = np.random.default_rng(5)
    point = model.initial_point()
    mode = Mode(linker="py", optimizer="None")  # numpy: no compiling in the test
    unchecked = model.compile_logp(mode=mode)
    model.check_bounds = True
    checked = model.compile_logp(mode=mode)
    for _ in range(5):
        values = {name: value + rng.normal(size=np.shape(value)) for name, value in point.items()}
        assert np.isfinite(checked(values)) and unchecked(values) == checked(values)
