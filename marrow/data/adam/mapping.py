"""The ADaM mapping: which variables and PARAMCDs give each marrow column.

Defaults in `mapping.toml` beside this module (what `marrow init --adam` writes); a user's TOML file
overrides them key by key, and its `[covariates]`/`[recovery]` tables replace the defaults whole.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marrow.data.load import RESERVED, Needs
from marrow.errors import UsageError

DEFAULT_MAPPING = Path(__file__).with_name("mapping.toml")
DAYS_PER_UNIT = {
    "DAYS": 1.0,
    "DAY": 1.0,
    "WEEKS": 7.0,
    "WEEK": 7.0,
    "MONTHS": 365.25 / 12,
    "MONTH": 365.25 / 12,
    "YEARS": 365.25,
    "YEAR": 365.25,
}
UNITS_TEXT = "DAYS, WEEKS, MONTHS or YEARS"


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
    "subjects": {
        "patient": ("patient", "variable"),
        "center": ("center", "variable"),
        "population": ("population", "flag"),
        "safety_population": ("safety_population", "flag"),
        "adverse_event": ("adverse_event", "flag"),
    },
    "response": {
        "paramcd": ("response_paramcd", "code"),
        "value": ("response_value", "variable"),
        "complete": ("complete", "codes"),
        "partial": ("partial", "codes"),
        "analysis_flag": ("response_flag", "flag"),
    },
    "time_to_event": {
        "value": ("tte_value", "variable"),
        "unit": ("tte_unit", "flag"),
        "default_unit": ("default_unit", "unit"),
        "censor": ("censor", "variable"),
        "analysis_flag": ("tte_flag", "flag"),
        "survival": ("survival_paramcd", "code"),
    },
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
            raise UsageError(f'{where} must be a list of codes, e.g. ["CR"]')
        return tuple(v.strip().upper() for v in value)
    if not isinstance(value, str):
        raise UsageError(f"{where} must be text, got {value!r}")
    text = value.strip().upper()
    if kind in ("variable", "code") and not text:
        raise UsageError(f"{where} must not be empty")
    if kind == "unit" and text not in DAYS_PER_UNIT:
        raise UsageError(f"{where} must be one of {UNITS_TEXT}, got {value!r}")
    return text


def _pairs(table: Any, where: str, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(table, dict):
        raise UsageError(f'{where} must be a table of name = "{what}"')
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
            raise UsageError(
                f"{where}: unknown section(s) {', '.join(unknown)}; allowed: {', '.join([*_FIXED, *_TABLES])}"
            )
        for section, table in user.items():
            if not isinstance(table, dict):
                raise UsageError(f"{where} [{section}] must be a table")
            if section in _TABLES:
                merged[section] = table
                continue
            bad = sorted(set(table) - set(_FIXED[section]))
            if bad:
                raise UsageError(
                    f"{where} [{section}]: unknown key(s) {', '.join(bad)}; allowed: {', '.join(_FIXED[section])}"
                )
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
