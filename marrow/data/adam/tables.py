"""ADSL, ADRS and ADTTE mapped onto marrow's patients and recovery tables (text cells, as
`load_frames` takes them), with each column's origin so that problems can name dataset, variable,
records and USUBJIDs. Problems found here are recorded, not raised."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from marrow.data.adam.files import Dataset
from marrow.data.adam.mapping import DAYS_PER_UNIT, UNITS_TEXT, AdamMapping
from marrow.data.load import RESERVED, Needs
from marrow.errors import ProblemList

_MAX_IDS = 10


@dataclass(frozen=True)
class Origin:
    """Where a mapped column came from: dataset, variable and the source record of each mapped row."""

    where: str
    variable: str
    records: np.ndarray  # 1-based record number in the dataset per mapped row; 0 = no record
    missing_record: str = ""  # what a 0 means, e.g. "no ADTTE record with PARAMCD = 'OS'"


@dataclass
class Mapped:
    """The two tables for `load_frames`, with each column's origin for reporting problems."""

    patients: pd.DataFrame
    recovery: pd.DataFrame | None
    patient_origins: dict[str, Origin]
    recovery_origins: dict[str, Origin]
    recovery_ids: list[str]
    reported: set[tuple[str, str | None]] = field(default_factory=set)  # (where, variable) already reported
    flagged: dict[str, set[int]] = field(default_factory=dict)  # where -> records already reported
    notes: list[str] = field(default_factory=list)


def ids_text(ids: Sequence[str]) -> str:
    ids = list(dict.fromkeys(str(i) for i in ids))
    shown = ", ".join(ids[:_MAX_IDS])
    return f"USUBJID {shown}" + (f" and {len(ids) - _MAX_IDS} more" if len(ids) > _MAX_IDS else "")


class _Report:
    """Adds problems against a dataset and remembers what was reported (to drop echoes later)."""

    def __init__(self, problems: ProblemList, mapped: Mapped):
        self.problems, self.mapped = problems, mapped

    def add(self, where: str, message: str, variable: str | None, records=(), ids=(), expected: str | None = None):
        records = tuple(sorted(int(r) for r in records))
        text = message + (f" ({ids_text(ids)})" if len(ids) else "")
        self.problems.add(where, text, variable, records, expected)
        self.mapped.reported.add((where, variable))
        self.mapped.flagged.setdefault(where, set()).update(records)


def _require(ds: Dataset, variables: Sequence[str], why: str, report: _Report) -> bool:
    absent = [v for v in variables if v not in ds.table.columns]
    for variable in absent:
        report.add(
            ds.where,
            f"required variable is missing ({why})",
            variable,
            expected=f"a variable {variable} in {ds.name} (or name another in the ADaM mapping)",
        )
    return not absent


def _flag_filter(ds: Dataset, flag: str, report: _Report) -> np.ndarray:
    """Records with flag 'Y' when the flag variable exists (blank or 'N' excluded), else every record."""
    if not flag or flag not in ds.table.columns:
        return np.ones(len(ds.table), dtype=bool)
    values = ds.text(flag).str.upper()
    bad = values.notna() & ~values.isin(["Y", "N"])
    if bad.any():
        report.add(
            ds.where,
            f"flag values other than Y/N ({', '.join(sorted(set(values[bad])))[:60]})",
            flag,
            np.flatnonzero(bad) + 1,
            expected="Y, N or blank",
        )
    return (values == "Y").to_numpy()


def _unknown_subjects(ds: Dataset, id_var: str, known: set[str], adsl_where: str, report: _Report) -> None:
    ids = ds.text(id_var)
    missing = ids.isna()
    if missing.any():
        report.add(
            ds.where, "missing USUBJID", id_var, np.flatnonzero(missing) + 1, expected="a USUBJID in every record"
        )
    unknown = ids.notna() & ~ids.isin(known)
    if unknown.any():
        report.add(
            ds.where,
            f"USUBJID not found in {adsl_where}",
            id_var,
            np.flatnonzero(unknown) + 1,
            ids[unknown].tolist(),
            expected="a USUBJID of ADSL",
        )


