"""CDISC ADaM input: ADSL, ADRS and ADTTE mapped onto marrow's patients and recovery tables.

A mapping (defaults in `adam_mapping.toml` beside this module; a user's TOML overrides them key by
key) names the variables and PARAMCDs behind each marrow column. The mapped tables then go through
`load_frames`, the validation every input route shares, and every problem is reported against the
ADaM dataset, the variable and the USUBJIDs concerned (rows are 1-based records of that dataset).
See docs/data.md, "ADaM input".
"""

from __future__ import annotations

import datetime as dt
import sys
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from marrow.data.load import RESERVED, Needs, file_sha256, load_frames, load_trial
from marrow.data.trial import SourceFile, TrialData
from marrow.errors import DataError, Problem, ProblemList, UsageError

DEFAULT_MAPPING = Path(__file__).with_name("adam_mapping.toml")
DATASETS = ("adsl", "adrs", "adtte")
MAPPING_ROLE = "adam_mapping"
ROLES = (*DATASETS, MAPPING_ROLE)
SUFFIXES = (".xpt", ".sas7bdat", ".csv", ".parquet", ".pq")
DAYS_PER_UNIT = {
    "DAYS": 1.0, "DAY": 1.0,
    "WEEKS": 7.0, "WEEK": 7.0,
    "MONTHS": 365.25 / 12, "MONTH": 365.25 / 12,
    "YEARS": 365.25, "YEAR": 365.25,
}
_UNITS_TEXT = "DAYS, WEEKS, MONTHS or YEARS"
_MAX_IDS = 10


# --- the mapping -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AdamMapping:
    """Which ADaM variables and PARAMCDs give each marrow column (variable names upper-case)."""

    patient: str
    center: str
    population: str
    safety_population: str
    adverse_event: str
    covariates: tuple[tuple[str, str], ...]  # (marrow covariate name, ADSL variable)
    response_paramcd: str
    response_value: str
    complete: tuple[str, ...]
    partial: tuple[str, ...]
    response_flag: str
    tte_value: str
    tte_unit: str
    default_unit: str
    censor: str
    tte_flag: str
    survival_paramcd: str
    lineages: tuple[tuple[str, str], ...]  # (lineage, PARAMCD), in this order

    def population_flag(self, needs: Needs) -> str:
        """The safety population for the safety model (adverse events only), else the efficacy one."""
        efficacy = needs.ordinal or needs.followup or needs.died or needs.recovery
        return self.safety_population if needs.adverse_event and not efficacy else self.population


_FIXED = {  # section -> key -> (AdamMapping field, kind)
    "subjects": {"patient": ("patient", "variable"), "center": ("center", "variable"),
                 "population": ("population", "flag"), "safety_population": ("safety_population", "flag"),
                 "adverse_event": ("adverse_event", "flag")},
    "response": {"paramcd": ("response_paramcd", "code"), "value": ("response_value", "variable"),
                 "complete": ("complete", "codes"), "partial": ("partial", "codes"),
                 "analysis_flag": ("response_flag", "flag")},
    "time_to_event": {"value": ("tte_value", "variable"), "unit": ("tte_unit", "flag"),
                      "default_unit": ("default_unit", "unit"), "censor": ("censor", "variable"),
                      "analysis_flag": ("tte_flag", "flag"), "survival": ("survival_paramcd", "code")},
}
_TABLES = ("covariates", "recovery")  # a user's table replaces the default one


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"ADaM mapping file {path} not found (write one with `marrow init --adam --out {path}`)")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"ADaM mapping file {path} is not valid TOML: {exc}") from None


def _value(value: Any, kind: str, where: str) -> Any:
    if kind == "codes":
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise UsageError(f"{where} must be a list of codes, e.g. [\"CR\"]")
        return tuple(v.strip().upper() for v in value)
    if not isinstance(value, str):
        raise UsageError(f"{where} must be text, got {value!r}")
    text = value.strip().upper()
    if kind in ("variable", "code") and not text:
        raise UsageError(f"{where} must not be empty")
    if kind == "unit" and text not in DAYS_PER_UNIT:
        raise UsageError(f"{where} must be one of {_UNITS_TEXT}, got {value!r}")
    return text


