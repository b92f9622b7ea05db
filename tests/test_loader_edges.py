"""Edges of the data contract (issue 11): optional columns, survival-only tables, interval rows, bounds,
duplicated names, encodings, separators and messages. Pure tests: no model is built."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from marrow import datasets
from marrow.data import Needs, load_frames, load_trial
from marrow.data.load import MAX_DAYS, parse_csv_bytes
from marrow.errors import DataError, ProblemList
from marrow.spec import ModelSpec

SURVIVAL = ModelSpec("survival").needs()
RECOVERY = ModelSpec("recovery").needs()
SAFETY = ModelSpec("safety").needs()
RESPONSE = ModelSpec("response").needs()


def problems(patients, recovery=None, needs=Needs()) -> list[str]:  # noqa: B008 (Needs is a frozen dataclass: an immutable default)
    with pytest.raises(DataError) as info:
        load_frames(patients, recovery, needs)
    return [p.describe() for p in info.value.problems]


def interval_table(recovery_frame: pd.DataFrame, rows: int = 6) -> tuple[pd.DataFrame, pd.Index]:
    """The bundled recovery table with its first `rows` recoveries given as (day - 5, day] intervals, day blank."""
    table = recovery_frame.assign(day_lower=None, day_upper=None)
    picked = table.index[table["recovered"] == "1"][:rows]
    table.loc[picked, "day_lower"] = (table.loc[picked, "day"].astype(float) - 5).astype(str)
    table.loc[picked, "day_upper"] = table.loc[picked, "day"]
    table.loc[picked, "day"] = None
    return table, picked


# --- 1. a column only another model needs is never held against a fit --------------------------
@pytest.mark.parametrize("column", ["died", "adverse_event", "followup_days"])
def test_blank_optional_column_is_left_out_with_a_note(patients_frame, recovery_frame, column):
    blank = patients_frame.assign(**{column: None})
    data = load_frames(blank, recovery_frame, Needs(response=True, recovery=True))
    assert column not in data.patients.columns
    assert data.notes == (f"column '{column}' ignored: empty in every row ({_used_by(column)})",)
    assert data.patients["responder"].dtype == np.int64 and len(data.patients) == 74
    needed = {"died": SURVIVAL, "adverse_event": SAFETY, "followup_days": SURVIVAL}[column]
    assert any(f"'{column}': missing values" in m for m in problems(blank, None, needed))


def _used_by(column: str) -> str:
    return {
        "died": "only the survival model needs it",
        "adverse_event": "only the safety model needs it",
        "followup_days": "only the survival model needs it; it also bounds recovery days",
    }[column]


def test_partly_invalid_optional_column_is_absent_so_present_means_valid(patients_frame):
    frame = patients_frame.copy()
    frame.loc[[2, 6], "died"] = "maybe"
    data = load_frames(frame, None, RESPONSE)
    assert "died" not in data.patients.columns
    [note] = data.notes
    assert "'died' ignored: values are not 0/1 in rows 3, 7" in note
    valid = load_frames(patients_frame, None, RESPONSE)
    assert valid.patients["died"].dtype == np.int64 and valid.notes == ()


# --- 2. the outcome is demanded only by the response model -------------------------------------
def test_only_the_response_model_needs_an_outcome():
    assert RESPONSE.response and not RESPONSE.ordinal
    assert ModelSpec("response", outcome="ordinal").needs().ordinal
    assert not any(n.response for n in (SURVIVAL, RECOVERY, SAFETY))


def test_survival_only_table_loads_for_survival_recovery_and_safety(patients_frame, recovery_frame):
    survival_only = patients_frame[["patient_id", "center", "followup_days", "died", "prior_atg", "age"]]
    for needs, recovery in ((SURVIVAL, None), (RECOVERY, recovery_frame)):
        data = load_frames(survival_only, recovery, needs)
        assert "response" not in data.patients.columns and "responder" not in data.patients.columns
        assert not data.has_ordinal_response and not data.has_responder
        assert data.notes == ()
    safety = load_frames(survival_only.assign(adverse_event=patients_frame["adverse_event"]), None, SAFETY)
    assert safety.patients["adverse_event"].sum() == 7
    [message] = problems(survival_only, None, RESPONSE)
    assert "no outcome column" in message


def test_unknown_response_code_blocks_only_the_response_model(patients_frame):
    frame = patients_frame.copy()
    frame.loc[[0, 4], "response"] = "Sd"
    for needs in (SURVIVAL, SAFETY):
        data = load_frames(frame, None, needs)
        assert "response" not in data.patients.columns and "responder" not in data.patients.columns
        assert data.notes == (
            "column 'response' ignored: unknown response codes (Sd) in rows 1, 5 (only the response model needs it)",
        )
    [message] = problems(frame, None, RESPONSE)
    assert "unknown response codes (Sd)" in message  # echoed as written, not upper-cased
    assert load_frames(patients_frame, None, SURVIVAL).has_ordinal_response


def test_invalid_response_falls_back_to_a_valid_responder_when_not_needed(patients_frame):
    frame = patients_frame.assign(response="?", responder=(patients_frame["response"] != "NR").astype(int).astype(str))
    data = load_frames(frame, None, SURVIVAL)
    assert "response" not in data.patients.columns and data.patients["responder"].sum() == 21


# --- 3. interval-censored recovery rows ----------------------------------------------------------
def test_interval_rows_are_normalised(patients_frame, recovery_frame):
    table, picked = interval_table(recovery_frame)
    data = load_frames(patients_frame, table, RECOVERY)
    rec = data.recovery
    assert data.interval_censored
    assert rec["day_lower"].dtype == np.float64 and rec["day_upper"].dtype == np.float64
    original = recovery_frame["day"].astype(float)
    assert (rec.loc[picked, "day"] == original[picked]).all()
    assert (rec.loc[picked, "day_upper"] == original[picked]).all()
    assert (rec.loc[picked, "day_lower"] == original[picked] - 5).all()
    others = rec.index.difference(picked)
    assert (rec.loc[others, "day_lower"] == rec.loc[others, "day"]).all()
    assert (rec.loc[others, "day_upper"] == rec.loc[others, "day"]).all()
    assert (rec["day"] == original).all()


def test_table_without_interval_columns_has_exact_bounds(patients_frame, recovery_frame):
    data = load_frames(patients_frame, recovery_frame, RECOVERY)
    assert not data.interval_censored
    assert (data.recovery["day_lower"] == data.recovery["day"]).all()
    assert (data.recovery["day_upper"] == data.recovery["day"]).all()
    assert set(data.recovery.columns) == {"patient_id", "lineage", "day", "recovered", "day_lower", "day_upper"}


def test_every_bad_interval_is_reported(patients_frame, recovery_frame):
    table, picked = interval_table(recovery_frame)
    censored = table.index[table["recovered"] == "0"][0]
    table.loc[censored, ["day_lower", "day_upper"]] = ["1", "5"]
    table.loc[picked[0], "day_lower"] = "500"  # lower >= upper
    table.loc[picked[1], "day_upper"] = None  # only one of the two
    table.loc[picked[2], "day"] = "3"  # disagrees with day_upper
    table.loc[picked[3], "day_upper"] = "inf"
    table.loc[picked[4], "day_lower"] = "-1"
    text = "\n".join(problems(patients_frame, table, RECOVERY))
    row = {i: str(i + 1) for i in table.index}
    assert f"'day_lower': an interval is given on a censored row (recovered = 0) (row {row[censored]})" in text
    assert f"'day_lower': day_lower is not below day_upper (row {row[picked[0]]})" in text
    assert f"'day_upper': day_upper is blank where day_lower is given (row {row[picked[1]]})" in text
    assert f"'day': day disagrees with day_upper on an interval row (row {row[picked[2]]})" in text
    assert f"'day_upper': values are not finite (row {row[picked[3]]})" in text
    assert f"'day_lower': values are negative (row {row[picked[4]]})" in text
    assert text.count("\n") + 1 == 6


def test_interval_day_agreeing_with_upper_and_one_column_only(patients_frame, recovery_frame):
    table, picked = interval_table(recovery_frame, rows=2)
    table.loc[picked, "day"] = table.loc[picked, "day_upper"]
    assert load_frames(patients_frame, table, RECOVERY).interval_censored
    [message] = problems(patients_frame, table.drop(columns=["day_upper"]), RECOVERY)
    assert "'day_upper': required column is missing" in message


def test_followup_check_uses_day_upper(patients_frame, recovery_frame):
    table, picked = interval_table(recovery_frame, rows=1)
    follow = float(patients_frame.set_index("patient_id").loc[table.loc[picked[0], "patient_id"], "followup_days"])
    table.loc[picked[0], "day_upper"] = str(follow + 1)
    [message] = problems(patients_frame, table, RECOVERY)
    assert (
        "'day_upper': recovery day is after the patient's followup_days" in message
        and f"row {picked[0] + 1})" in message
    )


# --- 4. non-finite or absurd numbers --------------------------------------------------------------
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "1e308", str(2 * MAX_DAYS)])
@pytest.mark.parametrize("column", ["age", "followup_days", "day", "day_lower", "day_upper"])
def test_non_finite_or_absurd_numbers_are_data_errors(patients_frame, recovery_frame, column, value):
    patients, recovery = patients_frame.copy(), recovery_frame.copy()
    if column in ("day_lower", "day_upper"):
        recovery, picked = interval_table(recovery_frame, rows=1)
        recovery.loc[picked[0], column] = value
        row = picked[0]
    elif column == "day":
        row = 3
        recovery.loc[row, column] = value
    else:
        row = 3
        patients.loc[row, column] = value
    needs = Needs(recovery=True, followup=True, died=True, covariates=("age",))
    text = "\n".join(problems(patients, recovery, needs))
    assert f"column '{column}'" in text and f"row {row + 1})" in text


def test_bounds_are_inclusive_and_documented(patients_frame):
    frame = patients_frame.assign(age=patients_frame["age"].where(patients_frame.index != 0, "-1000000"))
    data = load_frames(frame, None, Needs(covariates=("age",)))
    assert data.covariate_matrix()[0, 0] == -1e6
    frame.loc[0, "age"] = "-1000001"
    [message] = problems(frame, None, Needs(covariates=("age",)))
    assert "implausibly large" in message and "1,000,000" in message


# --- 5. duplicated column names -----------------------------------------------------------------
def test_duplicated_column_in_a_csv_names_both_copies(tmp_path):
    text = datasets.PATIENTS_CSV.read_text().replace(",age", ",center", 1)
    path = tmp_path / "dup.csv"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        load_trial(path, needs=RESPONSE)
    [problem] = info.value.problems
    assert problem.column == "center" and "columns 2 and 9 are both named 'center'" in problem.message


def test_duplicated_column_in_a_frame_is_a_data_error_not_a_crash(patients_frame):
    frame = pd.concat([patients_frame, patients_frame[["center"]]], axis=1)
    [message] = problems(frame, None, RESPONSE)
    assert "columns 2 and 10 are both named 'center'" in message


# --- 6. a bad follow-up is reported once, as itself -----------------------------------------------
@pytest.mark.parametrize("value", ["-30", "0"])
def test_bad_followup_is_not_also_reported_as_late_recovery(patients_frame, recovery_frame, value):
    frame = patients_frame.copy()
    frame.loc[4, "followup_days"] = value  # P005 recovered lineages after day 0
    [message] = problems(frame, recovery_frame, Needs(recovery=True, followup=True))
    assert "'followup_days': values are not positive (row 5)" in message


# --- 7. messages that name the cause --------------------------------------------------------------
def parse(data: bytes) -> tuple[pd.DataFrame | None, list[str], list[str]]:
    found, notes = ProblemList(), []
    table = parse_csv_bytes(data, "f.csv", found, notes)
    return table, [p.describe() for p in found.problems], notes


def test_non_utf8_file_says_where_and_how_to_fix():
    table, messages, _ = parse("patient_id,center\nP1,Bern\nP2,Zürich\n".encode("cp1252"))
    assert table is None
    [message] = messages
    assert "not UTF-8" in message and "line 3 (data row 2)" in message and "0xFC" in message and "UTF-8" in message
    [message] = parse("patient_id,center\nP1,A\n".encode("utf-16"))[1]
    assert "UTF-16" in message


def test_utf8_with_byte_order_mark_reads():
    table, messages, _ = parse("patient_id,center\nP1,Zürich\n".encode("utf-8-sig"))
    assert messages == [] and list(table.columns) == ["patient_id", "center"] and table.loc[0, "center"] == "Zürich"


def test_semicolon_file_is_read_with_decimal_commas(tmp_path, patients_frame):
    frame = patients_frame.assign(age=patients_frame["age"] + ",5", patient_id=patients_frame["patient_id"] + ",1")
    path = tmp_path / "semi.csv"
    frame.to_csv(path, sep=";", index=False)
    data = load_trial(path, needs=Needs(response=True, covariates=("age",)))
    assert data.covariate_matrix()[0, 0] == float(patients_frame.loc[0, "age"]) + 0.5
    assert data.patient_ids[0] == patients_frame.loc[0, "patient_id"] + ",1"  # text is kept as written
    assert data.notes == (
        f"{path} was read as a semicolon-separated file with decimal commas (a European spreadsheet export)",
    )


def test_case_variants_of_contract_columns_suggest_the_name(patients_frame):
    frame = patients_frame.rename(columns={"center": "Center", "response": "Response", "died": " DIED"})
    text = "\n".join(problems(frame, None, Needs(response=True, died=True, followup=True)))
    assert (
        "'center': required column is missing" in text
        and "a column 'Center' is present" in text
        and "rename it to 'center'" in text
    )
    assert "a column 'Response' is present" in text and "rename it to 'response'" in text
    assert "a column 'DIED' is present" in text
    data = load_frames(patients_frame.rename(columns={"died": "Died"}), None, RESPONSE)
    assert data.notes == ("column 'Died' is not read as 'died' (names are matched exactly); rename it to use it",)


def test_ragged_row_is_reported_by_data_row():
    table, messages, _ = parse(b"patient_id,center\nP1,A\n\nP2,B,extra\nP3,C\n")
    assert table is None
    [message] = messages
    assert "more fields than the header's 2" in message and "(row 2)" in message


def test_notes_are_announced_on_stderr(tmp_path, patients_frame, capsys):
    path = tmp_path / "p.csv"
    patients_frame.assign(died="").to_csv(path, index=False)
    load_trial(path, needs=RESPONSE, announce=True)
    assert "marrow: note: column 'died' ignored: empty in every row" in capsys.readouterr().err


def test_bad_files_raise_no_warnings(tmp_path, patients_frame):
    mixed = pd.concat([patients_frame] * 100, ignore_index=True)  # large enough for pandas' chunked type guessing
    mixed["patient_id"] = [f"Q{i}" for i in range(len(mixed))]
    mixed.loc[::3, "age"] = "forty"
    path = tmp_path / "mixed.csv"
    mixed.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_trial(path, needs=SURVIVAL)
        with pytest.raises(DataError):
            load_trial(path, needs=Needs(covariates=("age",)))
    assert len(data.patients) == len(mixed)


def test_cli_data_error_exits_2_before_sampling(marrow_cli, tmp_path, patients_frame):
    path = tmp_path / "p.csv"
    patients_frame.assign(age=patients_frame["age"].where(patients_frame.index != 2, "1e308")).to_csv(path, index=False)
    code, _, err = marrow_cli("fit", "survival", "--data", path, "--covariates", "age", "--out", tmp_path / "o.nc")
    assert code == 2 and "'age': covariate values are implausibly large" in err and "(row 3)" in err
    assert not (tmp_path / "o.nc").exists()
