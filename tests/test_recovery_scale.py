"""Recovery model at scale: the cell-weighted likelihood and pattern-weighted population quantities
are exact (against brute-force numpy per row / per patient), and augment stays bounded."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from test_recovery_model import load_simulated, simulate_recovery_trial

from marrow import dims
from marrow.fits.run import fit_model
from marrow.models import build_model, latency, model_inputs, recovery
from marrow.priors import load_prior_set
from marrow.spec import ModelSpec, SamplerSettings

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")


@pytest.fixture(scope="module")
def trial_frames():
    """A small cure trial with a five-level covariate besides x1, x2 (up to 20 covariate patterns)."""
    patients, rows, _ = simulate_recovery_trial(n_patients=120, seed=4)
    patients["score"] = np.random.default_rng(4).integers(0, 5, len(patients))
    return patients, rows


def trial_for(tmp_path, frames, spec):
    return load_simulated(tmp_path, *frames, spec)


def evaluator(model, names: list[str]):
    """seed -> model variables `names` at a random point (initial point plus noise, unconstrained space)."""
    outs = model.replace_rvs_by_values([model[name] for name in names])
    fn = model.compile_fn(outs, inputs=model.value_vars, point_fn=True, on_unused_input="ignore")
    start = model.initial_point()

    def at(seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        point = {k: v + rng.normal(0.0, 0.5, np.shape(v)) for k, v in start.items()}
        return dict(zip(names, (np.asarray(v) for v in fn(point)), strict=True))

    return at


def centred_x(data) -> np.ndarray:
    x = data.covariate_matrix()
    return x - x.mean(axis=0)


def effect(xc: np.ndarray, beta: np.ndarray | None, spec: ModelSpec) -> np.ndarray:
    """(patient, lineage) covariate contribution, broadcastable."""
    if beta is None:
        return np.zeros((len(xc), 1))
    return xc @ beta.T if spec.per_lineage_effects else (xc @ beta)[:, None]


def parameter_names(spec: ModelSpec) -> list[str]:
    names = ["log_median", "shape"] + (["time_beta"] if spec.covariates else [])
    if spec.cure:
        names += ["cure_intercept", "cure_center_effect"] + (["cure_beta"] if spec.covariates else [])
    if spec.frailty:
        names += ["frailty_sd", "frailty_z"]
    return names


# Log-normal is left out of the 1e-10 comparisons: PyTensor's normal_lccdf agrees with scipy's log_ndtr
# to about 1e-7 only (an implementation difference, not an aggregation one).
@pytest.mark.parametrize(
    "family,cure,per_lineage,covariates",
    [
        ("loglogistic", True, False, ("x1", "x2", "score")),
        ("weibull", True, True, ("x1", "score")),
        ("loglogistic", False, False, ("x1", "x2", "score")),
        ("weibull", True, False, ()),
    ],
)
def test_population_quantities_equal_per_patient_averages(
    tmp_path, trial_frames, family, cure, per_lineage, covariates
):
    spec = ModelSpec(
        "recovery", family=family, cure=cure, per_lineage_effects=per_lineage, covariates=covariates, horizons=(45,)
    )
    data = trial_for(tmp_path, trial_frames, spec)
    model = build_model(data, spec, load_prior_set())
    values = evaluator(model, parameter_names(spec) + (["cure_fraction"] if cure else []))(3)
    # recovered_by and cumulative_incidence are computed from the draws by `augment` (one draw here)
    idata = az.from_dict(posterior={name: values[name][None, None] for name in parameter_names(spec)})
    inputs = model_inputs(data, spec)
    derived = recovery.augment(idata, inputs, spec, np.random.default_rng(0)).posterior
    values.update({name: derived[name].to_numpy()[0, 0] for name in ("recovered_by", "cumulative_incidence")})

    xc = centred_x(data)
    loc = values["log_median"][None, :] + effect(xc, values.get("time_beta"), spec)  # (patient, lineage)
    if cure:
        eta = (
            values["cure_intercept"][None, :]
            + values["cure_center_effect"][data.center_index][:, None]
            + effect(xc, values.get("cure_beta"), spec)
        )
        pi = 1.0 / (1.0 + np.exp(-eta))
        np.testing.assert_allclose(values["cure_fraction"], 1.0 - pi.mean(axis=0), rtol=0, atol=1e-10)
    else:
        pi = np.ones_like(loc)
    for name, days in (("recovered_by", model.coords[dims.DAY]), ("cumulative_incidence", model.coords[dims.GRID_DAY])):
        log_days = np.log(np.maximum(np.asarray(days, dtype=float), 1e-6))
        _, log_s = latency.log_density(family, log_days[None, None, :], loc[:, :, None], values["shape"][None, :, None])
        brute = (pi[:, :, None] * -np.expm1(log_s)).mean(axis=0)
        np.testing.assert_allclose(values[name], brute, rtol=0, atol=1e-10)


def per_row_loglik(data, spec: ModelSpec, values: dict) -> np.ndarray:
    """Log-likelihood of every row of the recovery table, written per row from the model's formulas."""
    rec = data.recovery
    patient = rec["patient_id"].map({p: i for i, p in enumerate(data.patient_ids)}).to_numpy()
    lineage = rec["lineage"].map({n: j for j, n in enumerate(data.lineages)}).to_numpy()
    log_t = np.log(rec["day"].to_numpy(dtype=float))
    event = rec["recovered"].to_numpy() == 1
    xc = centred_x(data)
    loc = (values["log_median"][None, :] + effect(xc, values.get("time_beta"), spec))[patient, lineage]
    if spec.frailty:
        loc = loc + values["frailty_sd"] * values["frailty_z"][patient]
    log_f, log_s = latency.log_density(recovery.family_of(spec), log_t, loc, values["shape"][lineage])
    if not spec.cure:
        return np.where(event, log_f, log_s)
    eta = (
        values["cure_intercept"][None, :]
        + values["cure_center_effect"][data.center_index][:, None]
        + effect(xc, values.get("cure_beta"), spec)
    )[patient, lineage]
    log_pi, log_1m_pi = -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta)
    return np.where(event, log_pi + log_f, np.logaddexp(log_1m_pi, log_pi + log_s))


