"""Loading ADaM datasets into `TrialData` through `load_frames`, problems told in ADaM terms; and
reloading the ADaM files a fit recorded (checked by SHA-256)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from marrow.data.adam.files import DATASETS, MAPPING_ROLE, ROLES, AdamInput, Dataset, read_dataset
from marrow.data.adam.mapping import DEFAULT_MAPPING, AdamMapping, load_mapping
from marrow.data.adam.tables import Mapped, ids_text, map_tables
from marrow.data.load import Needs, file_sha256, load_frames, load_trial
from marrow.data.trial import SourceFile, TrialData
from marrow.errors import DataError, Problem, ProblemList, UsageError

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
        message += f" ({ids_text(subjects)})"
    if absent and origin is not None and origin.missing_record:
        message += f"; {origin.missing_record} for {ids_text(absent)}"
    return Problem(where, message, variable, tuple(records), expected)


# --- loading -------------------------------------------------------------------------------------------------


def _read_and_map(source: AdamInput, needs: Needs) -> tuple[AdamMapping, dict[str, Dataset], Mapped, ProblemList]:
    """Read the datasets and map them; raises at once when a dataset is unreadable or has no USUBJID."""
    mapping = load_mapping(source.mapping)
    problems = ProblemList()
    read = {
        role: read_dataset(role.upper(), path, problems) for role, path in source.paths().items() if role in DATASETS
    }
    if any(ds is None for ds in read.values()):
        problems.raise_if_any()
    readable = {role: ds for role, ds in read.items() if ds is not None}  # all of them: None only with a problem
    mapped = map_tables(readable["adsl"], readable.get("adrs"), readable.get("adtte"), mapping, needs, problems)
    if mapped is None:
        problems.raise_if_any()
    assert mapped is not None  # None only with a problem, raised above
    return mapping, readable, mapped, problems


def load_adam(source: AdamInput, needs: Needs = Needs(), announce: bool = False) -> TrialData:  # noqa: B008 (Needs is a frozen dataclass: an immutable default)
    """Read, map and validate ADaM datasets into a `TrialData` (same validation as the CSV route).

    Raises `DataError` listing every problem, each naming the dataset, variable and USUBJIDs.
    Provenance: each dataset's and the mapping file's path, SHA-256 and record count."""
    mapping_path = source.mapping or DEFAULT_MAPPING
    mapping, read, mapped, problems = _read_and_map(source, needs)
    synthetic = source.bundled
    if announce:
        if synthetic:
            print(
                "marrow: using the bundled SYNTHETIC trial as ADaM (74 patients, 7 centers; not patient records)",
                file=sys.stderr,
            )
        for note in mapped.notes:
            print(f"marrow: {note}", file=sys.stderr)
    sources = [SourceFile(role, str(ds.path), file_sha256(ds.path), len(ds.table)) for role, ds in read.items()]
    sources.append(SourceFile(MAPPING_ROLE, str(mapping_path), file_sha256(mapping_path), 0))
    if problems.problems and needs.recovery and mapped.recovery is None:
        needs = replace(needs, recovery=False)  # the missing recovery table is already reported
    try:
        # Only a model that needs the recovery table gets one, as on the CSV route.
        data = load_frames(
            mapped.patients,
            mapped.recovery if needs.recovery else None,
            needs,
            sources=sources,
            patients_name=_PATIENTS,
            recovery_name=_RECOVERY,
            synthetic=synthetic,
        )
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
    return load_adam(
        source,
        Needs(
            ordinal="response" in present,
            followup="followup_days" in present,
            died="died" in present and "followup_days" in present,
            adverse_event="adverse_event" in present,
            recovery=probe.recovery is not None,
            covariates=covariates,
        ),
        announce=announce,
    )


def load_input(
    data_path: Path | str | None = None,
    recovery_path: Path | str | None = None,
    needs: Needs = Needs(),  # noqa: B008 (Needs is a frozen dataclass: an immutable default)
    adam: AdamInput | None = None,
    announce: bool = False,
    time_unit: str = "days",
) -> TrialData:
    """The trial from whichever route the user gave: ADaM datasets, or the patients/recovery tables
    (the bundled synthetic trial when neither). `time_unit` is the unit the model reads the times
    in; ADaM times are always converted to days (AVAL by AVALU), so another unit is refused."""
    if adam is None:
        return load_trial(data_path, recovery_path, needs, announce=announce)
    if data_path is not None or recovery_path is not None:
        raise UsageError(
            "give the data one way: ADaM datasets (--adam/--adsl/--adrs/--adtte) or tables (--data/--recovery)"
        )
    if time_unit != "days":
        raise UsageError(
            f"ADaM times are read in days (AVAL converted by AVALU), not {time_unit}: "
            "fit ADaM input with the default --time-unit days"
        )
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
        if adam is None:  # ADaM files recorded without ADSL: not a fit marrow wrote
            raise UsageError(
                "the fits record ADaM datasets but no ADSL; pass them with --adam (or --adsl/--adrs/--adtte)"
            )
    for role, path in adam.paths().items():
        if role not in recorded:
            continue
        if not path.exists():
            raise UsageError(
                f"the {role.upper()} file the fit was made from, {path}, is not there; pass it with "
                f"--{'adam-mapping' if role == MAPPING_ROLE else role}"
            )
        digest = file_sha256(path)
        if digest != recorded[role][1]:
            raise UsageError(
                f"{path} is not the {role.upper()} file the fit was made from (SHA-256 {digest[:12]} "
                f"on disk, {recorded[role][1][:12]} recorded); refit, or pass the original file"
            )
    if adam.mapping is None and MAPPING_ROLE in recorded and recorded[MAPPING_ROLE][1] != file_sha256(DEFAULT_MAPPING):
        raise UsageError(
            f"the fits were made with the ADaM mapping {recorded[MAPPING_ROLE][0]}; pass it with --adam-mapping"
        )
    return adam