def _one_per_subject(
    ds: Dataset, id_var: str, selected: np.ndarray, what: str, report: _Report | None, paramcd_var: str
) -> dict[str, int]:
    """USUBJID -> 0-based record among `selected`; subjects with several selected records reported
    (unless `report` is None: a parameter no model asked for)."""
    ids = ds.text(id_var)
    rows = np.flatnonzero(selected & ids.notna().to_numpy())
    chosen = ids.iloc[rows]
    twice = chosen.duplicated(keep=False).to_numpy()
    if twice.any() and report is not None:
        report.add(
            ds.where,
            f"several records of {what} for one subject",
            paramcd_var,
            rows[twice] + 1,
            chosen[twice].tolist(),
            expected="one record per subject (flag one with ANL01FL = 'Y')",
        )
    out: dict[str, int] = {}
    for row, subject in zip(rows, chosen, strict=True):
        out.setdefault(subject, int(row))
    return out


def _paramcd_selection(ds: Dataset, paramcd: str, flag: str, report: _Report) -> tuple[np.ndarray, str]:
    selected = (ds.text("PARAMCD").str.upper() == paramcd).to_numpy() & _flag_filter(ds, flag, report)
    which = f"PARAMCD = '{paramcd}'" + (f" and {flag} = 'Y'" if flag and flag in ds.table.columns else "")
    return selected, which


