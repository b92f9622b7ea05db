"""The CLI end to end on the bundled trial: fit -> summarize -> diagnose, refusals and data errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ORDINAL_SAMPLING, write_csv

from marrow.fits import Fit

FIT_ARGS = ORDINAL_SAMPLING


@pytest.fixture(scope="session")
def bundled_fit(ordinal_cli_fit):
    """The ordinal response fit of the bundled trial through the CLI (conftest.py, shared)."""
    return ordinal_cli_fit


def test_help_does_not_import_pymc():
    code = (
        "import sys; from marrow.cli import main\n"
        "try:\n    main(['fit', 'response', '--help'])\nexcept SystemExit: pass\n"
        "print('pymc' in sys.modules, 'arviz' in sys.modules, 'pandas' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "False False False"
    assert "Example" in result.stdout


@pytest.mark.parametrize("command", [(), ("fit",), ("fit", "response"), ("summarize",), ("diagnose",)])
def test_every_help_has_an_example(marrow_cli, command):
    code, out, _ = marrow_cli(*command, "--help")
    assert code == 0 and "Example" in out


@pytest.mark.sampling
def test_summarize_reports_published_scale_figures(marrow_cli, bundled_fit):
    code, out, err = marrow_cli("summarize", bundled_fit, "--format", "json")
    assert code == 0, err
    rows = {r["quantity"]: r for r in json.loads(out)["rows"]}
    assert abs(rows["Response rate (trial population)"]["median"] - 0.28) < 0.03
    assert abs(rows["Complete response rate"]["median"] - 0.07) < 0.02
    assert abs(rows["Partial response rate"]["median"] - 0.22) < 0.03
    assert rows["Odds ratio, prior_atg"]["median"] > 1
    assert rows["Odds ratio, active_infection"]["median"] < 1
    pooled = rows["Response rate (trial population)"]["median"]
    fit = Fit.load(bundled_fit)
    observed = fit.idata.observed_data
    raw = (observed["center_responders"] / observed["center_n"]).to_numpy()
    posterior = [rows[f"Response rate, {center}"]["median"] for center in observed["center"].to_numpy()]
    # Partial pooling: center estimates spread less than the raw proportions and sit nearer the pooled rate.
    assert max(posterior) - min(posterior) < (max(raw) - min(raw)) / 2
    assert sum(abs(p - pooled) for p in posterior) < sum(abs(r - pooled) for r in raw) / 2
    assert rows["P(response rate > 0.15)"]["probability"] > 0.95 and rows["P(response rate > 0.15)"]["mean"] is None


@pytest.mark.sampling
def test_summarize_table_and_formats(marrow_cli, bundled_fit, tmp_path):
    code, out, _ = marrow_cli("summarize", bundled_fit)
    assert code == 0
    assert "Response rate, Center A" in out and "P(response rate > 0.15)" in out and "SYNTHETIC" in out
    for fmt, marker in (("csv", "quantity,kind,median"), ("markdown", "| quantity"), ("latex", r"\toprule")):
        code, out, _ = marrow_cli("summarize", bundled_fit, "--format", fmt)
        assert code == 0 and marker in out
    target = tmp_path / "summary.tex"
    assert marrow_cli("summarize", bundled_fit, "--format", "latex", "--out", target)[0] == 0
    code, _, err = marrow_cli("summarize", bundled_fit, "--format", "latex", "--out", target)
    assert code == 2 and "--force" in err


@pytest.mark.sampling
def test_diagnose_passes_and_fails_loudly(marrow_cli, bundled_fit):
    code, out, err = marrow_cli("diagnose", bundled_fit)
    assert code == 0, out + err
    assert "divergences" in out and "Pareto k" in out and "all checks passed" in out
    code, out, err = marrow_cli("diagnose", bundled_fit, "--min-ess", "1000000")
    assert code == 1
    assert "FAILED" in out and "bulk ESS" in err and "Try:" in err


@pytest.mark.sampling
def test_provenance_is_recorded(bundled_fit):
    fit = Fit.load(bundled_fit)
    p = fit.provenance
    assert fit.spec.outcome == "ordinal" and fit.spec.covariates == ("prior_atg", "active_infection")
    assert json.loads(p["data_sha256"])["patients"] == fit.data_sources[0]["sha256"]
    assert json.loads(p["data_rows"]) == {"patients": 74}
    assert fit.settings.seed == 2017 and fit.settings.draws == 500
    assert fit.priors.name == "weakly-informative" and fit.priors["response.intercept"].args["sigma"] == 1.5
    versions = json.loads(p["versions"])
    assert {"python", "pymc", "arviz", "numpy", "marrow"} <= set(versions)
    assert p["created_utc"].endswith("Z") and "fit response" in p["command_line"]


@pytest.mark.sampling
def test_existing_fit_is_not_overwritten(marrow_cli, bundled_fit):
    before = bundled_fit.read_bytes()
    code, _, err = marrow_cli("fit", "response", *FIT_ARGS, "--out", bundled_fit)
    assert code == 2 and "already exists" in err and "--force" in err
    assert bundled_fit.read_bytes() == before


def test_data_error_exits_2_without_traceback(marrow_cli, tmp_path, patients_frame):
    frame = patients_frame.copy()
    frame.loc[3, "response"] = "maybe"
    path = write_csv(frame, tmp_path / "bad.csv")
    code, out, err = marrow_cli("fit", "response", "--data", path, "--out", tmp_path / "x.nc")
    assert code == 2
    assert "bad.csv, column 'response'" in err and "row 4)" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.nc").exists()


def test_usage_errors_exit_2(marrow_cli, tmp_path):
    assert marrow_cli("fit", "response", "--covariates", "nope", "--out", tmp_path / "x.nc")[0] == 2
    code, _, err = marrow_cli("fit", "response", "--prior", "no-such-set", "--out", tmp_path / "x.nc")
    assert code == 2 and "unknown prior set" in err
    code, _, err = marrow_cli("summarize", tmp_path / "missing.nc")
    assert code == 2 and "not found" in err
    (tmp_path / "junk.nc").write_text("not a fit")
    code, _, err = marrow_cli("summarize", tmp_path / "junk.nc")
    assert code == 2 and "Traceback" not in err
