"""MAP priors: history validation, EM mixtures, effective sample size, recovery of a known hierarchy,
and `marrow priors map` writing a prior set that `fit --prior` accepts."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marrow.data.history import read_history
from marrow.errors import DataError, UsageError
from marrow.priors import Prior, load_prior_set
from marrow.priors.map import (
    choose_mixture,
    ess_elir,
    ess_moment,
    fit_mixture,
    robustify,
)

MU, TAU = -1.0, 0.3


def history_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def simulated_history(path: Path, studies: int = 10, n: int = 200, seed: int = 4) -> Path:
    """Historical studies from a known hierarchy: logit rate ~ Normal(MU, TAU)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(MU, TAU, studies)
    responders = rng.binomial(n, 1 / (1 + np.exp(-theta)))
    frame = pd.DataFrame({"study": [f"Study {i + 1}" for i in range(studies)], "n": n, "responders": responders})
    frame.to_csv(path, index=False)
    return path


# --- history validation -----------------------------------------------------------------------


def test_history_reads(tmp_path):
    table = read_history(history_csv(tmp_path / "h.csv", "study,n,responders\nA,40,10\n B ,25,0\nC,30,30\n"))
    assert list(table["study"]) == ["A", "B", "C"]
    assert table["n"].dtype == np.int64 and list(table["responders"]) == [10, 0, 30]


@pytest.mark.parametrize(
    "text, pieces",
    [
        ("study,n\nA,40\nB,30\n", ["column 'responders'", "required column is missing"]),
        ("study,n,responders\nA,40,x\nB,30,2\n", ["column 'responders'", "values are not numbers", "row 1)"]),
        ("study,n,responders\nA,40,10\nB,0,0\n", ["column 'n'", "whole numbers >= 1", "row 2)"]),
        ("study,n,responders\nA,40.5,10\nB,30,2\n", ["column 'n'", "whole numbers >= 1", "row 1)"]),
        ("study,n,responders\nA,40,-1\nB,30,2\n", ["column 'responders'", "whole numbers >= 0"]),
        ("study,n,responders\nA,40,41\nB,30,2\n", ["more responders than patients", "row 1)"]),
        ("study,n,responders\nA,40,\nB,30,2\n", ["missing values", "column 'responders'"]),
        ("study,n,responders\nA,40,10\nA,30,2\n", ["duplicated study names", "rows 1, 2)"]),
        ("study,n,responders\n,40,10\nB,30,2\n", ["empty study names"]),
        ("study,n,responders\nA,40,10\n", ["only 1 study", "at least 2 historical studies"]),
    ],
)
def test_history_problems_name_file_column_and_row(tmp_path, text, pieces):
    path = history_csv(tmp_path / "history.csv", text)
    with pytest.raises(DataError) as info:
        read_history(path)
    message = str(info.value)
    assert str(path) in message
    for piece in pieces:
        assert piece in message, message


def test_every_history_problem_at_once(tmp_path):
    path = history_csv(tmp_path / "h.csv", "study,n,responders\nA,0,1\nA,10,x\n")
    with pytest.raises(DataError) as info:
        read_history(path)
    assert len(info.value.problems) >= 3


def test_missing_history_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_history(tmp_path / "absent.csv")


def test_priors_map_cli_reports_data_errors_with_exit_2(marrow_cli, tmp_path):
    path = history_csv(tmp_path / "h.csv", "study,n,responders\nA,40,50\nB,30,2\n")
    code, _, err = marrow_cli("priors", "map", "--history", path)
    assert code == 2 and "more responders than patients" in err and "h.csv" in err
    code, _, err = marrow_cli("priors", "map", "--history", path, "--robust-weight", "1.5")
    assert code == 2 and "--robust-weight must be in [0, 1)" in err


# --- mixtures and ESS (no sampling) -----------------------------------------------------------


def test_em_recovers_a_two_component_mixture():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1, 0.3, 14_000), rng.normal(1, 0.6, 6_000)])
    best, fits = choose_mixture(x, 3)
    assert [m.k for m in fits] == [1, 2, 3]
    two = fits[1]
    assert two.w[0] == pytest.approx(0.7, abs=0.02)
    assert two.mu[0] == pytest.approx(-1, abs=0.03) and two.mu[1] == pytest.approx(1, abs=0.05)
    assert two.sigma[0] == pytest.approx(0.3, abs=0.02) and two.sigma[1] == pytest.approx(0.6, abs=0.04)
    assert best.k >= 2  # BIC prefers the true structure over one normal


def test_bic_keeps_one_component_for_normal_draws():
    x = np.random.default_rng(1).normal(-1, 0.4, 10_000)
    best, _ = choose_mixture(x, 3)
    assert best.k == 1
    assert best.mu[0] == pytest.approx(-1, abs=0.01) and best.sigma[0] == pytest.approx(0.4, abs=0.01)
    single = fit_mixture(x, 1)
    assert single.w == (1.0,)


