"""Prior sets: shipped sets, TOML parsing, inheritance, every validation error path, mixtures,
the `priors list/show` commands, the full prior stored in a fit, and a conjugate check that a
strong prior moves the posterior by the amount a beta-binomial calculation predicts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.special import digamma, logit, polygamma

from marrow.errors import UsageError
from marrow.priors import DEFAULT_SET, Prior, PriorSet, available_sets, load_prior_set
from marrow.priors.catalog import parameters
from marrow.priors.sets import describe_set, prior_origins


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped sets -------------------------------------------------------------------------


def test_shipped_sets_are_listed():
    assert {"weakly-informative", "skeptical", "enthusiastic"} <= set(available_sets())
    assert DEFAULT_SET == "weakly-informative"


@pytest.mark.parametrize("name", ["weakly-informative", "skeptical", "enthusiastic"])
def test_every_catalog_key_resolves_with_a_reason(name):
    prior_set = load_prior_set(name)
    assert list(prior_set.priors) == list(parameters())
    assert prior_set.description
    for key, prior in prior_set.priors.items():
        assert prior.reason.strip(), f"{name}: {key} has no reason"
        assert "\n" not in prior.reason


def test_skeptical_and_enthusiastic_say_what_they_promise():
    skeptical, enthusiastic, default = (load_prior_set(n) for n in ("skeptical", "enthusiastic", "weakly-informative"))
    centre = skeptical["response.intercept"]
    assert centre.dist == "Normal" and abs(centre.args["mu"] - logit(0.15)) < 0.01 and centre.args["sigma"] <= 0.6
    assert 0.35 <= 1 / (1 + math.exp(-enthusiastic["response.intercept"].args["mu"])) <= 0.40
    assert skeptical["response.beta"].args["sigma"] == pytest.approx(0.35)
    assert enthusiastic["response.beta"].args["sigma"] > default["response.beta"].args["sigma"]
    # overrides only some keys, the rest inherited
    assert skeptical["response.center_sd"] == default["response.center_sd"]
    assert prior_origins("skeptical")["response.intercept"] == "skeptical"
    assert prior_origins("skeptical")["response.center_sd"] == "weakly-informative"


def test_describe_set_is_a_default_prior_table():
    rows = describe_set("skeptical")
    assert [r["parameter"] for r in rows] == list(parameters())
    first = rows[0]
    assert first["prior"] == "Normal(mu=-1.735, sigma=0.5)"
    assert first["meaning"] == parameters()["response.intercept"][1]
    assert first["from"] == "skeptical" and first["reason"]


# --- user files -------------------------------------------------------------------------------


def test_user_file_overriding_some_parameters_inherits_the_rest(tmp_path):
    path = write(
        tmp_path / "mine.toml",
        """