def map_tables(
    adsl: Dataset,
    adrs: Dataset | None,
    adtte: Dataset | None,
    mapping: AdamMapping,
    needs: Needs,
    problems: ProblemList,
) -> Mapped | None:
    """ADSL/ADRS/ADTTE -> marrow's patients and recovery tables; problems recorded, not raised.

    None when ADSL lacks the subject identifier (nothing can be mapped)."""
    mapped = Mapped(pd.DataFrame(), None, {}, {}, [])
    report = _Report(problems, mapped)
    id_var = mapping.patient
    if not _require(adsl, [id_var], "identifies subjects", report):
        return None

    # ADSL: subjects, the analysis population, center, adverse events, covariates.
    all_ids = adsl.text(id_var)
    missing = all_ids.isna()
    if missing.any():
        report.add(
            adsl.where, "missing USUBJID", id_var, np.flatnonzero(missing) + 1, expected="a USUBJID in every record"
        )
    twice = all_ids.duplicated(keep=False) & all_ids.notna()
    if twice.any():
        report.add(
            adsl.where,
            "duplicated USUBJID",
            id_var,
            np.flatnonzero(twice) + 1,
            all_ids[twice].tolist(),
            expected="one ADSL record per subject",
        )
    flag = mapping.population_flag(needs)
    if flag and flag not in adsl.table.columns:
        mapped.notes.append(f"{adsl.where} has no population flag {flag}: every subject is analysed")
    in_population = _flag_filter(adsl, flag, report) & all_ids.notna().to_numpy()
    if not in_population.any():
        report.add(
            adsl.where,
            f"no subject in the analysis population ({flag} = 'Y')",
            flag,
            expected="at least one subject with the flag 'Y'",
        )
        return None
    records = np.flatnonzero(in_population)  # 0-based ADSL records of the analysed subjects
    subjects = all_ids.iloc[records].tolist()
    known = set(all_ids.dropna())
    n = len(records)

    def adsl_origin(variable: str) -> Origin:
        return Origin(adsl.where, variable, records + 1)

    patients: dict[str, Any] = {"patient_id": subjects}
    origins = {"patient_id": adsl_origin(id_var), "center": adsl_origin(mapping.center)}
    if mapping.center in adsl.table.columns:
        patients["center"] = adsl.text(mapping.center).iloc[records].tolist()
    origins["adverse_event"] = adsl_origin(mapping.adverse_event or "adverse_event")
    if mapping.adverse_event and mapping.adverse_event in adsl.table.columns:
        patients["adverse_event"] = adsl.text(mapping.adverse_event).iloc[records].tolist()
    for name, variable in mapping.covariates:
        origins[name] = adsl_origin(variable)
        if variable in adsl.table.columns:
            patients[name] = adsl.table[variable].iloc[records].tolist()
        elif name in needs.covariates:
            report.add(
                adsl.where,
                f"variable mapped to covariate '{name}' is not in ADSL",
                variable,
                expected=f"one of the ADSL variables: {', '.join(adsl.table.columns)}",
            )
    # Any other ADSL variable is a covariate under its own name (e.g. --covariates AGE).
    for variable in adsl.table.columns:
        if variable not in patients and variable not in RESERVED:
            patients[variable] = adsl.table[variable].iloc[records].tolist()
            origins[variable] = adsl_origin(variable)

    # ADRS: the best overall response.
    resp_value = mapping.response_value
    origins["response"] = Origin(
        adrs.where if adrs else "ADRS (not given)",
        resp_value,
        np.zeros(n, dtype=np.int64),
        "no ADRS given (--adrs FILE, or adrs.* in the --adam folder)",
    )
    if adrs is not None and _require(adrs, [id_var, "PARAMCD", resp_value], "best overall response", report):
        _unknown_subjects(adrs, id_var, known, adsl.where, report)
        selected, which = _paramcd_selection(adrs, mapping.response_paramcd, mapping.response_flag, report)
        if not selected.any():
            present = ", ".join(sorted(set(adrs.text("PARAMCD").dropna())))[:200] or "none"
            report.add(
                adrs.where,
                f"no record with {which}",
                "PARAMCD",
                expected=f"the PARAMCD of the best overall response ([response] paramcd of the mapping); "
                f"PARAMCDs in {adrs.name}: {present}",
            )
            mapped.reported.add((adrs.where, resp_value))
        chosen = _one_per_subject(adrs, id_var, selected, f"{which}", report, "PARAMCD")
        codes = adrs.text(resp_value).str.upper()
        rows = np.array([chosen.get(s, -1) for s in subjects])
        patients["response"] = [_response(codes.iloc[r], mapping) if r >= 0 else None for r in rows]
        origins["response"] = Origin(adrs.where, resp_value, rows + 1, f"no ADRS record with {which}")

    # ADTTE: overall survival and the lineages' times to recovery.
    value, censor = mapping.tte_value, mapping.censor
    none = np.zeros(n, dtype=np.int64)
    no_adtte = "no ADTTE given (--adtte FILE, or adtte.* in the --adam folder)"
    adtte_where = adtte.where if adtte else "ADTTE (not given)"
    origins["followup_days"] = Origin(adtte_where, value, none, no_adtte)
    origins["died"] = Origin(adtte_where, censor, none, no_adtte)
    recovery = None
    if adtte is None and needs.recovery:
        report.add(
            "ADTTE (not given)",
            "the recovery model needs ADTTE (times to recovery by lineage)",
            None,
            expected="--adtte FILE, or adtte.xpt (.sas7bdat, .csv, .parquet) in the --adam folder",
        )
    wanted = ([mapping.survival_paramcd] if needs.followup or needs.died else []) + (
        [paramcd for _, paramcd in mapping.lineages] if needs.recovery else []
    )
    if adtte is not None and _require(adtte, [id_var, "PARAMCD", value, censor], "times to event", report):
        paramcds = adtte.text("PARAMCD").str.upper()
        flag_ok = _flag_filter(adtte, mapping.tte_flag, report)
        in_population = adtte.text(id_var).isin(set(subjects)).to_numpy()
        if wanted:  # like a recovery table, ADTTE is checked when a model needs it
            _unknown_subjects(adtte, id_var, known, adsl.where, report)
        checked = paramcds.isin(wanted).to_numpy() & flag_ok & in_population
        days, events = _times(adtte, mapping, checked, report)
        flag_text = (
            f" and {mapping.tte_flag} = 'Y'" if mapping.tte_flag and mapping.tte_flag in adtte.table.columns else ""
        )

        def pick(paramcd: str) -> tuple[np.ndarray, str]:
            which = f"PARAMCD = '{paramcd}'{flag_text}"
            selected = (paramcds == paramcd).to_numpy() & flag_ok
            chosen = _one_per_subject(adtte, id_var, selected, which, report if paramcd in wanted else None, "PARAMCD")
            return np.array([chosen.get(s, -1) for s in subjects]), which

        rows, which = pick(mapping.survival_paramcd)
        patients["followup_days"] = [days[r] if r >= 0 else None for r in rows]
        patients["died"] = [events[r] if r >= 0 else None for r in rows]
        origins["followup_days"] = Origin(adtte.where, value, rows + 1, f"no ADTTE record with {which}")
        origins["died"] = Origin(adtte.where, censor, rows + 1, f"no ADTTE record with {which}")

        per_lineage = {}
        for lineage, paramcd in mapping.lineages if needs.recovery else ():
            rows, which = pick(paramcd)
            if (rows >= 0).any():
                per_lineage[lineage] = rows
            else:
                present = ", ".join(sorted(set(paramcds.dropna())))[:200]
                report.add(
                    adtte.where,
                    f"no record with {which} (lineage {lineage})",
                    "PARAMCD",
                    expected=f"the PARAMCD of each lineage in the mapping's [recovery]; PARAMCDs in ADTTE: {present}",
                )
        recovery = _recovery_rows(subjects, per_lineage, days, events, adtte, mapping, mapped)
    mapped.patients = pd.DataFrame(patients)
    mapped.recovery = recovery
    mapped.patient_origins = origins
    return mapped


