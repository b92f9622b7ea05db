"""Centred or non-centred group effects, chosen per level from the data (`marrow.models.effects`)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from marrow import dims
from marrow.api import from_frames, load_trial, model_spec
from marrow.fits.compiled import structure_key
from marrow.models import build_model, effects, model_inputs
from marrow.priors import load_prior_set
from marrow.spec import SamplerSettings

GENERATE = Path(__file__).resolve().parents[1] / "benchmarks" / "generate.py"
LINEAGE_LEVELS = ("log_median", "log_shape")


@pytest.fixture(scope="module")
def generate():
    spec = importlib.util.spec_from_file_location("marrow_bench_generate", GENERATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def larger_frames(generate):
    """22,000 generated patients without covariates: about 5,700 recoveries per lineage (over
    `effects.CENTRED_FROM`), yet only about 3,400 likelihood cells, so fits stay cheap."""
    return generate.generate(n_patients=22_000, n_centers=20, n_covariates=0)


@pytest.fixture(scope="module")
def larger_trial(larger_frames):
    patients, recovery = larger_frames
    return from_frames(patients, recovery=recovery)


# --- the rule ---------------------------------------------------------------------------------------


def test_centred_needs_every_group_at_the_threshold():
    at = effects.CENTRED_FROM
    assert effects.centred([at, at, at])
    assert effects.centred([at, 50 * at])
    assert not effects.centred([at - 1, 50 * at])  # one weakly informed group keeps the level non-centred
    assert not effects.centred([0, 0])
    assert not effects.centred([])  # no groups, nothing to centre
    assert effects.centred(np.array([3.0, 4.0]), threshold=3)
    assert not effects.centred(np.array([3.0, 4.0]), threshold=3.5)


def test_resolve_auto_per_level_and_forced_for_all():
    at = effects.CENTRED_FROM
    information = {"log_median": [at, 2 * at], "cure_center_effect": [2, 2 * at]}
    assert effects.resolve("auto", information) == {"log_median": "centred", "cure_center_effect": "noncentred"}
    assert effects.resolve("centred", information) == dict.fromkeys(information, "centred")
    assert effects.resolve("noncentred", information) == dict.fromkeys(information, "noncentred")
    assert effects.resolve("auto", {}) == {}
    with pytest.raises(ValueError, match="unknown parameterisation"):
        effects.resolve("center", information)


def test_spec_option_is_validated_and_declared_by_hierarchical_models_only():
    assert model_spec("recovery").parameterisation == "auto"
    with pytest.raises(Exception, match="parameterisation"):
        model_spec("recovery", parameterisation="sometimes")
    with pytest.raises(Exception, match="parameterisation is an option of"):
        model_spec("survival", parameterisation="centred")


# --- resolution from the data, and the graph it gives -------------------------------------------------


def test_bundled_trial_resolves_every_level_noncentred():
    data = load_trial()
    events = data.recovery.groupby("lineage")["recovered"].sum()
    assert events.max() < effects.CENTRED_FROM  # 15-19 recoveries per lineage
    for spec in (model_spec("recovery"), model_spec("recovery", cure=False, frailty=True)):
        resolved = model_inputs(data, spec).parameterisation
        assert set(LINEAGE_LEVELS) <= set(resolved) and set(resolved.values()) == {"noncentred"}
    assert model_inputs(data, model_spec("recovery", frailty=True)).parameterisation["frailty"] == "noncentred"
    assert model_inputs(data, model_spec("response")).parameterisation == {"center_effect": "noncentred"}


def test_larger_trial_centres_the_lineage_levels_not_frailty_or_sparse_centers(larger_trial):
    resolved = model_inputs(larger_trial, model_spec("recovery", frailty=True)).parameterisation
    assert all(resolved[level] == "centred" for level in (*LINEAGE_LEVELS, "cure_intercept"))
    assert resolved["frailty"] == "noncentred"  # at most one recovery per lineage and patient
    information = model_inputs(larger_trial, model_spec("recovery")).parameterisation
    rows = larger_trial.recovery.merge(larger_trial.patients[["patient_id", "center"]])
    per_center = rows.groupby("center")["recovered"].agg(["sum", "count"])
    fewest = np.minimum(per_center["sum"], per_center["count"] - per_center["sum"]).min()
    assert information["cure_center_effect"] == ("centred" if fewest >= effects.CENTRED_FROM else "noncentred")


def test_centred_graph_keeps_names_and_dims_without_z():
    data = load_trial()
    priors = load_prior_set(None)
    graphs = {
        choice: build_model(data, model_spec("recovery", parameterisation=choice), priors)
        for choice in ("centred", "noncentred")
    }
    for name in ("log_median", "log_shape", "cure_intercept", "cure_center_effect"):
        assert graphs["centred"].named_vars_to_dims[name] == graphs["noncentred"].named_vars_to_dims[name]
        assert name in {rv.name for rv in graphs["centred"].free_RVs}
        assert f"{name}_z" not in graphs["centred"].named_vars and name not in {
            rv.name for rv in graphs["noncentred"].free_RVs
        }
    assert "cure_center_z" in graphs["noncentred"].named_vars
    # A centred lineage level samples its population mean as an offset from its conditional posterior.
    for name in ("log_median", "log_shape", "cure_intercept"):
        assert f"{name}_mu_z" in {rv.name for rv in graphs["centred"].free_RVs}
        assert f"{name}_mu" in {v.name for v in graphs["centred"].deterministics}
    # The same model: at x = mu + sd * z the centred log density is the non-centred one less log sd per
    # element; where mu = m + s * mu_z (m, s: mu's conditional mean and sd given x and sd, computed here
    # from the prior of mu), plus log s.
    levels = {
        "log_median": ("log_median_z", "log_median_sd", "log_median_mu"),
        "log_shape": ("log_shape_z", "log_shape_sd", "log_shape_mu"),
        "cure_intercept": ("cure_intercept_z", "cure_intercept_sd", "cure_intercept_mu"),
        "cure_center_effect": ("cure_center_z", "cure_center_sd", None),
    }
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0.0, 0.3, np.shape(v)) for k, v in graphs["noncentred"].initial_point().items()}
    mapped, log_sd = dict(point), 0.0
    for name, (z, sd, mu) in levels.items():
        scale = np.exp(point[f"{sd}_log__"])
        mapped[name] = (point[mu] if mu else 0.0) + scale * mapped.pop(z)
        log_sd += np.log(scale) * np.size(point[z])
        if mu:
            stated = priors.for_model("recovery")[mu].args
            precision = 1 / stated["sigma"] ** 2 + np.size(point[z]) / scale**2
            mean = (stated["mu"] / stated["sigma"] ** 2 + mapped[name].sum() / scale**2) / precision
            mapped[f"{mu}_z"] = (mapped.pop(mu) - mean) * np.sqrt(precision)
            log_sd += 0.5 * np.log(precision)  # log s = -log sqrt(precision)
    centred_logp = graphs["centred"].compile_logp()(mapped)
    assert np.isclose(centred_logp, graphs["noncentred"].compile_logp()(point) - log_sd)


def test_compile_key_follows_the_resolved_parameterisation(larger_frames):
    """Same spec, priors and shapes; data that resolve differently must not share a compiled model."""
    patients, recovery = larger_frames
    spec = model_spec("recovery", cure=False)
    priors = load_prior_set(None)
    many = model_inputs(from_frames(patients, recovery=recovery), spec)
    few_events = recovery.assign(recovered=np.where(np.arange(len(recovery)) % 10 == 0, recovery["recovered"], 0))
    few = model_inputs(from_frames(patients, recovery=few_events), spec)
    assert many.parameterisation["log_median"] == "centred" and few.parameterisation["log_median"] == "noncentred"
    assert structure_key(spec, priors, many, None) != structure_key(spec, priors, few, None)
    # ... and only because of it: the same resolution gives the same key
    same = replace(few, parameterisation=many.parameterisation)
    assert structure_key(spec, priors, many, None) == structure_key(spec, priors, same, None)


def test_help_shows_the_option(marrow_cli):
    for model in ("recovery", "response", "safety"):
        code, out, _ = marrow_cli("fit", model, "--help")
        assert code == 0 and "--parameterisation [auto|centred|noncentred]" in out
    _, out, _ = marrow_cli("fit", "survival", "--help")
    assert "--parameterisation" not in out


# --- sampling ----------------------------------------------------------------------------------------

SMALL = SamplerSettings(chains=2, draws=200, tune=300)


@pytest.mark.sampling
def test_bundled_recovery_default_has_no_divergences_and_records_the_choice():
    from marrow.fits.run import fit_model

    data = load_trial()
    spec = model_spec("recovery")
    fit = fit_model(data, spec, load_prior_set(None), SamplerSettings(), postprocess=False)  # marrow's seed
    assert int(fit.idata.sample_stats["diverging"].sum()) == 0
    recorded = json.loads(fit.provenance["parameterisation"])
    assert recorded == model_inputs(data, spec).parameterisation and set(recorded.values()) == {"noncentred"}
    assert "log_median_z" in fit.idata.posterior


@pytest.mark.sampling
def test_forced_centred_is_used_and_recorded(tmp_path):
    from marrow.fits import Fit
    from marrow.fits.run import fit_model

    data = load_trial()
    spec = model_spec("response", parameterisation="centred")
    fit = fit_model(data, spec, load_prior_set(None), SMALL)
    path = tmp_path / "centred.nc"
    fit.save(path)
    loaded = Fit.load(path)
    assert json.loads(loaded.provenance["parameterisation"]) == {"center_effect": "centred"}
    posterior = loaded.idata.posterior
    assert "center_z" not in posterior and posterior["center_effect"].dims[2:] == (dims.CENTER,)


@pytest.mark.sampling
def test_centred_and_noncentred_agree_on_a_larger_trial(larger_trial):
    from marrow.fits.run import fit_model

    priors = load_prior_set(None)
    fits = {
        choice: fit_model(
            larger_trial, model_spec("recovery", cure=False, parameterisation=choice), priors, SMALL, postprocess=False
        )
        for choice in ("auto", "noncentred")
    }
    assert set(json.loads(fits["auto"].provenance["parameterisation"]).values()) == {"centred"}
    assert set(json.loads(fits["noncentred"].provenance["parameterisation"]).values()) == {"noncentred"}
    assert "log_median_z" in fits["noncentred"].idata.posterior and "log_median_z" not in fits["auto"].idata.posterior
    assert int(fits["auto"].idata.sample_stats["diverging"].sum()) == 0
    import arviz as az

    for name in LINEAGE_LEVELS:
        a, b = (fits[c].idata.posterior[name] for c in ("auto", "noncentred"))
        # difference of the means within 4 Monte Carlo standard errors (per lineage)
        mcse = np.hypot(az.mcse(a, method="mean")[name].to_numpy(), az.mcse(b, method="mean")[name].to_numpy())
        gap = np.abs(a.mean(("chain", "draw")).to_numpy() - b.mean(("chain", "draw")).to_numpy())
        assert np.all(gap < 4 * mcse), (name, gap, mcse)
        assert np.allclose(a.std(("chain", "draw")), b.std(("chain", "draw")), rtol=0.25)