def _pairs(table: Any, where: str, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table of name = \"{what}\"")
    out = []
    for name, value in table.items():
        if isinstance(value, dict):
            # The table form leaves room for more keys per entry (e.g. interval bounds of a lineage).
            unknown = sorted(set(value) - {"paramcd", "variable"})
            if unknown or len(value) != 1:
                raise UsageError(f"{where}.{name}: give one key, {'paramcd' if what == 'PARAMCD' else 'variable'}")
            value = next(iter(value.values()))
        out.append((name, _value(value, "code", f"{where}.{name}")))
    return tuple(out)


def load_mapping(path: Path | str | None = None) -> AdamMapping:
    """The default mapping, with a user's TOML file (if given) overriding it; bad keys are UsageErrors."""
    merged = _read_toml(DEFAULT_MAPPING)
    where = str(DEFAULT_MAPPING)
    if path is not None:
        where = str(path)
        user = _read_toml(Path(path))
        unknown = sorted(set(user) - set(_FIXED) - set(_TABLES))
        if unknown:
            raise UsageError(f"{where}: unknown section(s) {', '.join(unknown)}; allowed: "
                             f"{', '.join([*_FIXED, *_TABLES])}")
        for section, table in user.items():
            if not isinstance(table, dict):
                raise UsageError(f"{where} [{section}] must be a table")
            if section in _TABLES:
                merged[section] = table
                continue
            bad = sorted(set(table) - set(_FIXED[section]))
            if bad:
                raise UsageError(f"{where} [{section}]: unknown key(s) {', '.join(bad)}; allowed: "
                                 f"{', '.join(_FIXED[section])}")
            merged[section] = {**merged.get(section, {}), **table}
    fields: dict[str, Any] = {}
    for section, keys in _FIXED.items():
        for key, (name, kind) in keys.items():
            fields[name] = _value(merged[section][key], kind, f"{where} [{section}] {key}")
    covariates = _pairs(merged.get("covariates", {}), f"{where} [covariates]", "ADSL variable")
    for name, _ in covariates:
        if name in RESERVED:
            raise UsageError(f"{where} [covariates] {name}: a reserved column name cannot be a covariate")
    fields["covariates"] = covariates
    fields["lineages"] = _pairs(merged.get("recovery", {}), f"{where} [recovery]", "PARAMCD")
    return AdamMapping(**fields)


def template_text() -> str:
    """The commented default mapping (what `marrow init --adam` writes)."""
    return DEFAULT_MAPPING.read_text(encoding="utf-8")


# --- which files ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AdamInput:
    """The ADaM datasets to read (ADSL required) and the mapping file (None: the defaults)."""

    adsl: Path
    adrs: Path | None = None
    adtte: Path | None = None
    mapping: Path | None = None

    def paths(self) -> dict[str, Path]:
        """Role -> path of every file given (the mapping under `adam_mapping`)."""
        out = {"adsl": self.adsl, "adrs": self.adrs, "adtte": self.adtte, MAPPING_ROLE: self.mapping}
        return {role: Path(path) for role, path in out.items() if path is not None}

    @property
    def bundled(self) -> bool:
        """True when every dataset is one of the bundled synthetic trial's files."""
        from marrow import datasets

        home = Path(datasets.__file__).parent.resolve()
        return all(Path(p).resolve().parent == home for role, p in self.paths().items() if role in DATASETS)

    @classmethod
    def from_options(cls, folder: Path | None = None, adsl: Path | None = None, adrs: Path | None = None,
                     adtte: Path | None = None, mapping: Path | None = None) -> AdamInput | None:
        """From `--adam DIR` (adsl.*, adrs.*, adtte.* inside it) and/or `--adsl/--adrs/--adtte FILE`;
        files given one by one take precedence over the folder's. None when no dataset is given."""
        found: dict[str, Path | None] = {"adsl": None, "adrs": None, "adtte": None}
        if folder is not None:
            found.update(find_datasets(Path(folder)))
        for role, path in (("adsl", adsl), ("adrs", adrs), ("adtte", adtte)):
            if path is not None:
                found[role] = Path(path)
        if all(path is None for path in found.values()):
            if mapping is not None:
                raise UsageError("--adam-mapping needs ADaM datasets (--adam DIR or --adsl FILE)")
            return None
        if found["adsl"] is None:
            raise UsageError("ADaM input needs ADSL (--adsl FILE, or an adsl.xpt/.sas7bdat/.csv/.parquet in --adam DIR)")
        return cls(found["adsl"], found["adrs"], found["adtte"], Path(mapping) if mapping is not None else None)


