"""The data contract: every bad input is reported with file, column, rows and expectation, all at once."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import write_csv

from marrow.data import Needs, load_trial
from marrow.errors import DataError


def problems_of(patients, recovery=None, needs=Needs()) -> list[str]:  # noqa: B008 (Needs is a frozen dataclass: an immutable default)
    with pytest.raises(DataError) as info:
        load_trial(patients, recovery, needs)
    return [p.describe() for p in info.value.problems]


def test_bundled_trial_loads_with_every_need():
    needs = Needs(
        ordinal=True,
        followup=True,
        died=True,
        adverse_event=True,
        recovery=True,
        covariates=("prior_atg", "active_infection", "age"),
    )
    data = load_trial(needs=needs)
    assert data.synthetic
    assert len(data.patients) == 74 and len(data.centers) == 7
    assert data.lineages == ("leukocytic", "erythrocytic", "megakaryocytic")
    assert data.covariate_matrix().shape == (74, 3)
    assert {s.role for s in data.sources} == {"patients", "recovery"}
    assert all(len(s.sha256) == 64 for s in data.sources)


def test_missing_file(tmp_path):
    [message] = problems_of(tmp_path / "nope.csv")
    assert "nope.csv" in message and "file not found" in message


def test_empty_table(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("patient_id,center,response\n")
    [message] = problems_of(path)
    assert "empty" in message


def test_missing_required_columns(tmp_path, patients_frame):
    path = write_csv(patients_frame.drop(columns=["center"]), tmp_path / "p.csv")
    messages = problems_of(path)
    assert any("'center'" in m and "missing" in m for m in messages)


def test_duplicated_patient_id_names_rows(tmp_path, patients_frame):
    frame = patients_frame.copy()
    frame.loc[4, "patient_id"] = frame.loc[1, "patient_id"]
    messages = problems_of(write_csv(frame, tmp_path / "p.csv"))
    assert any("duplicated patient_id" in m and "rows 2, 5" in m for m in messages)


def test_unknown_response_code(tmp_path, patients_frame):
    frame = patients_frame.copy()
    frame.loc[[2, 9], "response"] = "SD"
    frame.loc[3, "response"] = "cr"  # any case is fine
    messages = problems_of(write_csv(frame, tmp_path / "p.csv"), needs=Needs(response=True))
    assert len(messages) == 1
    assert "unknown response codes (SD)" in messages[0] and "rows 3, 10" in messages[0]
    assert "CR, PR or NR" in messages[0]


def test_responder_only_table_supports_binary_not_ordinal(tmp_path, patients_frame):
    frame = patients_frame.drop(columns=["response"]).assign(
        responder=(patients_frame["response"] != "NR").map({True: "yes", False: "no"})
    )
    path = write_csv(frame, tmp_path / "p.csv")
    data = load_trial(path, needs=Needs())
    assert data.patients["responder"].sum() == 21
    messages = problems_of(path, needs=Needs(ordinal=True))
    assert any("ordinal" in m and "responder" in m for m in messages)


def test_non_numeric_and_non_positive_days(tmp_path, patients_frame):
    frame = patients_frame.copy()
    frame.loc[0, "followup_days"] = "soon"
    frame.loc[[5, 6], "followup_days"] = "-3"
    messages = problems_of(write_csv(frame, tmp_path / "p.csv"), needs=Needs(followup=True))
    assert any("not numbers" in m and "row 1)" in m for m in messages)
    assert any("not positive" in m and "rows 6, 7" in m for m in messages)


def test_columns_of_other_models_are_optional_until_asked(tmp_path, patients_frame):
    frame = patients_frame.drop(columns=["followup_days", "died"]).copy()
    path = write_csv(frame, tmp_path / "p.csv")
    assert len(load_trial(path).patients) == 74
    messages = problems_of(path, needs=Needs(followup=True, died=True))
    assert any("followup_days" in m for m in messages) and any("'died'" in m for m in messages)


def test_recovery_problems_all_reported_at_once(tmp_path, patients_frame, recovery_frame):
    patients = write_csv(patients_frame, tmp_path / "p.csv")
    rec = recovery_frame.copy()
    rec.loc[0, "patient_id"] = "GHOST"
    rec.loc[2, "day"] = "99999"  # after follow-up
    rec.loc[3, "day"] = "0"
    rec = pd.concat([rec, rec.iloc[[10]]], ignore_index=True)  # duplicated (patient, lineage)
    recovery = write_csv(rec, tmp_path / "r.csv")
    messages = problems_of(patients, recovery, Needs(recovery=True))
    text = "\n".join(messages)
    assert "r.csv, column 'patient_id': patient_id not found" in text and "row 1)" in text
    assert "after the patient's followup_days" in text and "row 3)" in text
    assert "not positive" in text and "row 4)" in text
    assert "duplicated (patient_id, lineage)" in text and "rows 11, 223" in text
    assert len(messages) == 4


def test_covariate_absent_constant_or_unreadable(tmp_path, patients_frame):
    frame = patients_frame.assign(constant="1", words=["a"] + ["0"] * 73)
    path = write_csv(frame, tmp_path / "p.csv")
    messages = problems_of(path, needs=Needs(covariates=("nope", "constant", "words")))
    text = "\n".join(messages)
    assert "'nope': covariate asked for is absent" in text and "prior_atg" in text
    assert "'constant': covariate is constant" in text
    assert "'words': covariate values cannot be read as numbers (row 1)" in text


def test_covariates_accept_yes_no_and_numbers(tmp_path, patients_frame):
    frame = patients_frame.copy()
    frame["prior_atg"] = frame["prior_atg"].map({"1": "Yes", "0": "no"})
    path = write_csv(frame, tmp_path / "p.csv")
    data = load_trial(path, needs=Needs(covariates=("prior_atg", "age")))
    assert data.patients["prior_atg"].sum() == 37
    assert data.patients["age"].dtype == float


def test_nan_where_required(tmp_path, patients_frame):
    frame = patients_frame.copy()
    frame.loc[[3, 4], "center"] = None
    frame.loc[7, "prior_atg"] = None
    messages = problems_of(write_csv(frame, tmp_path / "p.csv"), needs=Needs(covariates=("prior_atg",)))
    assert any("'center': empty values (rows 4, 5)" in m for m in messages)
    assert any("'prior_atg': missing covariate values (row 8)" in m for m in messages)


def test_many_rows_are_summarised(tmp_path, patients_frame):
    frame = patients_frame.copy()
    frame["response"] = "??"
    [message] = problems_of(write_csv(frame, tmp_path / "p.csv"), needs=Needs(response=True))
    assert "rows 1, 2, 3, 4, 5 and 69 more; 74 in all" in message


def test_parquet_is_read(tmp_path, patients_frame):
    path = tmp_path / "p.parquet"
    patients_frame.to_parquet(path)
    assert len(load_trial(path).patients) == 74