def _response(code: str | None, mapping: AdamMapping) -> str | None:
    if code is None:
        return None
    if code in mapping.complete:
        return "CR"
    if code in mapping.partial:
        return "PR"
    return "NR"


def _times(adtte: Dataset, mapping: AdamMapping, checked: np.ndarray, report: _Report) -> tuple[list, list]:
    """Each ADTTE record's time in days (AVAL x unit) and event "1"/"0" (CNSR 0 / >= 1); None where
    invalid. Problems are reported for the `checked` records only (those a model uses)."""
    ids = adtte.text(mapping.patient)
    raw = adtte.table[mapping.tte_value]
    aval = adtte.number(mapping.tte_value)

    def found(mask: pd.Series) -> np.ndarray:
        return np.asarray(mask, dtype=bool) & checked

    def add(mask: np.ndarray, message: str, variable: str, expected: str) -> None:
        if mask.any():
            report.add(adtte.where, message, variable, np.flatnonzero(mask) + 1, ids[mask].tolist(), expected)

    add(found(aval.isna() & raw.notna()), "values are not numbers", mapping.tte_value, "a number of time units")
    if mapping.tte_unit in adtte.table.columns:
        units = adtte.text(mapping.tte_unit).str.upper()
        factor = units.map(DAYS_PER_UNIT)
        unknown = found(factor.isna() & units.notna())
        seen = ", ".join(sorted(set(units[unknown])))[:60]
        add(unknown, f"unknown time unit ({seen})", mapping.tte_unit, UNITS_TEXT)
        add(found(units.isna() & aval.notna()), "missing time unit", mapping.tte_unit, UNITS_TEXT)
    else:
        factor = pd.Series(DAYS_PER_UNIT[mapping.default_unit], index=adtte.table.index)
    # Rounded to 1e-6 day so that times written in different units (OS in weeks, a lineage's
    # censoring at the same date in months) still compare equal after conversion.
    days = [None if np.isnan(d) else round(float(d), 6) for d in (aval * factor.astype("float64"))]
    cnsr = adtte.number(mapping.censor)
    valid = (cnsr.notna() & (cnsr >= 0) & (cnsr == np.floor(cnsr))).to_numpy()
    bad = found(~valid)
    seen = ", ".join(sorted({str(v) for v in adtte.text(mapping.censor)[bad]}))[:60]
    add(
        bad,
        f"censoring values are not 0 or a whole number >= 1 ({seen})",
        mapping.censor,
        "0 (the event happened at AVAL) or 1, 2, ... (censored at AVAL)",
    )
    events = [("1" if c == 0 else "0") if ok else None for ok, c in zip(valid, cnsr, strict=True)]
    return days, events


def _recovery_rows(
    subjects: list[str],
    per_lineage: dict[str, np.ndarray],
    days: list,
    events: list,
    adtte: Dataset,
    mapping: AdamMapping,
    mapped: Mapped,
) -> pd.DataFrame | None:
    """Long recovery table, subject by subject in ADSL order, lineages in the mapping's order."""
    if not per_lineage:
        return None
    rows = []
    for i, subject in enumerate(subjects):
        for lineage, records in per_lineage.items():
            r = records[i]
            if r >= 0:
                rows.append((subject, lineage, days[r], events[r], r + 1))
    table = pd.DataFrame(rows, columns=["patient_id", "lineage", "day", "recovered", "record"])
    records = table.pop("record").to_numpy()
    where = adtte.where
    mapped.recovery_origins = {
        "patient_id": Origin(where, mapping.patient, records),
        "lineage": Origin(where, "PARAMCD", records),
        "day": Origin(where, mapping.tte_value, records),
        "recovered": Origin(where, mapping.censor, records),
    }
    mapped.recovery_ids = table["patient_id"].tolist()
    return table
