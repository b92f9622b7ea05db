"""marrow.convergence against ArviZ's own R-hat and ESS, element by element."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from marrow import convergence


def _chains(rng, n_chain=4, n_draw=500, k=6, low=0.0):
    """AR(1) chains of varied autocorrelation, one chain shifted (R-hat > 1), ties, a constant element."""
    phi = np.linspace(low, 0.95, k)
    x = np.zeros((n_chain, n_draw, k))
    e = rng.normal(size=(n_chain, n_draw, k))
    for t in range(1, n_draw):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    x[0, :, 1] += 1.5
    x[:, :, 2] = np.round(x[:, :, 2])
    x[:, :, 3] = 2.0
    x[:, :, 4] = -x[:, :, 4]  # antithetic-like noise, negative pairs early
    return x


@pytest.mark.parametrize("shape", [(4, 500, 6), (2, 101, 6), (1, 400, 6), (4, 7, 6), (4, 1000, 12), (3, 64, 12)])
@pytest.mark.parametrize("low", [0.0, -0.7])
def test_matches_arviz(shape, low):
    import arviz as az

    rng = np.random.default_rng(sum(shape) + int(10 * low))
    x = _chains(rng, *shape, low=low)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = az.convert_to_dataset({"x": x})
        expected = {
            "rhat": az.rhat(dataset, method="rank")["x"].to_numpy(),
            "bulk": az.ess(dataset, method="bulk")["x"].to_numpy(),
            "tail": az.ess(dataset, method="tail")["x"].to_numpy(),
        }
        got = {"rhat": convergence.rhat(x), "bulk": convergence.ess_bulk(x), "tail": convergence.ess_tail(x)}
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-8, equal_nan=True, err_msg=name)


def test_a_stuck_chain_fails_and_nan_is_not_hidden():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 400, 2))
    x[1, :, 0] += 3.0
    x[2, 10, 1] = np.nan
    r = convergence.rhat(x)
    assert r[0] > 1.1 and np.isnan(r[1])
    assert np.isnan(convergence.ess_bulk(x)[1])


def test_bfmi_matches_arviz():
    import arviz as az

    rng = np.random.default_rng(8)
    energy = np.cumsum(rng.normal(size=(4, 300)), axis=1) * np.array([[0.2], [1.0], [3.0], [0.05]])
    ours = convergence.bfmi(energy)
    np.testing.assert_allclose(ours, az.bfmi(energy), rtol=1e-12)
    assert ours.shape == (4,) and len(set(np.round(ours, 6))) == 4  # one value per chain, chains differ
