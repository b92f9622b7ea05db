"""The Python API: the numbers of the CLI, the same validation, and a refitter that compiles once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import marrow
from marrow import datasets
from marrow.errors import DataError, UsageError
from marrow.fits import compiled

SAMPLING = {"chains": 2, "draws": 200, "tune": 200, "seed": 9, "cores": 2}


def test_load_trial_and_from_frames_agree_and_keep_every_valid_column():
    from_files = marrow.load_trial(covariates=["prior_atg"])
    frames = marrow.from_frames(
        pd.read_csv(datasets.PATIENTS_CSV), pd.read_csv(datasets.RECOVERY_CSV), covariates=["prior_atg"]
    )
    pd.testing.assert_frame_equal(from_files.patients, frames.patients)
    pd.testing.assert_frame_equal(from_files.recovery, frames.recovery)
    assert {"responder", "followup_days", "died", "adverse_event"} <= set(from_files.patients.columns)


def test_bad_frames_and_missing_columns_are_clear_errors():
    patients = pd.read_csv(datasets.PATIENTS_CSV)
    patients.loc[3, "center"] = ""
    with pytest.raises(DataError, match="center"):
        marrow.from_frames(patients)
    data = marrow.load_trial(datasets.PATIENTS_CSV)  # no recovery table, no covariates
    with pytest.raises(UsageError, match="needs a recovery table"):
        marrow.fit(data, "recovery")
    with pytest.raises(UsageError, match="covariate 'age'"):
        marrow.fit(data, "response", covariates=["age"])
    with pytest.raises(UsageError, match="unknown option for a model: colour"):
        marrow.fit(data, "response", colour="red")
    with pytest.raises(UsageError, match="unknown model"):
        marrow.Refitter("cure")


@pytest.mark.sampling
def test_api_fit_gives_the_numbers_of_the_cli(tmp_path, marrow_cli):
    data = marrow.load_trial(covariates=["prior_atg"])
    fit = marrow.fit(data, "response", covariates=["prior_atg"], prior="skeptical", **SAMPLING)
    out = tmp_path / "cli.nc"
    code, _, err = marrow_cli(
        "fit",
        "response",
        "--covariates",
        "prior_atg",
        "--prior",
        "skeptical",
        "--chains",
        "2",
        "--draws",
        "200",
        "--tune",
        "200",
        "--seed",
        "9",
        "--cores",
        "2",
        "--quiet",
        "--out",
        str(out),
    )
    assert code == 0, err
    cli = marrow.load_fit(out)
    assert np.array_equal(fit.idata.posterior["response_rate"], cli.idata.posterior["response_rate"])
    table = marrow.summarize(fit)
    assert "Odds ratio, prior_atg" in set(table["quantity"])
    assert {c.name for c in marrow.diagnose(fit)} == {c.name for c in marrow.diagnose(cli)}
    fit.save(tmp_path / "api.nc")
    assert np.array_equal(
        marrow.load_fit(tmp_path / "api.nc").idata.posterior["response_rate"], fit.idata.posterior["response_rate"]
    )


@pytest.mark.sampling
def test_refitter_compiles_once_and_matches_fresh_fits():
    rng = np.random.default_rng(4)
    replicates = []
    for r in range(2):  # simulated trials of one design (5 centers x 30), other labels each time
        centers = np.repeat([f"R{r}-{c}" for c in "ABCDE"], 30)
        patients = pd.DataFrame(
            {
                "patient_id": [f"P{i}" for i in range(150)],
                "center": centers,
                "responder": rng.binomial(1, 0.2 + 0.25 * r, 150),
            }
        )
        replicates.append(marrow.from_frames(patients))
    refitter = marrow.Refitter("response", **SAMPLING)
    compiled.clear()
    refits = [refitter.refit(data, seed=20 + r) for r, data in enumerate(replicates)]
    assert compiled.cached_entries() == 1
    assert list(refits[1].idata.posterior["center_rate"]["center"].to_numpy())[0] == "R1-A"
    rates = [float(f.idata.posterior["response_rate"].mean()) for f in refits]
    assert rates[1] > rates[0] + 0.1  # the data really changed
    # a plain fit (new PyMC model; the compile cache gives a fresh compile's numbers: test_compiled_cache)
    fresh = marrow.fit(replicates[1], "response", **{**SAMPLING, "seed": 21})
    # The same draws; a one-off fit's deterministics are computed after sampling with numpy
    # (marrow.fits.deterministics), a refit's by the compiled sampler: equal to rounding.
    for name in ("intercept", "center_sd"):
        assert np.array_equal(fresh.idata.posterior[name], refits[1].idata.posterior[name])
    np.testing.assert_allclose(
        fresh.idata.posterior["response_rate"], refits[1].idata.posterior["response_rate"], rtol=1e-12
    )


@pytest.mark.sampling
def test_refitter_without_postprocessing_keeps_the_same_draws_only():
    data = marrow.load_trial()
    lean = marrow.Refitter("response", postprocess=False, **SAMPLING).refit(data, seed=3)
    full = marrow.Refitter("response", **SAMPLING).refit(data, seed=3)
    assert "posterior_predictive" in full.idata.groups() and "log_likelihood" in full.idata.groups()
    assert "posterior_predictive" not in lean.idata.groups() and "log_likelihood" not in lean.idata.groups()
    for name in full.idata.posterior.data_vars:
        assert np.array_equal(lean.idata.posterior[name], full.idata.posterior[name]), name
    assert "postprocess=False" in lean.provenance.get("log_likelihood_omitted", "")
