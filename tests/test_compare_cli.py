"""`marrow compare` end to end: every format, --out safety, a user CSV, and a small stored response fit."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from marrow.cli import main
from marrow.datasets import PATIENTS_CSV

COVARIATES = "prior_atg,active_infection"


@pytest.fixture(scope="module")
def response_fit(stored_fit, tmp_path_factory) -> Path:
    """The small stored ordinal response fit of the bundled trial (tests/data/fits), saved as `marrow
    fit` writes it: real draws, no sampling here."""
    return stored_fit("ordinal").save(tmp_path_factory.mktemp("fits") / "response.nc")


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["compare", *args])
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def test_no_fit_frequentist_only(capsys):
    code, out, err = run(capsys, "--covariates", COVARIATES)
    assert code == 0, err
    assert "SYNTHETIC" in err
    for section in ("Response", "Time to recovery", "Overall survival", "Safety"):
        assert section in out
    assert "0.185-0.401" in out and "Clopper-Pearson" in out


def test_csv_and_json_hold_published_numbers(capsys):
    code, out, _ = run(capsys, "--format", "csv")
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    overall = table[(table["variable"] == "response_rate") & table["method"].str.startswith("exact")].iloc[0]
    assert overall["freq"] == pytest.approx(21 / 74)
    assert (round(overall["freq_lower"], 3), round(overall["freq_upper"], 3)) == (0.185, 0.401)
    assert table["bayes"].isna().all()
    kaplan_meier = (table["variable"] == "median_days") & table["method"].str.startswith("Kaplan-Meier")
    medians = table[kaplan_meier].set_index("element")["freq"].to_dict()
    assert medians == {"leukocytic": 19, "erythrocytic": 17, "megakaryocytic": 31}
    survival = table[(table["variable"] == "survival_at") & (table["element"].astype(str) == "365.25")].iloc[0]
    assert survival["freq"] == pytest.approx(0.878, abs=5e-4)

    code, out, _ = run(capsys, "--format", "json")
    payload = json.loads(out)
    assert code == 0 and payload["rows"][0]["bayes"] is None
    cr = [r for r in payload["rows"] if r["variable"] == "cr_rate"][0]
    assert cr["freq"] == pytest.approx(0.068, abs=5e-4)


def test_markdown_and_latex(capsys):
    code, out, _ = run(capsys, "--format", "markdown", "--covariates", COVARIATES)
    assert code == 0 and "| section" in out and "Fisher exact test" in out
    code, out, _ = run(capsys, "--format", "latex", "--covariates", COVARIATES)
    assert code == 0
    assert r"\toprule" in out and r"\label{tab:compare}" in out and r"\caption{" in out
    assert "bayes 95\\% interval" in out and "Cox proportional hazards" in out


def test_out_refuses_overwrite_without_force(capsys, tmp_path):
    target = tmp_path / "compare.csv"
    code, _, err = run(capsys, "--format", "csv", "--out", str(target))
    assert code == 0 and target.exists() and "wrote" in err
    first = target.read_text()
    target.write_text("keep me")
    code, _, err = run(capsys, "--format", "csv", "--out", str(target))
    assert code == 2 and "--force" in err and target.read_text() == "keep me"
    code, _, _ = run(capsys, "--format", "csv", "--out", str(target), "--force")
    assert code == 0 and target.read_text() == first


def test_user_csv(capsys, tmp_path):
    patients = pd.DataFrame(
        {
            "patient_id": [f"U{i:02d}" for i in range(24)],
            "center": ["North"] * 12 + ["South"] * 12,
            "responder": [1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0] + [0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0],
            "smoker": ["yes", "no"] * 12,
        }
    )
    path = tmp_path / "mine.csv"
    patients.to_csv(path, index=False)
    code, out, err = run(capsys, "--data", str(path), "--covariates", "smoker", "--format", "csv")
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out))
    skipped = table["flag"].fillna("").str.startswith("skipped: ")
    assert set(table.loc[skipped, "flag"]) == {
        "skipped: Time to recovery (no recovery table)",
        "skipped: Overall survival (no 'followup_days' or 'died' columns)",
        "skipped: Safety (no 'adverse_event' column)",
    }
    table = table[~skipped]
    assert set(table["section"]) == {"Response"}  # no CR/PR codes, no recovery, survival or safety data
    overall = table[(table["variable"] == "response_rate") & table["method"].str.startswith("exact")].iloc[0]
    assert overall["freq"] == pytest.approx(6 / 24) and overall["n"] == 24
    assert "cr_rate" not in set(table["variable"])
    assert (table["variable"] == "odds_ratio").sum() == 5  # Wald, profile, GEE, Fisher, random-intercept MLE


def test_user_csv_errors_are_clear(capsys, tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"patient_id": ["a", "b"], "center": ["X", "X"], "responder": [1, 0]}).to_csv(path, index=False)
    code, _, err = run(capsys, "--data", str(path), "--covariates", "age")
    assert code == 2 and "covariate asked for is absent" in err


def test_with_response_fit(capsys, response_fit):
    code, out, err = run(capsys, str(response_fit), "--format", "json")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    by_key = {}
    for row in rows:
        by_key.setdefault((row["variable"], row["element"]), row)
    overall = by_key[("response_rate", "")]
    assert overall["bayes_lower"] < overall["bayes"] < overall["bayes_upper"]
    assert 0.2 < overall["bayes"] < 0.37
    assert by_key[("cr_rate", "")]["bayes"] is not None and by_key[("pr_rate", "")]["bayes"] is not None
    for center in ("Center A", "Center G"):
        assert by_key[("center_rate", center)]["bayes"] is not None
    assert by_key[("odds_ratio", "prior_atg")]["bayes"] > 1
    assert "shrinkage" in by_key[("center_rate", "Center A")]["flag"]
    # No recovery, survival or safety fit: those Bayesian columns stay empty.
    assert by_key[("median_days", "leukocytic")]["bayes"] is None
    assert by_key[("ae_rate", "")]["bayes"] is None

    code, out, _ = run(capsys, str(response_fit))
    assert code == 0 and "response (ordinal)" in out and "0.185-0.401" in out


def test_fit_with_other_data_is_refused(capsys, response_fit, tmp_path):
    changed = tmp_path / "patients.csv"
    shutil.copy(PATIENTS_CSV, changed)
    changed.write_text(changed.read_text().replace("P001,Center E,NR", "P001,Center E,PR", 1))
    code, _, err = run(capsys, str(response_fit), "--data", str(changed))
    assert code == 2 and "not the patients file the fit was made from" in err
