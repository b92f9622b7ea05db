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

    `patients` has one row per patient with normalised columns: `patient_id`, `center`,
    `responder` (0/1), `response` ("NR"/"PR"/"CR", or missing when only `responder` was given),
    and, where present, `followup_days`, `died`, `adverse_event` and the numeric covariates.
    `recovery` (or None) has `patient_id`, `lineage`, `day`, `recovered`.
    """

    patients: pd.DataFrame
    recovery: pd.DataFrame | None
    covariates: tuple[str, ...]
    sources: tuple[SourceFile, ...]
    synthetic: bool = False

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
        return bool(self.patients["response"].notna().all())

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