def find_datasets(folder: Path) -> dict[str, Path]:
    """adsl/adrs/adtte files in a folder, by name (any case) and a readable suffix."""
    if not folder.is_dir():
        raise UsageError(f"--adam {folder}: not a folder (give the folder holding adsl.xpt, adrs.xpt, adtte.xpt)")
    out: dict[str, Path] = {}
    for role in DATASETS:
        hits = sorted(p for p in folder.iterdir()
                      if p.is_file() and p.stem.lower() == role and p.suffix.lower() in SUFFIXES)
        if len(hits) > 1:
            raise UsageError(f"--adam {folder}: several {role.upper()} files ({', '.join(p.name for p in hits)}); "
                             f"name one with --{role}")
        if hits:
            out[role] = hits[0]
    if "adsl" not in out:
        raise UsageError(f"--adam {folder}: no ADSL file (adsl with suffix {', '.join(SUFFIXES)})")
    return out


# --- reading -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dataset:
    """One ADaM dataset as read: variables upper-cased, text trimmed, SAS missing values as missing."""

    name: str  # ADSL, ADRS or ADTTE
    path: Path
    table: pd.DataFrame
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path} ({self.name})"

    def text(self, variable: str) -> pd.Series:
        """A variable as trimmed text (numbers written without a trailing .0); missing stays missing."""
        return self.table[variable].map(_as_text).astype(object)

    def number(self, variable: str) -> pd.Series:
        return pd.to_numeric(self.table[variable], errors="coerce").astype("float64")


