"""Which ADaM files (`--adam DIR`, `--adsl/--adrs/--adtte FILE`) and reading them into `Dataset`s."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marrow.errors import ProblemList, UsageError

DATASETS = ("adsl", "adrs", "adtte")
MAPPING_ROLE = "adam_mapping"
ROLES = (*DATASETS, MAPPING_ROLE)
SUFFIXES = (".xpt", ".sas7bdat", ".csv", ".parquet", ".pq")


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
    def from_options(
        cls,
        folder: Path | None = None,
        adsl: Path | None = None,
        adrs: Path | None = None,
        adtte: Path | None = None,
        mapping: Path | None = None,
    ) -> AdamInput | None:
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
            raise UsageError(
                "ADaM input needs ADSL (--adsl FILE, or an adsl.xpt/.sas7bdat/.csv/.parquet in --adam DIR)"
            )
        return cls(found["adsl"], found["adrs"], found["adtte"], Path(mapping) if mapping is not None else None)


def find_datasets(folder: Path) -> dict[str, Path]:
    """adsl/adrs/adtte files in a folder, by name (any case) and a readable suffix."""
    if not folder.is_dir():
        raise UsageError(f"--adam {folder}: not a folder (give the folder holding adsl.xpt, adrs.xpt, adtte.xpt)")
    out: dict[str, Path] = {}
    for role in DATASETS:
        hits = sorted(
            p for p in folder.iterdir() if p.is_file() and p.stem.lower() == role and p.suffix.lower() in SUFFIXES
        )
        if len(hits) > 1:
            raise UsageError(
                f"--adam {folder}: several {role.upper()} files ({', '.join(p.name for p in hits)}); "
                f"name one with --{role}"
            )
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
        problems.add(
            where,
            f"cannot be read ({type(exc).__name__}: {exc})",
            expected="a SAS transport (.xpt), SAS (.sas7bdat), CSV or Parquet file",
        )
        return None
    names = [str(c).strip().upper() for c in raw.columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        problems.add(
            where,
            f"variables named twice (names are not case-sensitive): {', '.join(twice)}",
            expected="each variable once",
        )
        return None
    table = pd.DataFrame(
        {
            n: (raw[c].astype("float64") if _is_number(raw[c]) else raw[c].map(_cell).astype(object))
            for n, c in zip(names, raw.columns, strict=True)
        }
    )
    if table.empty:
        problems.add(where, "dataset has no records", expected="at least one record")
        return None
    return Dataset(name, path, table.reset_index(drop=True), {k.upper(): v for k, v in labels.items()})


def _is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
