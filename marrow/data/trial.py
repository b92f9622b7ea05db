"""`TrialData`: the validated tables plus the coords and index arrays that models use."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from marrow import dims


@dataclass(frozen=True)
class SourceFile:
    """An input file's identity for provenance."""

    role: str
    path: str
    sha256: str
    rows: int


@dataclass(frozen=True)
class TrialData:
    """Validated trial tables.

    `patients` has one row per patient: `patient_id`, `center`, the covariates asked for (float),
    and each of these only when present and valid: `response` ("NR"/"PR"/"CR"), `responder` (0/1,
    from `response` when given), `followup_days` (float), `died` and `adverse_event` (0/1). So
    `column in patients.columns` means the column can be used; a contract column left out because
    the model did not need it and it failed validation is explained in `notes`.
    `recovery` (or None) has `patient_id`, `lineage`, `day`, `recovered` and float `day_lower`,
    `day_upper`: an interval-censored row (recovered between the two) has day = day_upper, every
    other row day_lower = day_upper = day.
    `notes` are plain sentences about how the data was read (columns left out, file format).
    """

    patients: pd.DataFrame
    recovery: pd.DataFrame | None
    covariates: tuple[str, ...]
    sources: tuple[SourceFile, ...]
    synthetic: bool = False
    notes: tuple[str, ...] = ()

    @property
    def centers(self) -> tuple[str, ...]:
        return tuple(sorted(self.patients["center"].unique()))

    @property
    def patient_ids(self) -> tuple[str, ...]:
        return tuple(self.patients["patient_id"])

    @property
    def lineages(self) -> tuple[str, ...]:
        if self.recovery is None:
            return ()
        return tuple(pd.unique(self.recovery["lineage"]))

    @property
    def center_index(self) -> np.ndarray:
        """Index of each patient's center in `centers`."""
        lookup = {c: i for i, c in enumerate(self.centers)}
        return self.patients["center"].map(lookup).to_numpy(dtype=np.int64)

    def covariate_matrix(self) -> np.ndarray:
        """Patients x covariates matrix (float64); zero columns when no covariates."""
        if not self.covariates:
            return np.zeros((len(self.patients), 0))
        return self.patients[list(self.covariates)].to_numpy(dtype=np.float64)

    @property
    def has_ordinal_response(self) -> bool:
        """Every patient has a CR/PR/NR response (not only a 0/1 responder)."""
        return "response" in self.patients.columns and bool(self.patients["response"].notna().all())

    @property
    def has_responder(self) -> bool:
        """A 0/1 outcome (`responder`) is there for every patient."""
        return "responder" in self.patients.columns

    @property
    def interval_censored(self) -> bool:
        """Some recovery is known only to lie in an interval (day_lower < day_upper)."""
        if self.recovery is None:
            return False
        return bool((self.recovery["day_lower"] < self.recovery["day_upper"]).any())

    def coords(self) -> dict[str, list[str]]:
        """Named coords for every dimension the data defines."""
        out = {
            dims.CENTER: list(self.centers),
            dims.PATIENT: list(self.patient_ids),
            dims.COVARIATE: list(self.covariates),
        }
        if self.recovery is not None:
            out[dims.LINEAGE] = list(self.lineages)
        return out

    def hashes(self) -> dict[str, str]:
        return {s.role: s.sha256 for s in self.sources}