def test_robustify_adds_a_vague_component():
    mixture = fit_mixture(np.random.default_rng(2).normal(-1, 0.4, 5_000), 1)
    robust = robustify(mixture, 0.2)
    assert robust.w == pytest.approx((0.8, 0.2)) and robust.mu[-1] == 0 and robust.sigma[-1] == 1.5
    assert robustify(mixture, 0) is mixture
    with pytest.raises(UsageError, match="robust-weight"):
        robustify(mixture, 1.0)
    prior = robust.rounded().prior("test")
    assert prior.dist == "NormalMixture" and sum(prior.args["w"]) == pytest.approx(1, abs=1e-12)


@pytest.mark.parametrize("a, b", [(3.0, 9.0), (10.0, 10.0), (24.0, 56.0), (2.0, 1.5)])
def test_ess_of_a_beta_prior_is_a_plus_b(a, b):
    assert ess_elir(Prior("Beta", {"alpha": a, "beta": b})) == pytest.approx(a + b, rel=0.01)
    draws = np.random.default_rng(3).beta(a, b, 400_000)
    assert ess_moment(draws) == pytest.approx(a + b, rel=0.03)


def test_ess_of_a_normal_on_the_logit_matching_a_beta():
    from scipy.special import digamma, polygamma

    a, b = 30.0, 70.0
    prior = Prior(
        "Normal", {"mu": float(digamma(a) - digamma(b)), "sigma": float(math.sqrt(polygamma(1, a) + polygamma(1, b)))}
    )
    assert ess_elir(prior) == pytest.approx(a + b, rel=0.05)
    # the vague robust component is worth a few patients
    assert 2 < ess_elir(Prior("Normal", {"mu": 0.0, "sigma": 1.5})) < 5
    with pytest.raises(UsageError):
        ess_elir(Prior("HalfNormal", {"sigma": 1.0}))


# --- the whole derivation on a known hierarchy (sampling) --------------------------------------


@pytest.fixture(scope="session")
def known_map(tmp_path_factory):
    from marrow.fits.map_prior import derive_map_prior

    path = simulated_history(tmp_path_factory.mktemp("map") / "history.csv")
    return derive_map_prior(path, robust_weight=0.2, draws=1000, tune=500, chains=2, seed=3)


@pytest.mark.sampling
def test_map_recovers_the_predictive_of_a_known_hierarchy(known_map):
    theta = known_map.fit.theta_new
    # predictive of a new study: centred near mu, spread a little wider than tau (mu and tau uncertain)
    assert abs(theta.mean() - MU) < 0.25
    assert TAU * 0.8 < theta.std() < TAU * 2.5
    assert abs(np.median(known_map.fit.mu) - MU) < 0.25
    assert np.quantile(known_map.fit.tau, 0.025) < TAU < np.quantile(known_map.fit.tau, 0.975)
    mixture = known_map.mixture.prior()
    assert mixture.scipy().mean() == pytest.approx(theta.mean(), abs=0.02)
    assert mixture.scipy().std() == pytest.approx(theta.std(), rel=0.05)
    summary = known_map.summary.set_index("distribution")
    exact, approx = summary.iloc[0], summary.iloc[1]
    assert approx["rate mean"] == pytest.approx(exact["rate mean"], abs=0.01)
    assert approx["ESS (moment)"] == pytest.approx(exact["ESS (moment)"], rel=0.15)
    robust = summary.iloc[2]
    # robustifying keeps the centre but is worth fewer patients
    assert robust["ESS (ELIR)"] < approx["ESS (ELIR)"] and robust["ESS (moment)"] < approx["ESS (moment)"]
    assert known_map.fit.divergences == 0


@pytest.mark.sampling
def test_priors_map_cli_writes_a_usable_prior_set(marrow_cli, tmp_path):
    history = simulated_history(tmp_path / "history.csv", studies=6, n=80, seed=9)
    out = tmp_path / "map-prior.toml"
    code, stdout, err = marrow_cli(
        "priors",
        "map",
        "--history",
        history,
        "--out",
        out,
        "--draws",
        "500",
        "--tune",
        "500",
        "--robust-weight",
        "0.1",
        "--format",
        "json",
        "--quiet",
    )
    assert code == 0, err
    assert "ESS (ELIR)" in stdout and "BIC" in stdout
    text = out.read_text()
    assert "sha256" in text and 'base = "weakly-informative"' in text
    raw = tomllib.loads(text)
    assert raw["name"] == "map-prior"
    prior_set = load_prior_set(out)
    intercept = prior_set["response.intercept"]
    assert intercept.dist == "NormalMixture" and intercept.args["w"][-1] == pytest.approx(0.1)
    assert intercept.args["sigma"][-1] == 1.5 and intercept.reason.startswith("MAP prior from 6 historical studies")
    assert prior_set["response.beta"] == load_prior_set()["response.beta"]
    # refuses to overwrite, before any sampling
    code, _, err = marrow_cli("priors", "map", "--history", history, "--out", out)
    assert code == 2 and "already exists" in err
    # and `priors show` renders the mixture
    code, shown, _ = marrow_cli("priors", "show", out, "--format", "json")
    assert code == 0 and "NormalMixture(w=[" in json.loads(shown)["rows"][0]["prior"]