@pytest.mark.parametrize(
    "family,cure,frailty,per_lineage,covariates",
    [
        ("loglogistic", True, False, False, ("x1", "x2", "score")),
        ("weibull", True, True, True, ("x1",)),
        ("loglogistic", False, False, False, ("x1", "x2")),
        ("loglogistic", False, True, False, ("score",)),
        ("weibull", False, False, True, ()),
    ],
)
def test_cell_weighted_likelihood_equals_per_row_sum(
    tmp_path, trial_frames, family, cure, frailty, per_lineage, covariates
):
    spec = ModelSpec(
        "recovery", family=family, cure=cure, frailty=frailty, per_lineage_effects=per_lineage, covariates=covariates
    )
    data = trial_for(tmp_path, trial_frames, spec)
    inputs = model_inputs(data, spec)
    n_rows = len(data.recovery)
    # Weights count every row once; without frailty identical rows share a cell.
    censored = censored_weights(inputs.arrays, cure)
    assert inputs.arrays["event_weight"].sum() + censored.sum() == n_rows
    cells = len(inputs.arrays["event_weight"]) + np.count_nonzero(censored)
    assert (cells == n_rows) if frailty else (cells < n_rows)
    assert_graph_equals_per_row(data, spec, seeds=(1, 2))


def censored_weights(arrays: dict, cure: bool) -> np.ndarray:
    """Weights of the censored cells (a dense grid's, flattened, with zeros where no cell is)."""
    if cure:
        return arrays["cure_weight"]
    return arrays["censored_grid_weight"].ravel() if "censored_grid_weight" in arrays else arrays["censored_weight"]


