"""The pieces every model shares: weighted cells of identical rows, the non-centred group effect, and
the InferenceData helpers with `Augmented`, what a model's augment returns (no sampling)."""

from __future__ import annotations

import numpy as np
import pytest

from marrow import dims
from marrow.data import load_trial
from marrow.models import model_inputs, safety
from marrow.models.cells import cells
from marrow.models.effects import noncentred
from marrow.models.idata import LOG_LIKELIHOOD, POSTERIOR_PREDICTIVE, Augmented, flat_draws, replace_groups
from marrow.spec import ModelSpec

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")


def test_cells_group_identical_rows_in_lexicographic_order():
    rng = np.random.default_rng(3)
    table = np.column_stack([rng.integers(0, 3, 200), rng.choice([0.5, -1.25, 2.0], 200), rng.integers(0, 2, 200)])
    c = cells(table)
    distinct = sorted({tuple(row) for row in table})
    assert [tuple(row) for row in table[c.first]] == distinct  # one cell per distinct row, sorted
    np.testing.assert_array_equal(table[c.first][c.of_row], table)  # every row is its cell's row
    assert all(c.first[j] == np.flatnonzero(c.of_row == j)[0] for j in range(len(c)))  # first occurrence
    np.testing.assert_array_equal(c.count, np.bincount(c.of_row))
    assert c.count.sum() == len(table) and len(c) == len(distinct)


def test_a_table_without_columns_is_one_cell():
    c = cells(np.zeros((7, 0)))
    assert len(c) == 1 and c.count.tolist() == [7] and c.of_row.tolist() == [0] * 7


def test_response_cells_hold_patients_of_one_center_and_covariate_row():
    spec = ModelSpec("response", covariates=("prior_atg",))
    data = load_trial(needs=spec.needs())
    inputs = model_inputs(data, spec)
    a, cell = inputs.arrays, inputs.extra["cell_of_patient"]
    np.testing.assert_array_equal(a["cell_center"][cell], data.center_index)
    np.testing.assert_array_equal(a["cell_x"][cell], data.covariate_matrix())
    assert a["cell_n"].sum() == len(data.patients)
    keys = list(zip(a["cell_center"], a["cell_x"][:, 0], strict=True))
    assert keys == sorted(set(keys))  # distinct, ordered by center then covariates


def test_noncentred_effect_is_loc_plus_sd_times_standard_normal_z():
    import pymc as pm

    with pm.Model(coords={dims.CENTER: ["A", "B", "C"]}) as model:
        sd = pm.HalfNormal("sd", 1.0)
        loc = pm.Normal("loc", 0.0, 1.0)
        effect = noncentred("effect_z", sd, dims.CENTER, loc=loc, name="effect")
        plain = noncentred("plain_z", sd)
    assert [rv.name for rv in model.free_RVs] == ["sd", "loc", "effect_z", "plain_z"]  # created after sd
    assert model.named_vars_to_dims["effect"] == (dims.CENTER,) and model.named_vars_to_dims["effect_z"] == (
        dims.CENTER,
    )
    assert "plain_z" not in model.named_vars_to_dims and plain.ndim == 0
    z = model["effect_z"]
    assert isinstance(z.owner.op, type(pm.Normal.dist(0.0, 1.0).owner.op))
    point = {"sd_log__": np.log(0.5), "loc": 1.5, "effect_z": np.array([-1.0, 0.0, 2.0]), "plain_z": 3.0}
    outs = model.replace_rvs_by_values([effect, plain])
    fn = model.compile_fn(outs, inputs=model.value_vars, point_fn=True, on_unused_input="ignore", mode="FAST_COMPILE")
    values = fn(point)
    np.testing.assert_allclose(values[0], 1.5 + 0.5 * np.array([-1.0, 0.0, 2.0]))
    assert float(values[1]) == pytest.approx(1.5)


def _posterior_idata(spec: ModelSpec, inputs):
    import arviz as az

    rng = np.random.default_rng(0)
    n_centers = len(inputs.coords[dims.CENTER])
    return az.from_dict(
        posterior={
            "ae_rate": rng.uniform(0.1, 0.3, (2, 20)),
            "center_rate": rng.uniform(0.1, 0.3, (2, 20, n_centers)),
        },
        dims={"center_rate": [dims.CENTER]},
        coords={dims.CENTER: inputs.coords[dims.CENTER]},
    )


def test_augment_returns_its_groups_and_leaves_the_idata_to_the_caller():
    spec = ModelSpec("safety", family="hierarchical")
    inputs = model_inputs(load_trial(needs=spec.needs()), spec)
    idata = _posterior_idata(spec, inputs)
    before = set(idata.groups()), set(idata.posterior.data_vars), dict(idata.posterior.attrs)
    augmented = safety.augment(idata, inputs, spec, np.random.default_rng(1))
    assert (set(idata.groups()), set(idata.posterior.data_vars), dict(idata.posterior.attrs)) == before
    assert set(augmented.groups) == {"posterior_predictive", "observed_data", "log_likelihood"}
    assert set(augmented.posterior) == {"future_events"} and augmented.notes == {}
    augmented.apply(idata)
    assert set(augmented.groups) <= set(idata.groups())
    np.testing.assert_array_equal(
        idata.posterior["future_events"].to_numpy(), idata.posterior_predictive["future_events"].to_numpy()
    )
    # the same seed gives the same draws: augment draws from the rng it is given, nothing else
    again = safety.augment(idata, inputs, spec, np.random.default_rng(1))
    assert again.groups[POSTERIOR_PREDICTIVE].equals(augmented.groups[POSTERIOR_PREDICTIVE])


def test_apply_replaces_groups_of_the_same_name_and_flat_draws_keep_the_order():
    import arviz as az
    import xarray as xr

    idata = az.from_dict(posterior={"mu": np.arange(6.0).reshape(2, 3)}, log_likelihood={"y": np.zeros((2, 3, 4))})
    new = xr.Dataset({"z": (("chain", "draw"), np.ones((2, 3)))})
    Augmented({LOG_LIKELIHOOD: new}, posterior={"nu": (("chain", "draw"), -np.ones((2, 3)))}).apply(idata)
    assert list(idata.log_likelihood.data_vars) == ["z"] and "nu" in idata.posterior
    np.testing.assert_array_equal(flat_draws(idata.posterior, "mu"), np.arange(6.0))
    np.testing.assert_array_equal(flat_draws(idata.posterior, "mu", slice(2, 4)), [2.0, 3.0])
    replace_groups(idata, log_likelihood=xr.Dataset({"w": (("chain", "draw"), np.ones((2, 3)))}))
    assert list(idata.log_likelihood.data_vars) == ["w"]
