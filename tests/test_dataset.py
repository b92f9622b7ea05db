"""The bundled synthetic trial reproduces every published aggregate of Pang et al. 2017."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from scipy.stats import binomtest

from marrow.datasets import PATIENTS_CSV, RECOVERY_CSV
from marrow.datasets.reconstruct import write

LINEAGES = ["leukocytic", "erythrocytic", "megakaryocytic"]
# lineage: (n recovered among responders, median, min, max) in days
PUBLISHED_RECOVERY = {
    "leukocytic": (19, 19, 11, 29),
    "erythrocytic": (17, 17, 12, 25),
    "megakaryocytic": (15, 31, 26, 84),
}


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    return pd.read_csv(PATIENTS_CSV)


@pytest.fixture(scope="module")
def recovery() -> pd.DataFrame:
    return pd.read_csv(RECOVERY_CSV)


@pytest.fixture(scope="module")
def responder_recovery(patients: pd.DataFrame, recovery: pd.DataFrame) -> pd.DataFrame:
    merged = recovery.merge(patients[["patient_id", "response"]], on="patient_id")
    return merged[merged["response"] != "NR"]


def test_columns_and_types(patients: pd.DataFrame, recovery: pd.DataFrame) -> None:
    assert list(patients.columns) == [
        "patient_id",
        "center",
        "response",
        "followup_days",
        "died",
        "adverse_event",
        "prior_atg",
        "active_infection",
        "age",
    ]
    assert list(recovery.columns) == ["patient_id", "lineage", "day", "recovered"]
    assert patients["patient_id"].tolist() == [f"P{i:03d}" for i in range(1, 75)]
    for col in ["followup_days", "died", "adverse_event", "prior_atg", "active_infection", "age"]:
        assert pd.api.types.is_integer_dtype(patients[col]), col
    for col in ["died", "adverse_event", "prior_atg", "active_infection"]:
        assert set(patients[col]) <= {0, 1}, col
    assert patients["age"].between(14, 65).all()


def test_patients_and_centers(patients: pd.DataFrame) -> None:
    sizes = patients["center"].value_counts()
    assert len(patients) == 74
    assert sorted(sizes.index) == [f"Center {c}" for c in "ABCDEFG"]
    assert sizes.nunique() > 1
    cr_centers = patients.loc[patients["response"] == "CR", "center"]
    assert cr_centers.nunique() > 1


def test_best_response(patients: pd.DataFrame) -> None:
    assert patients["response"].value_counts().to_dict() == {"CR": 5, "PR": 16, "NR": 53}
    responders = int(patients["response"].isin(["CR", "PR"]).sum())
    assert responders == 21
    assert round(responders / len(patients), 3) == 0.284
    ci = binomtest(responders, len(patients)).proportion_ci(method="exact")
    assert (round(ci.low, 3), round(ci.high, 3)) == (0.185, 0.401)


def test_survival_and_followup(patients: pd.DataFrame) -> None:
    assert (patients["died"] == 0).sum() == 65
    assert (patients["died"] == 1).sum() == 9
    assert patients["followup_days"].median() == 517
    kmf = KaplanMeierFitter().fit(patients["followup_days"], patients["died"])
    assert round(float(kmf.survival_function_at_times(365).iloc[0]), 3) == 0.878
    assert (patients.loc[patients["died"] == 0, "followup_days"] >= 366).all()
    deaths = patients.loc[patients["died"] == 1, "response"].value_counts().to_dict()
    assert deaths == {"NR": 8, "PR": 1}


def test_adverse_events(patients: pd.DataFrame) -> None:
    assert patients["adverse_event"].sum() == 7


def test_covariate_direction(patients: pd.DataFrame) -> None:
    responder = patients["response"] != "NR"
    sums = patients.groupby(responder)[["prior_atg", "active_infection"]].sum()
    assert sums.loc[True].to_dict() == {"prior_atg": 15, "active_infection": 2}
    assert sums.loc[False].to_dict() == {"prior_atg": 22, "active_infection": 16}
    rates = patients.groupby(responder)[["prior_atg", "active_infection"]].mean()
    assert rates.loc[True, "prior_atg"] > rates.loc[False, "prior_atg"]
    assert rates.loc[True, "active_infection"] < rates.loc[False, "active_infection"]
    assert (patients.groupby("center")["prior_atg"].nunique() > 1).sum() > 1


def test_recovery_layout(patients: pd.DataFrame, recovery: pd.DataFrame) -> None:
    assert len(recovery) == 222
    assert recovery.groupby("patient_id")["lineage"].apply(list).map(lambda seq: seq == LINEAGES).all()
    merged = recovery.merge(patients, on="patient_id")
    assert (merged["day"] > 0).all()
    assert (merged["day"] <= merged["followup_days"]).all()
    censored = merged[merged["recovered"] == 0]
    assert (censored["day"] == censored["followup_days"]).all()
    assert (merged.loc[merged["response"] == "NR", "recovered"] == 0).all()
    assert (merged.loc[merged["response"] == "CR", "recovered"] == 1).all()


@pytest.mark.parametrize("lineage", LINEAGES)
def test_recovery_per_lineage(responder_recovery: pd.DataFrame, lineage: str) -> None:
    n_recovered, median, low, high = PUBLISHED_RECOVERY[lineage]
    rows = responder_recovery[responder_recovery["lineage"] == lineage]
    assert len(rows) == 21
    days = rows.loc[rows["recovered"] == 1, "day"]
    assert len(days) == n_recovered
    assert days.median() == median
    assert (days.min(), days.max()) == (low, high)
    kmf = KaplanMeierFitter().fit(rows["day"], rows["recovered"])
    assert kmf.median_survival_time_ == median


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    write(tmp_path)
    assert (tmp_path / PATIENTS_CSV.name).read_bytes() == PATIENTS_CSV.read_bytes()
    assert (tmp_path / RECOVERY_CSV.name).read_bytes() == RECOVERY_CSV.read_bytes()