def assert_graph_equals_per_row(data, spec: ModelSpec, seeds=(1, 2), rtol: float = 1e-10) -> None:
    """The graph's recovery log-likelihood at random points equals the sum of `per_row_loglik`."""
    model = build_model(data, spec, load_prior_set())
    at = evaluator(model, parameter_names(spec) + ["recovery_loglik"])
    for seed in seeds:
        values = at(seed)
        np.testing.assert_allclose(values["recovery_loglik"], per_row_loglik(data, spec, values).sum(), rtol=rtol)


@pytest.fixture(scope="module")
def registry_frames():
    """A trial shaped like a registry: whole days over a short follow-up, so that the censored
    (pattern, lineage, day) cells fill most of their grid."""
    patients, rows, _ = simulate_recovery_trial(n_patients=400, followup=(20.0, 45.0), seed=6)
    patients["followup_days"] = np.ceil(patients["followup_days"])
    rows["day"] = np.ceil(rows["day"])
    return patients, rows


@pytest.mark.parametrize(
    "family,cure,frailty,per_lineage,covariates",
    [
        ("weibull", False, False, False, ("x1", "x2")),
        ("weibull", False, False, True, ("x1", "x2")),
        ("weibull", False, False, False, ()),
        ("weibull", False, True, False, ("x1",)),
        ("weibull", True, False, False, ("x1", "x2")),
        ("loglogistic", False, False, False, ("x1", "x2")),
        ("loglogistic", True, False, True, ("x1",)),
        ("lognormal", False, False, False, ("x1", "x2")),
        ("lognormal", True, False, False, ("x2",)),
    ],
)
def test_registry_shaped_likelihood_equals_per_row_sum(
    tmp_path, registry_frames, family, cure, frailty, per_lineage, covariates
):
    """Every family, with and without cure and frailty, on data dense enough for the Weibull's grid
    (which the Weibull without cure or frailty then takes: a wrong factorisation fails here)."""
    spec = ModelSpec(
        "recovery", family=family, cure=cure, frailty=frailty, per_lineage_effects=per_lineage, covariates=covariates
    )
    data = trial_for(tmp_path, registry_frames, spec)
    arrays = model_inputs(data, spec).arrays
    on_grid = family == "weibull" and not cure and not frailty
    assert ("censored_grid_weight" in arrays) == on_grid
    assert censored_weights(arrays, cure).sum() == (data.recovery["recovered"] == 0).sum()
    # Log-normal: PyTensor's normal_lccdf agrees with scipy's log_ndtr to about 1e-7 only.
    assert_graph_equals_per_row(data, spec, seeds=(1, 2, 3), rtol=1e-6 if family == "lognormal" else 1e-10)


def posterior_at_random_points(model, n_chain: int, n_draw: int):
    """An InferenceData whose posterior holds the model's variables at random points (no sampling)."""
    import arviz as az

    names = [v.name for v in model.free_RVs + model.deterministics]
    at = evaluator(model, names)
    draws = [at(seed) for seed in range(n_chain * n_draw)]
    posterior = {
        name: np.stack([d[name] for d in draws]).reshape((n_chain, n_draw) + draws[0][name].shape) for name in names
    }
    return az.from_dict(
        posterior=posterior,
        coords={k: list(v) for k, v in model.coords.items()},
        dims={k: list(v) for k, v in model.named_vars_to_dims.items() if k in posterior},
    )


def test_augment_log_likelihood_does_not_depend_on_the_chunk_size(tmp_path, trial_frames, monkeypatch):
    spec = ModelSpec("recovery", family="loglogistic", frailty=True, covariates=("x1", "score"))
    data = trial_for(tmp_path, trial_frames, spec)
    model = build_model(data, spec, load_prior_set())
    inputs = model_inputs(data, spec)
    idata = posterior_at_random_points(model, 2, 3)
    recovery.augment(idata, inputs, spec, np.random.default_rng(0)).apply(idata)
    whole = idata.log_likelihood["recovery"].to_numpy()
    monkeypatch.setattr(recovery, "CHUNK_VALUES", len(data.recovery) * 2)  # two draws per chunk
    recovery.augment(idata, inputs, spec, np.random.default_rng(0)).apply(idata)
    np.testing.assert_array_equal(idata.log_likelihood["recovery"].to_numpy(), whole)
    post = idata.posterior
    for chain in range(2):
        for draw in range(3):
            values = {name: post[name].to_numpy()[chain, draw] for name in parameter_names(spec)}
            np.testing.assert_allclose(whole[chain, draw], per_row_loglik(data, spec, values), rtol=1e-12)


