"""Read patients and recovery tables, validate them against the data contract, build `TrialData`.

Every problem is collected and raised at once as a `DataError` (see docs/data.md). Row numbers
in messages are 1-based data rows, the header not counted.

Columns that the requested model needs are checked strictly. A contract column that the model does
not need and that fails its checks is left out of `TrialData.patients` with a note in
`TrialData.notes`, so "column in data.patients.columns" always means "present and valid".
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from marrow.data.trial import SourceFile, TrialData
from marrow.errors import DataError, Problem, ProblemList
from marrow.spec import Needs  # defined with ModelSpec (core layer); re-exported here and in marrow.data

RESPONSE_CODES = ("NR", "PR", "CR")
RESERVED = {"patient_id", "center", "response", "responder", "followup_days", "died", "adverse_event"}
RECOVERY_COLUMNS = ("patient_id", "lineage", "day", "recovered")
INTERVAL_COLUMNS = ("day_lower", "day_upper")
CONTRACT_COLUMNS = tuple(sorted(RESERVED)) + RECOVERY_COLUMNS[1:] + INTERVAL_COLUMNS
# Text columns keep their cells as written when a semicolon file's decimal commas are converted.
TEXT_COLUMNS = {"patient_id", "center", "response", "lineage", "study"}
# Bounds beyond which later arithmetic (exp of a linear predictor, gamma functions of days) overflows;
# real trials are far inside them (1e6 days is 2,700 years). Rescale a covariate that exceeds its bound.
MAX_DAYS = 1e6
MAX_ABS_COVARIATE = 1e6
_TRUE = {"1", "1.0", "yes", "y", "true", "t"}
_FALSE = {"0", "0.0", "no", "n", "false", "f"}
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.ASCII | re.IGNORECASE)
_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d*,\d+(?:[eE][+-]?\d+)?\s*$")
# Who needs each optional patients column, for the note when it is left out.
_USED_BY = {
    "response": "only the response model needs it",
    "responder": "only the response model needs it",
    "followup_days": "only the survival model needs it; it also bounds recovery days",
    "died": "only the survival model needs it",
    "adverse_event": "only the safety model needs it",
}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# reading files
def read_table(path: Path, problems: ProblemList, notes: list[str] | None = None) -> pd.DataFrame | None:
    """Read a CSV or Parquet file as text cells (Parquet keeps its types); None after a problem.

    CSV must be UTF-8 (a byte-order mark is accepted). A file whose header is one field containing
    ';' is read as a European spreadsheet export: ';'-separated with decimal commas (a note says so).
    """
    name = str(path)
    if not path.exists():
        problems.add(name, "file not found", expected="an existing CSV or Parquet file")
        return None
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            table = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for unreadable files
            problems.add(name, f"cannot be read as Parquet ({type(exc).__name__}: {exc})", expected="a Parquet file")
            return None
        if table.empty:
            problems.add(name, "table is empty", expected="at least one data row")
            return None
        return table
    return parse_csv_bytes(path.read_bytes(), name, problems, notes)


def parse_csv_bytes(
    data: bytes, name: str, problems: ProblemList, notes: list[str] | None = None
) -> pd.DataFrame | None:
    """Parse a CSV file's bytes into a frame of text cells; record problems and return None on failure."""
    text = _decode_utf8(data, name, problems)
    if text is None:
        return None
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline=""), skipinitialspace=True) if r]
        sep, decimal_comma = ",", False
        if records and len(records[0]) == 1 and ";" in records[0][0]:
            sep, decimal_comma = ";", True
            records = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=";", skipinitialspace=True) if r]
    except csv.Error as exc:
        problems.add(name, f"cannot be read as CSV ({exc})", expected="CSV with a header row, or Parquet")
        return None
    if not records:
        problems.add(name, "table is empty", expected="a header row and at least one data row")
        return None
    header = [h.strip() for h in records[0]]
    ragged = tuple(i for i, r in enumerate(records[1:], start=1) if len(r) > len(header))
    if ragged:
        problems.add(
            name,
            f"rows have more fields than the header's {len(header)}",
            rows=ragged,
            expected="one field per header column (quote a value that contains the separator)",
        )
        return None
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=True, skipinitialspace=True)
    except Exception as exc:  # pandas raises many types for unreadable files
        problems.add(
            name, f"cannot be read ({type(exc).__name__}: {exc})", expected="CSV with a header row, or Parquet"
        )
        return None
    table.columns = [str(c).strip() for c in table.columns]
    if len(table.columns) == len(header):
        # pandas renames a repeated name ('center' -> 'center.1'); report it and keep the first copy.
        table = table.loc[:, _check_unique_names(header, name, problems)]
    if table.empty:
        problems.add(name, "table is empty", expected="at least one data row")
        return None
    if decimal_comma:
        for column in table.columns:
            if column not in TEXT_COLUMNS:
                cells = table[column]
                comma = cells.str.match(_DECIMAL_COMMA, na=False)
                table[column] = cells.where(~comma, cells.str.replace(",", ".", regex=False))
        if notes is not None:
            notes.append(
                f"{name} was read as a semicolon-separated file with decimal commas (a European spreadsheet export)"
            )
    return table