name = "mine"
base = "weakly-informative"
[response.intercept]
dist = "StudentT"
nu = 3
mu = -1
sigma = 0.8
reason = "our centre's experience"
""",
    )
    mine = load_prior_set(path)
    assert mine.name == "mine"
    assert mine["response.intercept"] == Prior(
        "StudentT", {"nu": 3.0, "mu": -1.0, "sigma": 0.8}, "our centre's experience"
    )
    assert mine["response.beta"] == load_prior_set()["response.beta"]
    assert prior_origins(path)["response.beta"] == "weakly-informative"


def test_base_may_be_a_file_relative_to_the_including_file(tmp_path):
    folder = tmp_path / "priors"
    folder.mkdir()
    write(folder / "parent.toml", 'base = "skeptical"\n[response.beta]\ndist = "Normal"\nmu = 0\nsigma = 0.2\n')
    child = write(
        folder / "child.toml", 'base = "parent.toml"\n[response.center_sd]\ndist = "HalfNormal"\nsigma = 0.3\n'
    )
    loaded = load_prior_set(child)
    assert loaded["response.center_sd"].args == {"sigma": 0.3}
    assert loaded["response.beta"].args == {"mu": 0.0, "sigma": 0.2}
    assert loaded["response.intercept"] == load_prior_set("skeptical")["response.intercept"]


def test_a_complete_file_needs_no_base(tmp_path):
    text = "\n".join(
        f'["{key}"]\ndist = "{p.dist}"\n' + "".join(f"{a} = {v}\n" for a, v in p.args.items())
        for key, p in load_prior_set().priors.items()
    )
    # Dotted keys written as quoted table names are one flat key in TOML; write them nested instead.
    text = text.replace('["', "[").replace('"]', "]")
    assert load_prior_set(write(tmp_path / "full.toml", text)).priors.keys() == parameters().keys()


# --- every error path names the key -----------------------------------------------------------

ERRORS = {
    "unknown parameter": (
        '[response.slope]\ndist = "Normal"\nmu = 0\nsigma = 1\n',
        "unknown prior parameter 'response.slope'",
    ),
    "missing dist": (
        "[response.intercept]\nmu = 0\nsigma = 1\n",
        "prior 'response.intercept': needs a table with 'dist'",
    ),
    "not a table": ("response.intercept = 3\n", "prior 'response.intercept': needs a table with 'dist'"),
    "unknown distribution": (
        '[response.intercept]\ndist = "Cauchy"\nalpha = 0\nbeta = 1\n',
        "prior 'response.intercept': unknown distribution 'Cauchy'",
    ),
    "unknown argument": (
        '[response.intercept]\ndist = "Normal"\nmu = 0\nsigma = 1\ntau = 2\n',
        "prior 'response.intercept': unknown argument(s) tau",
    ),
    "missing argument": (
        '[response.intercept]\ndist = "Normal"\nmu = 0\n',
        "prior 'response.intercept': Normal needs argument(s) sigma",
    ),
    "text argument": (
        '[response.intercept]\ndist = "Normal"\nmu = "zero"\nsigma = 1\n',
        "prior 'response.intercept': argument 'mu' must be a number",
    ),
    "boolean argument": (
        '[response.intercept]\ndist = "Normal"\nmu = true\nsigma = 1\n',
        "argument 'mu' must be a number",
    ),
    "infinite argument": (
        '[response.intercept]\ndist = "Normal"\nmu = inf\nsigma = 1\n',
        "argument 'mu' must be finite",
    ),
    "negative scale": (
        '[response.center_sd]\ndist = "HalfNormal"\nsigma = -1\n',
        "prior 'response.center_sd': argument 'sigma' of HalfNormal must be > 0, got -1",
    ),
    "zero scale": (
        '[response.beta]\ndist = "Normal"\nmu = 0\nsigma = 0\n',
        "prior 'response.beta': argument 'sigma' of Normal must be > 0",
    ),
    "negative rate": (
        '[response.center_sd]\ndist = "Exponential"\nlam = -2\n',
        "argument 'lam' of Exponential must be > 0",
    ),
    "reason not text": (
        '[response.intercept]\ndist = "Normal"\nmu = 0\nsigma = 1\nreason = 3\n',
        "prior 'response.intercept': 'reason' must be text",
    ),
    "wrong support": (
        '[response.center_sd]\ndist = "Normal"\nmu = 0\nsigma = 1\n',
        "prior 'response.center_sd': Normal has real support but 'response.center_sd' must be positive",
    ),
    "rate prior not on unit": (
        '[safety.rate]\ndist = "HalfNormal"\nsigma = 1\n',
        "'safety.rate' must be unit (use Beta)",
    ),
    "list for a scalar": (
        '[response.intercept]\ndist = "Normal"\nmu = [0, 1]\nsigma = 1\n',
        "argument 'mu' must be a number",
    ),
    "name not text": ("name = 3\n", "'name' and 'description' must be text"),
    "base not text": ("base = 1\n", "'base' must be the name of a prior set or a .toml file"),
    "unknown base": ('base = "optimistic"\n', "base 'optimistic': unknown prior set 'optimistic'"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_invalid_prior_files_are_rejected_naming_the_key(tmp_path, case):
    body, message = ERRORS[case]
    header = "" if case in ("name not text", "base not text", "unknown base") else 'base = "weakly-informative"\n'
    path = write(tmp_path / "bad.toml", header + body)
    with pytest.raises(UsageError) as info:
        load_prior_set(path)
    assert message in str(info.value)
    assert str(path) in str(info.value) or "prior '" in str(info.value)


def test_missing_parameters_without_base(tmp_path):
    path = write(tmp_path / "partial.toml", '[response.intercept]\ndist = "Normal"\nmu = 0\nsigma = 1\n')
    with pytest.raises(UsageError, match=r"no prior given for response.beta.*set base = \"weakly-informative\""):
        load_prior_set(path)


def test_inheritance_cycles_are_caught(tmp_path):
    write(tmp_path / "a.toml", 'base = "b.toml"\n')
    write(tmp_path / "b.toml", 'base = "a.toml"\n')
    with pytest.raises(UsageError, match="cycle"):
        load_prior_set(tmp_path / "a.toml")
    write(tmp_path / "self.toml", 'base = "self.toml"\n')
    with pytest.raises(UsageError, match="cycle"):
        load_prior_set(tmp_path / "self.toml")


def test_a_user_set_may_reuse_a_shipped_name_without_a_false_cycle(tmp_path):
    path = write(
        tmp_path / "weakly-informative-tweaked.toml",
        'name = "weakly-informative"\nbase = "weakly-informative"\n'
        '[response.beta]\ndist = "Normal"\nmu = 0\nsigma = 0.5\n',
    )
    assert load_prior_set(path)["response.beta"].args["sigma"] == 0.5


def test_unreadable_and_unknown_sources(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_prior_set(tmp_path / "absent.toml")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_prior_set(write(tmp_path / "broken.toml", "[response.intercept\n"))
    with pytest.raises(UsageError, match="unknown prior set 'skeptcal'; shipped sets: enthusiastic, skeptical"):
        load_prior_set("skeptcal")


# --- NormalMixture ----------------------------------------------------------------------------

MIXTURE = {"dist": "NormalMixture", "w": [0.7, 0.3], "mu": [-1.0, 0.5], "sigma": [0.3, 1.2], "reason": "MAP"}


def test_normal_mixture_round_trips_and_describes():
    prior = Prior.from_dict("response.intercept", MIXTURE)
    assert prior.args == {"w": (0.7, 0.3), "mu": (-1.0, 0.5), "sigma": (0.3, 1.2)}
    assert prior.to_dict() == MIXTURE
    assert Prior.from_dict("response.intercept", json.loads(json.dumps(prior.to_dict()))) == prior
    assert prior.describe() == "NormalMixture(w=[0.7, 0.3], mu=[-1, 0.5], sigma=[0.3, 1.2])"
    rv = prior.scipy()
    assert rv.mean() == pytest.approx(0.7 * -1 + 0.3 * 0.5)
    draws = rv.rvs(size=200_000, random_state=1)
    assert draws.std() == pytest.approx(rv.std(), rel=0.01)
    assert rv.cdf(rv.ppf(0.3)) == pytest.approx(0.3, abs=1e-8)
    grid = np.linspace(-8, 8, 4001)
    assert (rv.pdf(grid) * (grid[1] - grid[0])).sum() == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"w": [0.7, 0.4]}, "weights 'w' of NormalMixture must sum to 1, got 1.1"),
        ({"w": [1.2, -0.2]}, "element 1 of argument 'w' of NormalMixture must be between 0 and 1"),
        ({"sigma": [0.3, -1]}, "element 2 of argument 'sigma' of NormalMixture must be > 0"),
        ({"sigma": [0.3, 0]}, "element 2 of argument 'sigma' of NormalMixture must be > 0"),
        ({"mu": [-1.0]}, "one element per component (w has 2, mu has 1, sigma has 2)"),
        ({"mu": []}, "argument 'mu' must be a non-empty list"),
        ({"mu": -1.0}, "argument 'mu' must be a non-empty list"),
        ({"mu": [-1.0, "a"]}, "argument 'mu' must be a number"),
    ],
)
def test_normal_mixture_validation(change, message):
    with pytest.raises(UsageError) as info:
        Prior.from_dict("response.intercept", {**MIXTURE, **change})
    assert "prior 'response.intercept'" in str(info.value) and message in str(info.value)


def test_mixture_set_survives_the_json_of_fit_attrs(tmp_path):
    path = write(
        tmp_path / "map.toml",
        'base = "weakly-informative"\n[response.intercept]\ndist = "NormalMixture"\n'
        'w = [0.8, 0.2]\nmu = [-1.2, 0]\nsigma = [0.4, 1.5]\nreason = "MAP"\n',
    )
    prior_set = load_prior_set(path)
    again = PriorSet.from_dict(json.loads(prior_set.to_json()))
    assert again == prior_set


def test_mixture_prior_builds_in_pymc_with_and_without_dims():
    import pymc as pm

    prior = Prior.from_dict("response.beta", {**MIXTURE, "reason": ""})
    with pm.Model(coords={"covariate": ["a", "b", "c"]}) as model:
        prior.create("intercept")
        prior.create("beta", dims="covariate")
    point = model.initial_point()
    assert point["beta"].shape == (3,)
    logp = model.compile_logp()(point)
    expected = prior.scipy().logpdf(point["intercept"]) + prior.scipy().logpdf(point["beta"]).sum()
    assert logp == pytest.approx(expected)


# --- commands ---------------------------------------------------------------------------------


def test_priors_list(marrow_cli):
    code, out, err = marrow_cli("priors", "list", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    names = [r["name"] for r in rows]
    assert "weakly-informative (default)" in names and "skeptical" in names and "enthusiastic" in names
    assert all(r["description"] for r in rows)


def test_priors_show_table_and_formats(marrow_cli, tmp_path):
    code, out, err = marrow_cli("priors", "show", "skeptical")
    assert code == 0, err
    assert "response.intercept" in out and "-1.735" in out and "typical" in out  # the table wraps long cells
    code, out, _ = marrow_cli("priors", "show", "enthusiastic", "--model", "response", "--format", "json")
    rows = json.loads(out)["rows"]
    assert [r["parameter"] for r in rows] == [k for k in parameters() if k.startswith("response.")]
    assert {"parameter", "prior", "meaning", "reason", "from"} == set(rows[0])
    target = tmp_path / "priors.md"
    assert marrow_cli("priors", "show", "--format", "markdown", "--out", target)[0] == 0
    assert "| response.intercept" in target.read_text()
    assert marrow_cli("priors", "show", "--out", target)[0] == 2  # refuses to overwrite


def test_priors_show_user_file_and_errors(marrow_cli, tmp_path):
    good = write(
        tmp_path / "mine.toml",
        'base = "skeptical"\n[response.center_sd]\ndist = "HalfNormal"\nsigma = 0.3\nreason = "few centres"\n',
    )
    code, out, _ = marrow_cli("priors", "show", good, "--format", "csv")
    assert code == 0 and "HalfNormal(sigma=0.3),sd of center effects" in out and "few centres,mine" in out
    bad = write(
        tmp_path / "bad.toml", 'base = "weakly-informative"\n[response.center_sd]\ndist = "HalfNormal"\nsigma = -1\n'
    )
    code, _, err = marrow_cli("priors", "show", bad)
    assert code == 2 and "prior 'response.center_sd'" in err and "must be > 0" in err


def test_fit_rejects_a_bad_prior_file_before_sampling(marrow_cli, tmp_path):
    bad = write(
        tmp_path / "bad.toml",
        'base = "weakly-informative"\n[response.intercept]\ndist = "Normall"\nmu = 0\nsigma = 1\n',
    )
    code, _, err = marrow_cli("fit", "response", "--prior", bad, "--out", tmp_path / "x.nc", "--quiet")
    assert code == 2 and "unknown distribution 'Normall'" in err
    assert not (tmp_path / "x.nc").exists()


# --- a prior set changes the model, by the amount conjugacy predicts ---------------------------

A, B, N, Y = 30.0, 70.0, 40, 20  # a strong Beta(30, 70) prior (mean 0.30) and 20/40 responders


def logit_normal_matching_beta(a: float, b: float) -> tuple[float, float]:
    """Mean and sd of logit(p) for p ~ Beta(a, b): digamma(a) - digamma(b), sqrt(trigamma(a) + trigamma(b))."""
    return float(digamma(a) - digamma(b)), float(math.sqrt(polygamma(1, a) + polygamma(1, b)))


@pytest.fixture(scope="session")
def one_center_fit(tmp_path_factory):
    """One center, no covariates, center_sd ~ HalfNormal(0.01): the model is a logit-normal binomial."""
    from marrow.data import load_trial
    from marrow.fits.run import fit_model
    from marrow.spec import ModelSpec, SamplerSettings

    folder = tmp_path_factory.mktemp("conjugate")
    patients = folder / "one_center.csv"
    lines = ["patient_id,center,responder"] + [f"P{i:03d},Only,{int(i < Y)}" for i in range(N)]
    patients.write_text("\n".join(lines) + "\n")
    mu, sd = logit_normal_matching_beta(A, B)
    prior_file = write(
        folder / "strong.toml",
        f"""