@pytest.mark.sampling
def test_augment_omits_log_likelihood_above_the_limit_and_keeps_replicates(tmp_path, trial_frames, monkeypatch):
    import marrow.models.idata

    spec = ModelSpec("recovery", family="weibull", covariates=("x1", "x2"))
    data = trial_for(tmp_path, trial_frames, spec)
    monkeypatch.setattr(marrow.models.idata, "MAX_POINTWISE_VALUES", 1000)
    settings = SamplerSettings(chains=2, draws=150, tune=150, seed=5, cores=2, target_accept=0.8)
    fit = fit_model(data, spec, load_prior_set(), settings)
    idata = fit.idata
    assert "log_likelihood" not in idata.groups()
    reason = (
        f"{len(data.recovery) * 2 * 150:,} pointwise values exceed the limit of 1,000; PSIS-LOO not computed "
        "(fewer --draws or a subsample of the data brings it back)"
    )
    assert fit.provenance["log_likelihood_omitted"] == reason  # fit_model moves augment's note there
    augmented = recovery.augment(idata, model_inputs(data, spec), spec, np.random.default_rng(0))
    assert augmented.notes == {"log_likelihood_omitted": reason}  # returned, not left in the posterior's attrs
    assert "log_likelihood" not in augmented.groups and "log_likelihood_omitted" not in idata.posterior.attrs
    augmented.apply(idata)
    assert "log_likelihood" not in idata.groups()
    replicated = idata.posterior_predictive["recovered_count"]
    assert replicated.dims == ("chain", "draw", dims.LINEAGE)
    observed = idata.observed_data["recovered_count"].to_numpy()
    flat = replicated.to_numpy().reshape(-1, len(data.lineages))
    assert np.all((flat >= 0) & (flat <= idata.observed_data["at_risk"].to_numpy()))
    lo, hi = np.quantile(flat, [0.005, 0.995], axis=0)
    assert np.all((lo <= observed) & (observed <= hi)), (lo, observed, hi)


def test_sum_softplus_equals_softplus_and_its_gradient_the_sigmoid():
    import pytensor
    import pytensor.tensor as pt

    x = pt.dvector("x")
    value = latency.sum_softplus(x)
    fn = pytensor.function([x], [value, pytensor.grad(value.sum(), x)])
    points = np.concatenate([np.linspace(-60.0, 60.0, 2401), [0.0, -0.0, 1e-300, -1e-300, 700.0, -700.0]])
    got, slope = fn(points)
    np.testing.assert_allclose(got, np.logaddexp(0.0, points), rtol=1e-15, atol=3e-16)  # absolute near 0
    np.testing.assert_allclose(slope, 1.0 / (1.0 + np.exp(-points)), rtol=1e-14, atol=1e-300)
    assert slope[points == 0.0][0] == 0.5  # no kink in the gradient at 0


@pytest.mark.parametrize("family", latency.FAMILIES)
def test_weighted_log_survival_grid_equals_the_pointwise_sum(family):
    rng = np.random.default_rng(5)
    log_t = np.log(np.sort(rng.uniform(1.0, 900.0, (3, 40)), axis=1))  # (lineage, day)
    mu = rng.normal(3.5, 1.0, (4, 3))  # (pattern, lineage)
    k = np.array([0.4, 1.5, 6.0])
    weight = rng.integers(0, 4, (4, 3, 40)).astype(float)
    brute = sum(
        weight[p, j, d] * latency.log_survival(family, log_t[j, d], mu[p, j], k[j])
        for p in range(4)
        for j in range(3)
        for d in range(40)
    )
    np.testing.assert_allclose(latency.weighted_log_survival_grid(family, weight, log_t, mu, k), brute, rtol=1e-12)
