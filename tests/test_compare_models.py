"""`marrow compare-models` and `marrow fit recovery` end to end on the bundled trial; refusals with exit 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import write_csv

from marrow import dims
from marrow.fits import Fit
from marrow.model_comparison import compare_fits, fit_labels
from marrow.summaries import posterior_summary

CLI_SAMPLING = ("--chains", "2", "--draws", "300", "--tune", "300", "--target-accept", "0.9", "--quiet")
# Published median (range) days to recovery among responders (Pang et al. 2017).
PUBLISHED_RANGE = {"leukocytic": (11, 29), "erythrocytic": (12, 25), "megakaryocytic": (26, 84)}

# PyTensor warns once per process, at the first compilation, when no BLAS is linked: named, not an error.
pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")


@pytest.fixture(scope="session")
def recovery_fits(tmp_path_factory):
    """Weibull cure (with covariates), log-normal cure and Weibull without cure, fitted through the CLI."""
    from click.testing import CliRunner

    from marrow.cli import cli

    folder = tmp_path_factory.mktemp("recovery_fits")
    variants = {
        "weibull.nc": ["--family", "weibull", "--covariates", "prior_atg,active_infection", "--by-day", "30,60,90,180"],
        "lognormal.nc": ["--family", "lognormal"],
        "no-cure.nc": ["--family", "weibull", "--no-cure"],
    }
    results = {}
    for name, options in variants.items():
        result = CliRunner().invoke(cli, ["fit", "recovery", *options, "--out", str(folder / name), *CLI_SAMPLING])
        results[name] = (result, folder / name)
    return results


@pytest.mark.sampling
def test_recovery_cli_end_to_end_on_bundled_trial(recovery_fits, marrow_cli):
    result, path = recovery_fits["weibull.nc"]
    assert result.exit_code == 0, result.output
    fit = Fit.load(path)
    median = fit.idata.posterior["median_days"].median(("chain", "draw"))
    for lineage, (low, high) in PUBLISHED_RANGE.items():
        assert low <= float(median.sel({dims.LINEAGE: lineage})) <= high, lineage
    assert int(np.argmax(median.to_numpy())) == list(median[dims.LINEAGE].to_numpy()).index("megakaryocytic")
    assert list(fit.idata.posterior[dims.DAY].to_numpy()) == [30, 60, 90, 180]
    labels = set(posterior_summary(fit)["quantity"])
    for label in (
        "Median days to recovery, megakaryocytic",
        "Never recovers (cure fraction), leukocytic",
        "P(recovered by day 60), erythrocytic",
        "Time ratio, prior_atg",
        "Odds ratio of recovery, active_infection",
    ):
        assert label in labels
    # About 19, 17 and 15 of 74 recover: the cure fractions are near 0.74-0.80.
    cure = fit.idata.posterior["cure_fraction"].mean(("chain", "draw")).to_numpy()
    assert np.all((cure > 0.65) & (cure < 0.87))
    assert fit.idata.log_likelihood["recovery"].sizes[dims.ROW] == 222
    assert fit.idata.observed_data["recovered_count"].to_numpy().tolist() == [19, 17, 15]
    code, stdout, _ = marrow_cli("summarize", path)
    assert code == 0 and "P(megakaryocytic is the slowest lineage to recover)" in stdout


@pytest.mark.sampling
def test_compare_models_ranks_cure_above_no_cure(recovery_fits, marrow_cli):
    paths = [recovery_fits[name][1] for name in ("no-cure.nc", "lognormal.nc")]
    result = compare_fits(paths)
    table = result.table
    assert list(table["rank"]) == [0, 1]
    assert table["fit"].iloc[0] == "lognormal.nc"  # a cure model beats the plain AFT by far on this trial
    assert table["elpd_diff"].iloc[1] > 4 * table["dse"].iloc[1]
    assert np.isclose(table["weight"].sum(), 1.0)
    assert set(table["model"]) == {"recovery (lognormal cure)", "recovery (weibull AFT, no cure)"}
    code, stdout, _ = marrow_cli("compare-models", *paths, "--format", "csv")
    assert code == 0
    assert stdout.splitlines()[0] == "model,fit,rank,elpd_loo,se,p_loo,elpd_diff,dse,weight,warning"


@pytest.mark.sampling
def test_compare_models_refuses_fits_on_different_data(recovery_fits, tmp_path, marrow_cli):
    path = recovery_fits["lognormal.nc"][1]
    fit = Fit.load(path)
    hashes = json.loads(fit.provenance["data_sha256"])
    hashes["recovery"] = "0" * 64
    fit.provenance["data_sha256"] = json.dumps(hashes)
    other = fit.save(tmp_path / "other-data.nc")
    code, _, stderr = marrow_cli("compare-models", path, other)
    assert code == 2 and "different data" in stderr


@pytest.mark.sampling
def test_compare_models_refuses_fits_without_log_likelihood(recovery_fits, tmp_path, marrow_cli):
    path = recovery_fits["lognormal.nc"][1]
    fit = Fit.load(path)
    del fit.idata.log_likelihood
    bare = fit.save(tmp_path / "bare.nc")
    code, _, stderr = marrow_cli("compare-models", path, bare)
    assert code == 2 and "no log_likelihood" in stderr


def test_compare_models_needs_two_fits(marrow_cli, tmp_path):
    code, _, stderr = marrow_cli("compare-models", tmp_path / "one.nc")
    assert code == 2


def test_fit_labels_disambiguate_equal_names(tmp_path):
    assert fit_labels([tmp_path / "a.nc", tmp_path / "b.nc"]) == ["a.nc", "b.nc"]
    assert fit_labels([tmp_path / "x" / "a.nc", tmp_path / "y" / "a.nc"]) == [
        str(tmp_path / "x" / "a.nc"),
        str(tmp_path / "y" / "a.nc"),
    ]


def test_bad_recovery_data_is_rejected_with_exit_2(tmp_path, patients_frame, recovery_frame, marrow_cli):
    bad = recovery_frame.copy()
    bad.loc[0, "patient_id"] = "P999"
    bad.loc[1, "day"] = "-3"
    bad.loc[2, "recovered"] = "maybe"
    bad = pd.concat([bad, bad.iloc[[5]]], ignore_index=True)  # a duplicated (patient, lineage) pair
    patients = write_csv(patients_frame, tmp_path / "patients.csv")
    recovery = write_csv(bad, tmp_path / "recovery.csv")
    code, _, stderr = marrow_cli(
        "fit", "recovery", "--data", patients, "--recovery", recovery, "--out", tmp_path / "never.nc", "--quiet"
    )
    assert code == 2
    assert "patient_id not found" in stderr and "values are not positive" in stderr
    assert "values are not 0/1" in stderr and "duplicated (patient_id, lineage) pair" in stderr
    assert not (tmp_path / "never.nc").exists()