def _as_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _cell(value: Any) -> Any:
    """SAS missing (blank text, NaN, None) -> None; bytes decoded; dates as ISO text; text trimmed."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, (dt.date, dt.datetime, dt.time, pd.Timestamp)):
        return value.isoformat()
    return value


def _read(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    suffix = path.suffix.lower()
    if suffix in (".xpt", ".sas7bdat"):
        import pyreadstat

        reader = pyreadstat.read_xport if suffix == ".xpt" else pyreadstat.read_sas7bdat
        table, meta = reader(str(path))
        return table, {k: v for k, v in (meta.column_names_to_labels or {}).items() if v}
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path), {}
    return pd.read_csv(path, dtype=str, keep_default_na=True, skipinitialspace=True), {}


def read_dataset(name: str, path: Path, problems: ProblemList) -> Dataset | None:
    """Read an ADaM dataset (.xpt v5 or v8, .sas7bdat, .csv, .parquet); a problem and None on failure."""
    where = f"{path} ({name})"
    if not path.is_file():
        problems.add(where, "file not found", expected=f"an existing {name} file ({', '.join(SUFFIXES)})")
        return None
    if path.suffix.lower() not in SUFFIXES:
        problems.add(where, f"unsupported file type '{path.suffix}'", expected=", ".join(SUFFIXES))
        return None
    try:
        raw, labels = _read(path)
    except Exception as exc:  # readers raise many types for unreadable files
        problems.add(where, f"cannot be read ({type(exc).__name__}: {exc})",
                     expected="a SAS transport (.xpt), SAS (.sas7bdat), CSV or Parquet file")
        return None
    names = [str(c).strip().upper() for c in raw.columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        problems.add(where, f"variables named twice (names are not case-sensitive): {', '.join(twice)}",
                     expected="each variable once")
        return None
    table = pd.DataFrame({n: (raw[c].astype("float64") if _is_number(raw[c]) else raw[c].map(_cell).astype(object))
                          for n, c in zip(names, raw.columns)})
    if table.empty:
        problems.add(where, "dataset has no records", expected="at least one record")
        return None
    return Dataset(name, path, table.reset_index(drop=True), {k.upper(): v for k, v in labels.items()})


def _is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


# --- mapping onto marrow's tables -------------------------------------------------------------------------

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


def _ids_text(ids: Sequence[str]) -> str:
    ids = list(dict.fromkeys(str(i) for i in ids))
    shown = ", ".join(ids[:_MAX_IDS])
    return f"USUBJID {shown}" + (f" and {len(ids) - _MAX_IDS} more" if len(ids) > _MAX_IDS else "")


class _Report:
    """Adds problems against a dataset and remembers what was reported (to drop echoes later)."""

    def __init__(self, problems: ProblemList, mapped: Mapped):
        self.problems, self.mapped = problems, mapped

    def add(self, where: str, message: str, variable: str | None, records=(), ids=(), expected: str | None = None):
        records = tuple(sorted(int(r) for r in records))
        text = message + (f" ({_ids_text(ids)})" if len(ids) else "")
        self.problems.add(where, text, variable, records, expected)
        self.mapped.reported.add((where, variable))
        self.mapped.flagged.setdefault(where, set()).update(records)


def _require(ds: Dataset, variables: Sequence[str], why: str, report: _Report) -> bool:
    absent = [v for v in variables if v not in ds.table.columns]
    for variable in absent:
        report.add(ds.where, f"required variable is missing ({why})", variable,
                   expected=f"a variable {variable} in {ds.name} (or name another in the ADaM mapping)")
    return not absent


def _flag_filter(ds: Dataset, flag: str, report: _Report) -> np.ndarray:
    """Records with flag 'Y' when the flag variable exists (blank or 'N' excluded), else every record."""
    if not flag or flag not in ds.table.columns:
        return np.ones(len(ds.table), dtype=bool)
    values = ds.text(flag).str.upper()
    bad = values.notna() & ~values.isin(["Y", "N"])
    if bad.any():
        report.add(ds.where, f"flag values other than Y/N ({', '.join(sorted(set(values[bad])))[:60]})", flag,
                   np.flatnonzero(bad) + 1, expected="Y, N or blank")
    return (values == "Y").to_numpy()


def _unknown_subjects(ds: Dataset, id_var: str, known: set[str], adsl_where: str, report: _Report) -> None:
    ids = ds.text(id_var)
    missing = ids.isna()
    if missing.any():
        report.add(ds.where, "missing USUBJID", id_var, np.flatnonzero(missing) + 1, expected="a USUBJID in every record")
    unknown = ids.notna() & ~ids.isin(known)
    if unknown.any():
        report.add(ds.where, f"USUBJID not found in {adsl_where}", id_var, np.flatnonzero(unknown) + 1,
                   ids[unknown].tolist(), expected="a USUBJID of ADSL")


def _one_per_subject(ds: Dataset, id_var: str, selected: np.ndarray, what: str, report: _Report | None,
                     paramcd_var: str) -> dict[str, int]:
    """USUBJID -> 0-based record among `selected`; subjects with several selected records reported
    (unless `report` is None: a parameter no model asked for)."""
    ids = ds.text(id_var)
    rows = np.flatnonzero(selected & ids.notna().to_numpy())
    chosen = ids.iloc[rows]
    twice = chosen.duplicated(keep=False).to_numpy()
    if twice.any() and report is not None:
        report.add(ds.where, f"several records of {what} for one subject", paramcd_var, rows[twice] + 1,
                   chosen[twice].tolist(), expected="one record per subject (flag one with ANL01FL = 'Y')")
    out: dict[str, int] = {}
    for row, subject in zip(rows, chosen):
        out.setdefault(subject, int(row))
    return out


def _paramcd_selection(ds: Dataset, paramcd: str, flag: str, report: _Report) -> tuple[np.ndarray, str]:
    selected = (ds.text("PARAMCD").str.upper() == paramcd).to_numpy() & _flag_filter(ds, flag, report)
    which = f"PARAMCD = '{paramcd}'" + (f" and {flag} = 'Y'" if flag and flag in ds.table.columns else "")
    return selected, which


def map_tables(adsl: Dataset, adrs: Dataset | None, adtte: Dataset | None, mapping: AdamMapping, needs: Needs,
               problems: ProblemList) -> Mapped | None:
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
        report.add(adsl.where, "missing USUBJID", id_var, np.flatnonzero(missing) + 1, expected="a USUBJID in every record")
    twice = all_ids.duplicated(keep=False) & all_ids.notna()
    if twice.any():
        report.add(adsl.where, "duplicated USUBJID", id_var, np.flatnonzero(twice) + 1, all_ids[twice].tolist(),
                   expected="one ADSL record per subject")
    flag = mapping.population_flag(needs)
    if flag and flag not in adsl.table.columns:
        mapped.notes.append(f"{adsl.where} has no population flag {flag}: every subject is analysed")
    in_population = _flag_filter(adsl, flag, report) & all_ids.notna().to_numpy()
    if not in_population.any():
        report.add(adsl.where, f"no subject in the analysis population ({flag} = 'Y')", flag,
                   expected="at least one subject with the flag 'Y'")
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
            report.add(adsl.where, f"variable mapped to covariate '{name}' is not in ADSL", variable,
                       expected=f"one of the ADSL variables: {', '.join(adsl.table.columns)}")
    # Any other ADSL variable is a covariate under its own name (e.g. --covariates AGE).
    for variable in adsl.table.columns:
        if variable not in patients and variable not in RESERVED:
            patients[variable] = adsl.table[variable].iloc[records].tolist()
            origins[variable] = adsl_origin(variable)

    # ADRS: the best overall response.
    resp_value = mapping.response_value
    origins["response"] = Origin(adrs.where if adrs else "ADRS (not given)", resp_value, np.zeros(n, dtype=np.int64),
                                 "no ADRS given (--adrs FILE, or adrs.* in the --adam folder)")
    if adrs is not None and _require(adrs, [id_var, "PARAMCD", resp_value], "best overall response", report):
        _unknown_subjects(adrs, id_var, known, adsl.where, report)
        selected, which = _paramcd_selection(adrs, mapping.response_paramcd, mapping.response_flag, report)
        if not selected.any():
            present = ", ".join(sorted(set(adrs.text("PARAMCD").dropna())))[:200] or "none"
            report.add(adrs.where, f"no record with {which}", "PARAMCD",
                       expected=f"the PARAMCD of the best overall response ([response] paramcd of the mapping); "
                                f"PARAMCDs in {adrs.name}: {present}")
            mapped.reported.add((adrs.where, resp_value))
        chosen = _one_per_subject(adrs, id_var, selected, f"{which}", report, "PARAMCD")
        codes = adrs.text(resp_value).str.upper()
        rows = np.array([chosen.get(s, -1) for s in subjects])
        patients["response"] = [_response(codes.iloc[r], mapping) if r >= 0 else None for r in rows]
        origins["response"] = Origin(adrs.where, resp_value, rows + 1, f"no ADRS record with {which}")

    # ADTTE: overall survival and the lineages' times to recovery.
    value, unit, censor = mapping.tte_value, mapping.tte_unit, mapping.censor
    none = np.zeros(n, dtype=np.int64)
    no_adtte = "no ADTTE given (--adtte FILE, or adtte.* in the --adam folder)"
    adtte_where = adtte.where if adtte else "ADTTE (not given)"
    origins["followup_days"] = Origin(adtte_where, value, none, no_adtte)
    origins["died"] = Origin(adtte_where, censor, none, no_adtte)
    recovery = None
    if adtte is None and needs.recovery:
        report.add("ADTTE (not given)", "the recovery model needs ADTTE (times to recovery by lineage)", None,
                   expected="--adtte FILE, or adtte.xpt (.sas7bdat, .csv, .parquet) in the --adam folder")
    wanted = ([mapping.survival_paramcd] if needs.followup or needs.died else []) + \
             ([paramcd for _, paramcd in mapping.lineages] if needs.recovery else [])
    if adtte is not None and _require(adtte, [id_var, "PARAMCD", value, censor], "times to event", report):
        paramcds = adtte.text("PARAMCD").str.upper()
        flag_ok = _flag_filter(adtte, mapping.tte_flag, report)
        in_population = adtte.text(id_var).isin(set(subjects)).to_numpy()
        if wanted:  # like a recovery table, ADTTE is checked when a model needs it
            _unknown_subjects(adtte, id_var, known, adsl.where, report)
        checked = paramcds.isin(wanted).to_numpy() & flag_ok & in_population
        days, events = _times(adtte, mapping, checked, report)
        flag_text = f" and {mapping.tte_flag} = 'Y'" if mapping.tte_flag and mapping.tte_flag in adtte.table.columns else ""

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
        for lineage, paramcd in (mapping.lineages if needs.recovery else ()):
            rows, which = pick(paramcd)
            if (rows >= 0).any():
                per_lineage[lineage] = rows
            else:
                present = ", ".join(sorted(set(paramcds.dropna())))[:200]
                report.add(adtte.where, f"no record with {which} (lineage {lineage})", "PARAMCD",
                           expected=f"the PARAMCD of each lineage in the mapping's [recovery]; PARAMCDs in ADTTE: {present}")
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
        add(unknown, f"unknown time unit ({seen})", mapping.tte_unit, _UNITS_TEXT)
        add(found(units.isna() & aval.notna()), "missing time unit", mapping.tte_unit, _UNITS_TEXT)
    else:
        factor = pd.Series(DAYS_PER_UNIT[mapping.default_unit], index=adtte.table.index)
    # Rounded to 1e-6 day so that times written in different units (OS in weeks, a lineage's
    # censoring at the same date in months) still compare equal after conversion.
    days = [None if np.isnan(d) else round(float(d), 6) for d in (aval * factor.astype("float64"))]
    cnsr = adtte.number(mapping.censor)
    valid = (cnsr.notna() & (cnsr >= 0) & (cnsr == np.floor(cnsr))).to_numpy()
    bad = found(~valid)
    seen = ", ".join(sorted({str(v) for v in adtte.text(mapping.censor)[bad]}))[:60]
    add(bad, f"censoring values are not 0 or a whole number >= 1 ({seen})", mapping.censor,
        "0 (the event happened at AVAL) or 1, 2, ... (censored at AVAL)")
    events = [("1" if c == 0 else "0") if ok else None for ok, c in zip(valid, cnsr)]
    return days, events


def _recovery_rows(subjects: list[str], per_lineage: dict[str, np.ndarray], days: list, events: list,
                   adtte: Dataset, mapping: AdamMapping, mapped: Mapped) -> pd.DataFrame | None:
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


# --- problems from load_frames, told in ADaM terms --------------------------------------------------------

_PATIENTS, _RECOVERY = "ADSL", "ADTTE"


def _translate(problem: Problem, mapped: Mapped, mapping: AdamMapping) -> Problem | None:
    """A load_frames problem against the dataset, variable, records and USUBJIDs it came from;
    None when it only echoes a problem already reported in ADaM terms."""
    if problem.file == _PATIENTS:
        origins, ids = mapped.patient_origins, mapped.patients["patient_id"].tolist()
        default = next(iter(origins.values())).where
    else:
        origins, ids = mapped.recovery_origins, mapped.recovery_ids
        default = origins["patient_id"].where if origins else "ADTTE"
    origin = origins.get(problem.column) if problem.column else None
    where = origin.where if origin else default
    variable = origin.variable if origin else problem.column
    if (where, variable) in mapped.reported:
        return None
    # Records already reported in ADaM terms (e.g. an unknown AVALU) are not reported again as
    # the missing values they turned into.
    flagged = mapped.flagged.get(where, set())
    record_of = (lambda r: int(origin.records[r - 1])) if origin is not None else (lambda r: -1)
    given = [r for r in problem.rows if 1 <= r <= len(ids)]
    rows = [r for r in given if record_of(r) not in flagged]
    if given and not rows:
        return None
    subjects = [ids[r - 1] for r in rows]
    records = sorted({record_of(r) for r in rows if record_of(r) > 0})
    absent = [ids[r - 1] for r in rows if record_of(r) == 0]
    message = problem.message.replace(f"followup_days in {_PATIENTS}", f"{mapping.survival_paramcd} time")
    message = message.replace(f"in {_PATIENTS}", f"in {mapped.patient_origins['patient_id'].where}")
    expected = problem.expected
    if expected == "day <= followup_days":
        expected = f"{mapping.tte_value} <= the subject's {mapping.survival_paramcd} {mapping.tte_value} (in days)"
    if origin is not None and where.endswith("(not given)"):
        name = where.split()[0]
        expected = f"an {name} dataset (--{name.lower()} FILE, or {name.lower()}.xpt etc. in the --adam folder)"
    elif message.startswith("required column is missing"):
        message = message.replace("required column", "required variable", 1)
        expected = f"a variable {variable} in {where.split(' (')[-1].rstrip(')')} (or name another in the ADaM mapping)"
    if subjects:
        message += f" ({_ids_text(subjects)})"
    if absent and origin is not None and origin.missing_record:
        message += f"; {origin.missing_record} for {_ids_text(absent)}"
    return Problem(where, message, variable, tuple(records), expected)


# --- loading -------------------------------------------------------------------------------------------------

def _read_and_map(source: AdamInput, needs: Needs) -> tuple[AdamMapping, dict[str, Dataset], Mapped, ProblemList]:
    """Read the datasets and map them; raises at once when a dataset is unreadable or has no USUBJID."""
    mapping = load_mapping(source.mapping)
    problems = ProblemList()
    read = {role: read_dataset(role.upper(), path, problems) for role, path in source.paths().items()
            if role in DATASETS}
    if any(ds is None for ds in read.values()):
        problems.raise_if_any()
    mapped = map_tables(read["adsl"], read.get("adrs"), read.get("adtte"), mapping, needs, problems)
    if mapped is None:
        problems.raise_if_any()
    return mapping, read, mapped, problems


def load_adam(source: AdamInput, needs: Needs = Needs(), announce: bool = False) -> TrialData:
    """Read, map and validate ADaM datasets into a `TrialData` (same validation as the CSV route).

    Raises `DataError` listing every problem, each naming the dataset, variable and USUBJIDs.
    Provenance: each dataset's and the mapping file's path, SHA-256 and record count."""
    mapping_path = source.mapping or DEFAULT_MAPPING
    mapping, read, mapped, problems = _read_and_map(source, needs)
    synthetic = source.bundled
    if announce:
        if synthetic:
            print("marrow: using the bundled SYNTHETIC trial as ADaM (74 patients, 7 centers; not patient records)",
                  file=sys.stderr)
        for note in mapped.notes:
            print(f"marrow: {note}", file=sys.stderr)
    sources = [SourceFile(role, str(ds.path), file_sha256(ds.path), len(ds.table)) for role, ds in read.items()]
    sources.append(SourceFile(MAPPING_ROLE, str(mapping_path), file_sha256(mapping_path), 0))
    if problems.problems and needs.recovery and mapped.recovery is None:
        needs = replace(needs, recovery=False)  # the missing recovery table is already reported
    try:
        # Only a model that needs the recovery table gets one, as on the CSV route.
        data = load_frames(mapped.patients, mapped.recovery if needs.recovery else None, needs, sources=sources, patients_name=_PATIENTS,
                           recovery_name=_RECOVERY, synthetic=synthetic)
    except DataError as exc:
        problems.problems.extend(p for p in (_translate(p, mapped, mapping) for p in exc.problems) if p is not None)
        if not problems.problems:  # every echo dropped: should not happen, but never lose the error
            raise
    problems.raise_if_any()
    return data


def load_adam_all(source: AdamInput, covariates: tuple[str, ...] = (), announce: bool = False) -> TrialData:
    """Everything the datasets give (for the frequentist comparison): each column they map is checked."""
    _, _, probe, _ = _read_and_map(source, Needs(recovery=True, covariates=covariates))
    present = {c for c in probe.patients.columns if probe.patients[c].notna().any()}
    return load_adam(source, Needs(ordinal="response" in present, followup="followup_days" in present,
                                   died="died" in present and "followup_days" in present,
                                   adverse_event="adverse_event" in present, recovery=probe.recovery is not None,
                                   covariates=covariates), announce=announce)


def load_input(data_path: Path | str | None = None, recovery_path: Path | str | None = None, needs: Needs = Needs(),
               adam: AdamInput | None = None, announce: bool = False) -> TrialData:
    """The trial from whichever route the user gave: ADaM datasets, or the patients/recovery tables
    (the bundled synthetic trial when neither)."""
    if adam is None:
        return load_trial(data_path, recovery_path, needs, announce=announce)
    if data_path is not None or recovery_path is not None:
        raise UsageError("give the data one way: ADaM datasets (--adam/--adsl/--adrs/--adtte) or tables (--data/--recovery)")
    return load_adam(adam, needs, announce=announce)


# --- reloading the ADaM files a fit was made from ------------------------------------------------------------

def recorded_adam(sources: Sequence[dict]) -> AdamInput | None:
    """The ADaM input recorded in a fit's data sources (None if it was fitted from tables)."""
    paths = {s["role"]: Path(s["path"]) for s in sources if s["role"] in ROLES}
    if "adsl" not in paths:
        return None
    mapping = paths.get(MAPPING_ROLE)
    if mapping is not None and mapping.resolve() == DEFAULT_MAPPING.resolve():
        mapping = None
    recorded = {s["role"]: s["sha256"] for s in sources}
    if mapping is not None and not mapping.exists() and recorded.get(MAPPING_ROLE) == file_sha256(DEFAULT_MAPPING):
        mapping = None  # the defaults of another installation
    return AdamInput(paths["adsl"], paths.get("adrs"), paths.get("adtte"), mapping)


