"""Read patients and recovery tables, validate them against the data contract, build `TrialData`.

Every problem is collected and raised at once as a `DataError` (see docs/data.md). Row numbers
in messages are 1-based data rows, the header not counted.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from marrow.data.trial import SourceFile, TrialData
from marrow.errors import DataError, Problem, ProblemList

RESPONSE_CODES = ("NR", "PR", "CR")
RESERVED = {"patient_id", "center", "response", "responder", "followup_days", "died", "adverse_event"}
RECOVERY_COLUMNS = ("patient_id", "lineage", "day", "recovered")
_TRUE = {"1", "1.0", "yes", "y", "true", "t"}
_FALSE = {"0", "0.0", "no", "n", "false", "f"}


@dataclass(frozen=True)
class Needs:
    """What the requested model needs from the data; anything else is optional."""

    ordinal: bool = False
    followup: bool = False
    died: bool = False
    adverse_event: bool = False
    recovery: bool = False
    covariates: tuple[str, ...] = field(default_factory=tuple)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_table(path: Path, problems: ProblemList) -> pd.DataFrame | None:
    """Read a CSV or Parquet file as strings-or-numbers; record a problem and return None on failure."""
    name = str(path)
    if not path.exists():
        problems.add(name, "file not found", expected="an existing CSV or Parquet file")
        return None
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=True, skipinitialspace=True)
    except Exception as exc:  # pandas raises many types for unreadable files
        problems.add(name, f"cannot be read ({type(exc).__name__}: {exc})", expected="CSV with a header row, or Parquet")
        return None
    table.columns = [str(c).strip() for c in table.columns]
    if table.empty:
        problems.add(name, "table is empty", expected="at least one data row")
        return None
    return table


def _rows(mask: pd.Series | np.ndarray) -> tuple[int, ...]:
    """1-based data row numbers where mask is true."""
    return tuple(int(i) + 1 for i in np.flatnonzero(np.asarray(mask)))


def _text(values: pd.Series) -> pd.Series:
    return values.astype("string").str.strip()


def coerce_binary(values: pd.Series) -> pd.Series:
    """Map 0/1, yes/no, true/false (any case) to 0.0/1.0; anything else becomes NaN."""
    text = _text(values).str.lower()
    out = pd.Series(np.nan, index=values.index, dtype="float64")
    out[text.isin(_TRUE)] = 1.0
    out[text.isin(_FALSE)] = 0.0
    return out


def coerce_numeric(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype("float64")


def coerce_covariate(values: pd.Series) -> pd.Series:
    """A covariate: binary words become 0/1, numbers stay numbers, the rest NaN."""
    binary = coerce_binary(values)
    numeric = coerce_numeric(values)
    return binary.where(binary.notna(), numeric)


def _check_binary(table: pd.DataFrame, column: str, name: str, problems: ProblemList) -> pd.Series:
    raw = table[column]
    coerced = coerce_binary(raw)
    missing = raw.isna()
    if missing.any():
        problems.add(name, "missing values", column, _rows(missing), "0 or 1 in every row")
    bad = coerced.isna() & ~missing
    if bad.any():
        problems.add(name, "values are not 0/1", column, _rows(bad), "0/1, yes/no or true/false")
    return coerced


def _check_positive(table: pd.DataFrame, column: str, name: str, problems: ProblemList) -> pd.Series:
    raw = table[column]
    values = coerce_numeric(raw)
    missing = raw.isna()
    if missing.any():
        problems.add(name, "missing values", column, _rows(missing), "a number > 0 in every row")
    not_number = values.isna() & ~missing
    if not_number.any():
        problems.add(name, "values are not numbers", column, _rows(not_number), "a number > 0")
    non_positive = values.notna() & (values <= 0)
    if non_positive.any():
        problems.add(name, "values are not positive", column, _rows(non_positive), "a number > 0")
    return values


def _check_text(table: pd.DataFrame, column: str, name: str, problems: ProblemList) -> pd.Series:
    values = _text(table[column])
    empty = values.isna() | (values == "")
    if empty.any():
        problems.add(name, "empty values", column, _rows(empty), "non-empty text")
    return values


def _require(table: pd.DataFrame, columns: list[str], name: str, why: str, problems: ProblemList) -> bool:
    absent = [c for c in columns if c not in table.columns]
    for column in absent:
        problems.add(name, f"required column is missing ({why})", column, expected=f"a column named '{column}'")
    return not absent


def validate_patients(table: pd.DataFrame, name: str, needs: Needs, problems: ProblemList) -> pd.DataFrame:
    """Normalise and check the patients table; problems are recorded, not raised."""
    out = pd.DataFrame(index=table.index)
    if _require(table, ["patient_id", "center"], name, "identifies patients and centers", problems):
        ids = _check_text(table, "patient_id", name, problems)
        dup = ids.duplicated(keep=False) & ids.notna() & (ids != "")
        if dup.any():
            problems.add(name, "duplicated patient_id", "patient_id", _rows(dup), "each patient_id once")
        out["patient_id"] = ids
        out["center"] = _check_text(table, "center", name, problems)

    if needs.ordinal:
        if "response" not in table.columns:
            hint = " (only 'responder' is present: it supports the binary model, not the ordinal one)" if "responder" in table.columns else ""
            problems.add(name, "required column is missing for the ordinal model" + hint, "response", expected="CR, PR or NR")
    if "response" in table.columns:
        codes = _text(table["response"]).str.upper()
        missing = codes.isna() | (codes == "")
        if missing.any():
            problems.add(name, "missing response", "response", _rows(missing), "CR, PR or NR")
        unknown = ~codes.isin(RESPONSE_CODES) & ~missing
        if unknown.any():
            seen = ", ".join(sorted(set(codes[unknown].astype(str)))[:5])
            problems.add(name, f"unknown response codes ({seen})", "response", _rows(unknown), "CR, PR or NR (any case)")
        out["response"] = codes.where(codes.isin(RESPONSE_CODES))
        out["responder"] = codes.isin(("CR", "PR")).astype("float64").where(codes.isin(RESPONSE_CODES))
    elif "responder" in table.columns:
        out["response"] = pd.Series(pd.NA, index=table.index, dtype="string")
        out["responder"] = _check_binary(table, "responder", name, problems)
    else:
        problems.add(name, "no outcome column", "response", expected="a 'response' column (CR/PR/NR) or a 0/1 'responder' column")

    optional = {
        "followup_days": (needs.followup, _check_positive, "time-to-event models need follow-up"),
        "died": (needs.died, _check_binary, "the survival model needs deaths"),
        "adverse_event": (needs.adverse_event, _check_binary, "the safety model needs adverse events"),
    }
    for column, (needed, check, why) in optional.items():
        if column in table.columns:
            # A column only another model needs is carried along but not held against this fit.
            out[column] = check(table, column, name, problems if needed else ProblemList())
        elif needed:
            problems.add(name, f"required column is missing ({why})", column, expected=f"a column named '{column}'")

    for column in needs.covariates:
        if column in RESERVED:
            problems.add(name, "is a reserved column and cannot be a covariate", column, expected="a covariate column")
            continue
        if column not in table.columns:
            candidates = ", ".join(c for c in table.columns if c not in RESERVED) or "none"
            problems.add(name, "covariate asked for is absent", column, expected=f"one of the columns: {candidates}")
            continue
        raw = table[column]
        values = coerce_covariate(raw)
        missing = raw.isna()
        if missing.any():
            problems.add(name, "missing covariate values", column, _rows(missing), "a value in every row")
        bad = values.isna() & ~missing
        if bad.any():
            problems.add(name, "covariate values cannot be read as numbers", column, _rows(bad), "0/1, yes/no, true/false or a number")
        if values.notna().any() and values.nunique(dropna=True) < 2:
            problems.add(name, "covariate is constant, so its effect cannot be estimated", column, expected="at least two distinct values")
        out[column] = values
    return out


def validate_recovery(
    table: pd.DataFrame, name: str, patients: pd.DataFrame, patients_name: str, problems: ProblemList
) -> pd.DataFrame | None:
    """Check the long-format recovery table against the patients table."""
    if not _require(table, list(RECOVERY_COLUMNS), name, "recovery table", problems):
        return None
    out = pd.DataFrame(index=table.index)
    out["patient_id"] = _check_text(table, "patient_id", name, problems)
    out["lineage"] = _check_text(table, "lineage", name, problems)
    out["day"] = _check_positive(table, "day", name, problems)
    out["recovered"] = _check_binary(table, "recovered", name, problems)

    if "patient_id" in patients.columns:
        known = set(patients["patient_id"].dropna())
        unknown = out["patient_id"].notna() & ~out["patient_id"].isin(known)
        if unknown.any():
            problems.add(name, f"patient_id not found in {patients_name}", "patient_id", _rows(unknown), "a patient_id of the patients table")
        dup = out.duplicated(["patient_id", "lineage"], keep=False) & out["patient_id"].notna()
        if dup.any():
            problems.add(name, "duplicated (patient_id, lineage) pair", "lineage", _rows(dup), "one row per patient and lineage")
        if "followup_days" in patients.columns:
            follow = out["patient_id"].map(patients.set_index("patient_id")["followup_days"].to_dict() if patients["patient_id"].is_unique else {})
            late = out["day"].notna() & follow.notna() & (out["day"] > follow)
            if late.any():
                problems.add(name, f"recovery day is after the patient's followup_days in {patients_name}", "day", _rows(late), "day <= followup_days")
    return out


def _source(role: str, path: Path, table: pd.DataFrame) -> SourceFile:
    return SourceFile(role=role, path=str(path), sha256=file_sha256(path), rows=len(table))


def load_trial(
    patients_path: Path | str | None = None,
    recovery_path: Path | str | None = None,
    needs: Needs = Needs(),
    announce: bool = False,
) -> TrialData:
    """Load, validate and normalise the trial; the bundled synthetic trial when no path is given.

    Raises `DataError` listing every problem found. With `announce`, says on stderr when the
    bundled synthetic trial is used.
    """
    from marrow import datasets

    synthetic = patients_path is None
    if synthetic:
        patients_path = datasets.PATIENTS_CSV
        if recovery_path is None:
            recovery_path = datasets.RECOVERY_CSV
        if announce:
            print("marrow: no --data given; using the bundled SYNTHETIC trial (74 patients, 7 centers; not patient records)", file=sys.stderr)
    patients_path = Path(patients_path)
    problems = ProblemList()
    raw_patients = read_table(patients_path, problems)
    raw_recovery = None
    if needs.recovery:
        if recovery_path is None:
            problems.add(str(patients_path), "the recovery model needs a recovery table", expected="--recovery FILE (columns patient_id, lineage, day, recovered)")
        else:
            raw_recovery = read_table(Path(recovery_path), problems)
    if raw_patients is None:
        problems.raise_if_any()
    sources = [_source("patients", patients_path, raw_patients)]
    if raw_recovery is not None:
        sources.append(_source("recovery", Path(recovery_path), raw_recovery))
    return load_frames(raw_patients, raw_recovery, needs, sources=sources, patients_name=str(patients_path),
                       recovery_name=str(recovery_path), synthetic=synthetic, problems=problems)


def load_frames(
    patients: pd.DataFrame,
    recovery: pd.DataFrame | None,
    needs: Needs = Needs(),
    *,
    sources: Sequence[SourceFile] = (),
    patients_name: str = "patients",
    recovery_name: str = "recovery",
    synthetic: bool = False,
    problems: ProblemList | None = None,
) -> TrialData:
    """Validate and normalise tables already in memory (as `read_table` returns them: text cells).

    The one validation path behind `load_trial` and every other input route (ADaM datasets, data
    frames from Python). `patients_name`/`recovery_name` name the tables in problems; `sources`
    are the files' identities for provenance. Raises `DataError` listing every problem found.
    """
    problems = problems if problems is not None else ProblemList()
    if needs.recovery and recovery is None and not problems.problems:
        problems.add(patients_name, "the recovery model needs a recovery table", expected="a recovery table (columns patient_id, lineage, day, recovered)")
    validated = validate_patients(patients, patients_name, needs, problems)
    checked_recovery = None
    if recovery is not None:
        checked_recovery = validate_recovery(recovery, recovery_name, validated, patients_name, problems)
    problems.raise_if_any()

    validated = validated.reset_index(drop=True)
    for column in ("responder", "died", "adverse_event"):
        # A column no model asked for may hold gaps (not held against this fit); it stays float then.
        if column in validated.columns and validated[column].notna().all():
            validated[column] = validated[column].astype("int64")
    if checked_recovery is not None:
        checked_recovery = checked_recovery.reset_index(drop=True)
        checked_recovery["recovered"] = checked_recovery["recovered"].astype("int64")
    return TrialData(
        patients=validated,
        recovery=checked_recovery,
        covariates=tuple(needs.covariates),
        sources=tuple(sources),
        synthetic=synthetic,
    )


def candidate_covariates(patients_path: Path | str) -> list[str]:
    """Columns of a patients file that could serve as covariates (not reserved)."""
    problems = ProblemList()
    table = read_table(Path(patients_path), problems)
    if table is None:
        raise DataError(problems.problems)
    return [c for c in table.columns if c not in RESERVED]


__all__ = ["Needs", "Problem", "candidate_covariates", "load_frames", "load_trial", "coerce_covariate"]