def _decode_utf8(data: bytes, name: str, problems: ProblemList) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        problems.add(
            name,
            "is UTF-16 text, not UTF-8",
            expected="UTF-8 text: re-save it as 'CSV UTF-8' (or convert it: iconv -f UTF-16 -t UTF-8 in.csv > out.csv)",
        )
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        where = "in the header" if line == 1 else f"on line {line} (data row {line - 1})"
        problems.add(
            name,
            f"is not UTF-8 text: byte 0x{data[exc.start]:02X} at offset {exc.start}, {where}, is not valid UTF-8",
            expected="UTF-8 text: re-save it as 'CSV UTF-8' from the spreadsheet, or convert it, e.g. "
            "iconv -f WINDOWS-1252 -t UTF-8 in.csv > out.csv (the usual encoding of Excel on Windows)",
        )
        return None


def _check_unique_names(names: Sequence[str], name: str, problems: ProblemList) -> list[bool]:
    """Record a problem per duplicated column name; return a mask of the first occurrences to keep."""
    keep: list[bool] = []
    positions: dict[str, list[int]] = {}
    for i, column in enumerate(names):
        positions.setdefault(column, []).append(i + 1)
        keep.append(len(positions[column]) == 1)
    for column, where in positions.items():
        if len(where) > 1:
            listed = ", ".join(str(w) for w in where[:-1]) + f" and {where[-1]}"
            problems.add(
                name,
                f"columns {listed} are all named '{column}'"
                if len(where) > 2
                else f"columns {listed} are both named '{column}'",
                column,
                expected="each column name once (rename or delete the copies)",
            )
    return keep


# ----------------------------------------------------------------------------------------------
# coercion: cells as plain Python text (one pass per column; pandas per-cell operations are slow
# on the small tables trials have)
def data_rows(mask: pd.Series | np.ndarray) -> tuple[int, ...]:
    """1-based data row numbers where mask is true."""
    return tuple(int(i) + 1 for i in np.flatnonzero(np.asarray(mask, dtype=bool)))