def adam_for_fits(fits: Sequence, adam: AdamInput | None, tables_given: bool) -> AdamInput | None:
    """The ADaM input to reload the fits' data from, checked against what they recorded.

    `adam` if given, else the ADaM files the fits were made from (None if they were made from tables,
    or tables were given). Every file whose role a fit recorded must have the recorded SHA-256;
    mixing routes (ADaM fits with --data, table fits with --adam) is a UsageError."""
    recorded: dict[str, tuple[str, str]] = {}
    table_fits = False
    for fit in fits:
        roles = {s["role"] for s in fit.data_sources}
        table_fits = table_fits or bool(roles & {"patients", "recovery"})
        for source in fit.data_sources:
            if source["role"] in ROLES:
                recorded.setdefault(source["role"], (source["path"], source["sha256"]))
    if tables_given and recorded and adam is None:
        raise UsageError("the fits were made from ADaM datasets; pass them with --adam (or --adsl/--adrs/--adtte)")
    if adam is not None and table_fits:
        raise UsageError("the fits were made from patients/recovery tables; pass those with --data/--recovery")
    if adam is None:
        if tables_given or not recorded:
            return None
        adam = recorded_adam([{"role": r, "path": p, "sha256": h} for r, (p, h) in recorded.items()])
    for role, path in adam.paths().items():
        if role not in recorded:
            continue
        if not path.exists():
            raise UsageError(f"the {role.upper()} file the fit was made from, {path}, is not there; pass it with "
                             f"--{'adam-mapping' if role == MAPPING_ROLE else role}")
        digest = file_sha256(path)
        if digest != recorded[role][1]:
            raise UsageError(f"{path} is not the {role.upper()} file the fit was made from (SHA-256 {digest[:12]} "
                             f"on disk, {recorded[role][1][:12]} recorded); refit, or pass the original file")
    if adam.mapping is None and MAPPING_ROLE in recorded and recorded[MAPPING_ROLE][1] != file_sha256(DEFAULT_MAPPING):
        raise UsageError(f"the fits were made with the ADaM mapping {recorded[MAPPING_ROLE][0]}; pass it with --adam-mapping")
    return adam


__all__ = ["AdamInput", "AdamMapping", "adam_for_fits", "load_adam", "load_input", "load_mapping", "map_tables",
           "read_dataset", "recorded_adam", "template_text"]