name = "strong"
base = "weakly-informative"
[response.intercept]
dist = "Normal"
mu = {mu!r}
sigma = {sd!r}
reason = "matches Beta({A:g}, {B:g}) on the logit scale"
[response.center_sd]
dist = "HalfNormal"
sigma = 0.01
reason = "one center: no center effect"
""",
    )
    spec = ModelSpec("response")
    data = load_trial(patients, None, spec.needs())
    priors = load_prior_set(prior_file)
    fitted = fit_model(data, spec, priors, SamplerSettings(chains=2, draws=500, tune=500, seed=5))
    saved = fitted.save(folder / "strong.nc")
    return fitted, saved, prior_file


@pytest.mark.sampling
def test_strong_prior_moves_the_posterior_as_beta_binomial_predicts(one_center_fit):
    fitted, _, _ = one_center_fit
    rate = fitted.idata.posterior["response_rate"].to_numpy().reshape(-1)
    conjugate_mean = (A + Y) / (A + B + N)  # Beta(a + y, b + n - y)
    conjugate_sd = math.sqrt(conjugate_mean * (1 - conjugate_mean) / (A + B + N + 1))
    assert abs(rate.mean() - conjugate_mean) < 0.01
    assert abs(rate.std() - conjugate_sd) < 0.006
    # far from the data's own 0.5: the prior did the moving
    assert rate.mean() < Y / N - 0.1


@pytest.mark.sampling
def test_the_full_prior_used_is_stored_in_the_fit(one_center_fit):
    from marrow.fits import Fit

    _, saved, prior_file = one_center_fit
    loaded = Fit.load(saved)
    assert loaded.provenance["prior_set"] == "strong"
    stored = loaded.priors
    expected = load_prior_set(prior_file)
    assert stored.priors == expected.priors  # every parameter, the inherited ones included
    assert set(json.loads(loaded.provenance["priors"])["priors"]) == set(parameters())
    assert stored["response.center_sd"].args == {"sigma": 0.01}
    assert stored["response.beta"] == load_prior_set()["response.beta"]
    assert "log_prior" in loaded.idata.groups()
    assert set(loaded.idata.log_prior.data_vars) == {"intercept"}  # one center: no center_sd in the model