def _cells(values: pd.Series) -> np.ndarray:
    """Each cell as stripped text (object array); None where missing or blank."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values.tolist()):
        if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
            out[i] = None
        else:
            text = str(value).strip()
            out[i] = text if text else None
    return out


def _blank_cells(cells: np.ndarray) -> np.ndarray:
    return np.fromiter((c is None for c in cells), dtype=bool, count=len(cells))


def _blank(values: pd.Series) -> np.ndarray:
    """True where a cell is missing or only whitespace."""
    return _blank_cells(_cells(values))


def _binary_cells(cells: np.ndarray) -> np.ndarray:
    def one(cell: str | None) -> float:
        if cell is None:
            return np.nan
        lower = cell.lower()
        return 1.0 if lower in _TRUE else 0.0 if lower in _FALSE else np.nan

    return np.fromiter((one(c) for c in cells), dtype=np.float64, count=len(cells))


def _numeric_cells(cells: np.ndarray) -> np.ndarray:
    """Decimal numbers (ASCII digits, optional exponent, inf/nan words) as float64; the rest NaN."""

    def one(cell: str | None) -> float:
        if cell is None or not _NUMBER.fullmatch(cell):
            return np.nan
        return float(cell)

    return np.fromiter((one(c) for c in cells), dtype=np.float64, count=len(cells))


def coerce_binary(values: pd.Series) -> pd.Series:
    """Map 0/1, yes/no, true/false (any case) to 0.0/1.0; anything else becomes NaN."""
    return pd.Series(_binary_cells(_cells(values)), index=values.index)


def coerce_numeric(values: pd.Series) -> pd.Series:
    """Numbers as float64 (inf and -inf kept, to be rejected by the checks); the rest NaN."""
    return pd.Series(_numeric_cells(_cells(values)), index=values.index)


def coerce_covariate(values: pd.Series) -> pd.Series:
    """A covariate: binary words become 0/1, numbers stay numbers, the rest NaN."""
    return pd.Series(_covariate_cells(_cells(values)), index=values.index)


def _covariate_cells(cells: np.ndarray) -> np.ndarray:
    binary = _binary_cells(cells)
    return np.where(np.isnan(binary), _numeric_cells(cells), binary)


# ----------------------------------------------------------------------------------------------
# column checks: each records problems and returns the column with invalid cells as NaN
def _check_binary(table: pd.DataFrame, column: str, name: str, problems: ProblemList) -> pd.Series:
    cells = _cells(table[column])
    coerced = _binary_cells(cells)
    missing = _blank_cells(cells)
    if missing.any():
        problems.add(name, "missing values", column, data_rows(missing), "0 or 1 in every row")
    bad = np.isnan(coerced) & ~missing
    if bad.any():
        problems.add(name, "values are not 0/1", column, data_rows(bad), "0/1, yes/no or true/false")
    return pd.Series(coerced, index=table.index)


def _check_number(
    raw: pd.Series,
    column: str,
    name: str,
    problems: ProblemList,
    *,
    required: np.ndarray | None = None,
    zero_ok: bool = False,
    maximum: float = MAX_DAYS,
) -> pd.Series:
    """A day count: finite, > 0 (>= 0 with `zero_ok`) and <= `maximum`; blank cells are errors where `required`."""
    cells = _cells(raw)
    values = _numeric_cells(cells)
    blank = _blank_cells(cells)
    required = np.ones(len(raw), dtype=bool) if required is None else np.asarray(required, dtype=bool)
    sign = ">= 0" if zero_ok else "> 0"
    expected = f"a number {sign} and at most {maximum:,.0f}"
    if (blank & required).any():
        problems.add(name, "missing values", column, data_rows(blank & required), f"a number {sign} in every row")
    not_number = np.isnan(values) & ~blank
    if not_number.any():
        problems.add(name, "values are not numbers", column, data_rows(not_number), expected)
    infinite = np.isinf(values)
    if infinite.any():
        problems.add(name, "values are not finite", column, data_rows(infinite), expected)
    finite = np.isfinite(values)
    too_low = finite & ((values < 0) if zero_ok else (values <= 0))
    if too_low.any():
        problems.add(
            name, "values are negative" if zero_ok else "values are not positive", column, data_rows(too_low), expected
        )
    too_high = finite & (values > maximum)
    if too_high.any():
        problems.add(
            name, f"values are implausibly large (above {maximum:,.0f})", column, data_rows(too_high), expected
        )
    return pd.Series(np.where(finite & ~too_low & ~too_high, values, np.nan), index=raw.index)


def _check_positive(table: pd.DataFrame, column: str, name: str, problems: ProblemList) -> pd.Series:
    return _check_number(table[column], column, name, problems)


def _check_text(table: pd.DataFrame, column: str, name: str, problems: ProblemList) -> pd.Series:
    cells = _cells(table[column])
    empty = _blank_cells(cells)
    if empty.any():
        problems.add(name, "empty values", column, data_rows(empty), "non-empty text")
    return pd.Series(cells, index=table.index, dtype="string")


def _repeated(keys: list) -> np.ndarray:
    """True for every key (not None) that occurs more than once."""
    counts = Counter(k for k in keys if k is not None)
    return np.array([k is not None and counts[k] > 1 for k in keys], dtype=bool)


def _normal_name(column: str) -> str:
    return re.sub(r"[\s_\-.]+", "", column.lower())


def _variant(table: pd.DataFrame, column: str) -> str | None:
    """A column of `table` that differs from `column` only in case, spaces, '-', '.' or '_'."""
    for candidate in table.columns:
        if candidate != column and _normal_name(candidate) == _normal_name(column):
            return candidate
    return None


def _missing_column(table: pd.DataFrame, column: str, name: str, why: str, problems: ProblemList) -> None:
    variant = _variant(table, column)
    hint = f"; a column '{variant}' is present: names are matched exactly, rename it to '{column}'" if variant else ""
    problems.add(name, f"required column is missing ({why}){hint}", column, expected=f"a column named '{column}'")


def _require(table: pd.DataFrame, columns: list[str], name: str, why: str, problems: ProblemList) -> bool:
    absent = [c for c in columns if c not in table.columns]
    for column in absent:
        _missing_column(table, column, name, why, problems)
    return not absent


def _summary(problem: Problem) -> str:
    """A problem as a short clause without the file: 'values are not 0/1 in rows 2, 5'."""
    if not problem.rows:
        return problem.message
    shown = ", ".join(str(r) for r in problem.rows[:5])
    more = f" and {len(problem.rows) - 5} more" if len(problem.rows) > 5 else ""
    return f"{problem.message} in {'row' if len(problem.rows) == 1 else 'rows'} {shown}{more}"


def _optional(
    table: pd.DataFrame,
    column: str,
    needed: bool,
    check: Callable,
    name: str,
    problems: ProblemList,
    notes: list[str],
    why: str,
) -> pd.Series | None:
    """Check a column; a needed one reports its problems, an unneeded invalid one is left out with a note."""
    if column not in table.columns:
        if needed:
            _missing_column(table, column, name, why, problems)
        return None
    local = ProblemList()
    values = check(table, column, name, local)
    if needed:
        problems.problems.extend(local.problems)
        return values
    if local.problems:
        reason = "empty in every row" if _blank(table[column]).all() else "; ".join(_summary(p) for p in local.problems)
        notes.append(f"column '{column}' ignored: {reason} ({_USED_BY.get(column, 'not needed by this model')})")
        return None
    return values


def _check_response(table: pd.DataFrame, column: str, name: str, problems: ProblemList) -> pd.Series:
    cells = _cells(table[column])
    missing = _blank_cells(cells)
    if missing.any():
        problems.add(name, "missing response", column, data_rows(missing), "CR, PR or NR")
    codes = np.array(
        [c.upper() if c is not None and c.upper() in RESPONSE_CODES else None for c in cells], dtype=object
    )
    unknown = np.array([c is None for c in codes]) & ~missing
    if unknown.any():
        seen = sorted(set(cells[unknown]))  # as written, not upper-cased
        listed = ", ".join(seen[:5]) + (f" and {len(seen) - 5} more" if len(seen) > 5 else "")
        problems.add(name, f"unknown response codes ({listed})", column, data_rows(unknown), "CR, PR or NR (any case)")
    return pd.Series(codes, index=table.index, dtype="string")


# ----------------------------------------------------------------------------------------------
# tables
def _unique_columns(table: pd.DataFrame, name: str, problems: ProblemList) -> pd.DataFrame:
    """Column names as trimmed text; duplicated names are a problem (the first copy is validated)."""
    names = [str(c).strip() for c in table.columns]
    keep = _check_unique_names(names, name, problems)
    if names != list(table.columns) or not all(keep):
        table = table.set_axis(names, axis=1).loc[:, keep]
    if not table.index.equals(pd.RangeIndex(len(table))):
        table = table.reset_index(drop=True)
    return table


def validate_patients(
    table: pd.DataFrame, name: str, needs: Needs, problems: ProblemList, notes: list[str] | None = None
) -> pd.DataFrame:
    """Normalise and check the patients table; problems are recorded, not raised."""
    notes = notes if notes is not None else []
    out: dict[str, pd.Series] = {}
    if _require(table, ["patient_id", "center"], name, "identifies patients and centers", problems):
        ids = _check_text(table, "patient_id", name, problems)
        dup = _repeated(list(ids.to_numpy(dtype=object, na_value=None)))
        if dup.any():
            problems.add(name, "duplicated patient_id", "patient_id", data_rows(dup), "each patient_id once")
        out["patient_id"] = ids
        out["center"] = _check_text(table, "center", name, problems)

    _validate_outcome(table, name, needs, problems, notes, out)

    optional = {
        "followup_days": (needs.followup, _check_positive, "time-to-event models need follow-up"),
        "died": (needs.died, _check_binary, "the survival model needs deaths"),
        "adverse_event": (needs.adverse_event, _check_binary, "the safety model needs adverse events"),
    }
    for column, (needed, check, why) in optional.items():
        values = _optional(table, column, needed, check, name, problems, notes, why)
        if values is not None:
            out[column] = values
    # A needed column spelt differently is already a problem with a hint; the others get a note.
    needed_columns = {c for c, (n, _, _) in optional.items() if n} | (
        {"response", "responder"} if needs.response or needs.ordinal else set()
    )
    for column in sorted(RESERVED - set(table.columns) - needed_columns - {"patient_id", "center"}):
        variant = _variant(table, column)
        if variant is not None:
            notes.append(
                f"column '{variant}' is not read as '{column}' (names are matched exactly); rename it to use it"
            )

    for column in needs.covariates:
        if column in RESERVED:
            problems.add(name, "is a reserved column and cannot be a covariate", column, expected="a covariate column")
            continue
        if column not in table.columns:
            candidates = ", ".join(c for c in table.columns if c not in RESERVED) or "none"
            problems.add(name, "covariate asked for is absent", column, expected=f"one of the columns: {candidates}")
            continue
        out[column] = _check_covariate(table[column], column, name, problems)
    return pd.DataFrame(out, index=table.index)


def _validate_outcome(
    table: pd.DataFrame, name: str, needs: Needs, problems: ProblemList, notes: list[str], out: dict[str, pd.Series]
) -> None:
    """`response` (CR/PR/NR, with `responder` derived) or else `responder` (0/1), into `out` when valid."""
    needed = needs.response or needs.ordinal
    why = "the response model needs an outcome"
    if "response" in table.columns:
        codes = _optional(table, "response", needed, _check_response, name, problems, notes, why)
        if codes is not None:
            out["response"] = codes
            out["responder"] = pd.Series(np.where(codes.isna(), np.nan, codes.isin(("CR", "PR"))), index=codes.index)
            return
        if needed:
            return
    elif needs.ordinal:
        hint = (
            " (only 'responder' is present: it supports the binary model, not the ordinal one)"
            if "responder" in table.columns
            else ""
        )
        _missing_column(table, "response", name, "the ordinal model needs CR/PR/NR" + hint, problems)
    if "responder" in table.columns:
        values = _optional(table, "responder", needed, _check_binary, name, problems, notes, why)
        if values is not None:
            out["responder"] = values
    elif needed and not needs.ordinal:
        variant = _variant(table, "response") or _variant(table, "responder")
        hint = (
            f"; a column '{variant}' is present: names are matched exactly, rename it to '{_normal_name(variant)}'"
            if variant
            else ""
        )
        problems.add(
            name,
            "no outcome column" + hint,
            "response",
            expected="a 'response' column (CR/PR/NR) or a 0/1 'responder' column",
        )


def _check_covariate(raw: pd.Series, column: str, name: str, problems: ProblemList) -> pd.Series:
    cells = _cells(raw)
    values = _covariate_cells(cells)
    missing = _blank_cells(cells)
    if missing.any():
        problems.add(name, "missing covariate values", column, data_rows(missing), "a value in every row")
    bad = np.isnan(values) & ~missing
    if bad.any():
        problems.add(
            name,
            "covariate values cannot be read as numbers",
            column,
            data_rows(bad),
            "0/1, yes/no, true/false or a number",
        )
    infinite = np.isinf(values)
    if infinite.any():
        problems.add(
            name,
            "covariate values are not finite",
            column,
            data_rows(infinite),
            f"a finite number of at most {MAX_ABS_COVARIATE:,.0f} in size",
        )
    huge = np.isfinite(values) & (np.abs(values) > MAX_ABS_COVARIATE)
    if huge.any():
        problems.add(
            name,
            f"covariate values are implausibly large (beyond +-{MAX_ABS_COVARIATE:,.0f}; rescale them)",
            column,
            data_rows(huge),
            f"a number of at most {MAX_ABS_COVARIATE:,.0f} in size",
        )
    values = np.where(infinite | huge, np.nan, values)
    valid = values[~np.isnan(values)]
    if valid.size and np.unique(valid).size < 2:
        problems.add(
            name,
            "covariate is constant, so its effect cannot be estimated",
            column,
            expected="at least two distinct values",
        )
    return pd.Series(values, index=raw.index)


def validate_recovery(
    table: pd.DataFrame, name: str, patients: pd.DataFrame, patients_name: str, problems: ProblemList
) -> pd.DataFrame | None:
    """Check the long-format recovery table against the patients table.

    Returns `patient_id`, `lineage`, `day`, `recovered`, `day_lower`, `day_upper`: an interval row
    (recovered between `day_lower` and `day_upper`) has day = day_upper; every other row has
    day_lower = day_upper = day.
    """
    present = [c for c in INTERVAL_COLUMNS if c in table.columns]
    required = [c for c in RECOVERY_COLUMNS if not (c == "day" and len(present) == 2)]
    if not _require(table, required, name, "recovery table", problems):
        return None
    if len(present) == 1:
        other = next(c for c in INTERVAL_COLUMNS if c not in present)
        _missing_column(
            table,
            other,
            name,
            f"interval-censored rows need both day_lower and day_upper, '{present[0]}' is present",
            problems,
        )
        return None
    out: dict[str, pd.Series] = {}
    out["patient_id"] = _check_text(table, "patient_id", name, problems)
    out["lineage"] = _check_text(table, "lineage", name, problems)
    out["recovered"] = _check_binary(table, "recovered", name, problems)
    raw_day = table["day"] if "day" in table.columns else pd.Series(pd.NA, index=table.index, dtype="string")

    if not present:
        day = _check_number(raw_day, "day", name, problems)
        lower = upper = day
    else:
        day, lower, upper = _check_intervals(table, raw_day, out["recovered"], name, problems)
    out["day"] = day
    out["day_lower"] = lower.astype("float64")
    out["day_upper"] = upper.astype("float64")
    out = pd.DataFrame({c: out[c] for c in RECOVERY_COLUMNS + INTERVAL_COLUMNS}, index=table.index)

    if "patient_id" in patients.columns:
        known_ids = list(patients["patient_id"].to_numpy(dtype=object, na_value=None))
        ids = list(out["patient_id"].to_numpy(dtype=object, na_value=None))
        known = set(known_ids) - {None}
        unknown = np.array([i is not None and i not in known for i in ids], dtype=bool)
        if unknown.any():
            problems.add(
                name,
                f"patient_id not found in {patients_name}",
                "patient_id",
                data_rows(unknown),
                "a patient_id of the patients table",
            )
        lineages = list(out["lineage"].to_numpy(dtype=object, na_value=None))
        dup = _repeated([(i, g) if i is not None else None for i, g in zip(ids, lineages, strict=True)])
        if dup.any():
            problems.add(
                name,
                "duplicated (patient_id, lineage) pair",
                "lineage",
                data_rows(dup),
                "one row per patient and lineage",
            )
        if "followup_days" in patients.columns and not _repeated(known_ids).any():
            # Invalid follow-up values are NaN here: they are reported once, in the patients table.
            by_id = dict(zip(known_ids, patients["followup_days"].to_numpy(dtype=np.float64), strict=True))
            follow = np.array([by_id.get(i, np.nan) for i in ids], dtype=np.float64)
            upper = out["day_upper"].to_numpy(dtype=np.float64)
            late = ~np.isnan(upper) & ~np.isnan(follow) & (upper > follow)
            if late.any():
                column = "day_upper" if present else "day"
                problems.add(
                    name,
                    f"recovery day is after the patient's followup_days in {patients_name}",
                    column,
                    data_rows(late),
                    f"{column} <= followup_days",
                )
    return out


def _check_intervals(
    table: pd.DataFrame, raw_day: pd.Series, recovered: pd.Series, name: str, problems: ProblemList
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(day, day_lower, day_upper) of a table with interval columns; see `validate_recovery`."""
    given_lower, given_upper = ~_blank(table["day_lower"]), ~_blank(table["day_upper"])
    interval = given_lower & given_upper
    for column, given, other in (("day_lower", given_lower, given_upper), ("day_upper", given_upper, given_lower)):
        alone = ~given & other
        if alone.any():
            problems.add(
                name,
                f"{column} is blank where {'day_upper' if column == 'day_lower' else 'day_lower'} is given",
                column,
                data_rows(alone),
                "both day_lower and day_upper on an interval row, or neither",
            )
    lower = _check_number(
        table["day_lower"], "day_lower", name, problems, required=pd.Series(False, index=table.index), zero_ok=True
    )
    upper = _check_number(table["day_upper"], "day_upper", name, problems, required=pd.Series(False, index=table.index))
    day = _check_number(raw_day, "day", name, problems, required=~(given_lower | given_upper))
    order = interval & lower.notna() & upper.notna() & (lower >= upper)
    if order.any():
        problems.add(
            name, "day_lower is not below day_upper", "day_lower", data_rows(order), "0 <= day_lower < day_upper"
        )
    censored = interval & (recovered == 0)
    if censored.any():
        problems.add(
            name,
            "an interval is given on a censored row (recovered = 0)",
            "day_lower",
            data_rows(censored),
            "day_lower/day_upper only where recovered = 1; "
            "a censored row gives its last day known not recovered in 'day'",
        )
    disagree = interval & (recovered == 1) & day.notna() & upper.notna() & (day != upper)
    if disagree.any():
        problems.add(
            name,
            "day disagrees with day_upper on an interval row",
            "day",
            data_rows(disagree),
            "day blank, or equal to day_upper, where day_lower and day_upper are given",
        )
    day = day.where(~interval, upper)
    return day, lower.where(interval, day), upper.where(interval, day)


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
    bundled synthetic trial is used, and prints the data's notes (columns left out, how a file was read).
    """
    from marrow import datasets

    synthetic = patients_path is None
    if patients_path is None:
        patients_path = datasets.PATIENTS_CSV
        if recovery_path is None:
            recovery_path = datasets.RECOVERY_CSV
        if announce:
            print(
                "marrow: no --data given; "
                "using the bundled SYNTHETIC trial (74 patients, 7 centers; not patient records)",
                file=sys.stderr,
            )
    patients_path = Path(patients_path)
    problems = ProblemList()
    notes: list[str] = []
    raw_patients = read_table(patients_path, problems, notes)
    raw_recovery = None
    if needs.recovery:
        if recovery_path is None:
            problems.add(
                str(patients_path),
                "the recovery model needs a recovery table",
                expected="--recovery FILE (columns patient_id, lineage, day, recovered)",
            )
        else:
            raw_recovery = read_table(Path(recovery_path), problems, notes)
    if raw_patients is None:
        problems.raise_if_any()
    sources = [_source("patients", patients_path, raw_patients)]
    if raw_recovery is not None:
        assert recovery_path is not None  # read above
        sources.append(_source("recovery", Path(recovery_path), raw_recovery))
    data = load_frames(
        raw_patients,
        raw_recovery,
        needs,
        sources=sources,
        patients_name=str(patients_path),
        recovery_name=str(recovery_path),
        synthetic=synthetic,
        problems=problems,
        notes=notes,
    )
    if announce:
        for note in data.notes:
            print(f"marrow: note: {note}", file=sys.stderr)
    return data


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
    notes: Sequence[str] = (),
) -> TrialData:
    """Validate and normalise tables already in memory (as `read_table` returns them: text cells).

    The one validation path behind `load_trial` and every other input route (ADaM datasets, data
    frames from Python). `patients_name`/`recovery_name` name the tables in problems; `sources`
    are the files' identities for provenance; `notes` (e.g. how a file was read) are kept in front
    of the loader's own. Raises `DataError` listing every problem found.
    """
    problems = problems if problems is not None else ProblemList()
    notes = list(notes)
    if needs.recovery and recovery is None and not problems.problems:
        problems.add(
            patients_name,
            "the recovery model needs a recovery table",
            expected="a recovery table (columns patient_id, lineage, day, recovered)",
        )
    if len(patients) == 0:
        problems.add(patients_name, "table is empty", expected="at least one data row")
        problems.raise_if_any()
    patients = _unique_columns(patients, patients_name, problems)
    validated = validate_patients(patients, patients_name, needs, problems, notes)
    checked_recovery = None
    if recovery is not None:
        if len(recovery) == 0:
            problems.add(recovery_name, "table is empty", expected="at least one data row")
        else:
            recovery = _unique_columns(recovery, recovery_name, problems)
            checked_recovery = validate_recovery(recovery, recovery_name, validated, patients_name, problems)
    problems.raise_if_any()

    validated = validated.astype({c: "int64" for c in ("responder", "died", "adverse_event") if c in validated.columns})
    if checked_recovery is not None:
        checked_recovery = checked_recovery.astype({"recovered": "int64"})
    return TrialData(
        patients=validated,
        recovery=checked_recovery,
        covariates=tuple(needs.covariates),
        sources=tuple(sources),
        synthetic=synthetic,
        notes=tuple(notes),
    )


def candidate_covariates(patients_path: Path | str) -> list[str]:
    """Columns of a patients file that could serve as covariates (not reserved)."""
    problems = ProblemList()
    table = read_table(Path(patients_path), problems)
    if table is None:
        raise DataError(problems.problems)
    return [c for c in table.columns if c not in RESERVED]


__all__ = [
    "MAX_ABS_COVARIATE",
    "MAX_DAYS",
    "Needs",
    "Problem",
    "candidate_covariates",
    "load_frames",
    "load_trial",
    "coerce_covariate",
    "parse_csv_bytes",
    "read_table",
]
