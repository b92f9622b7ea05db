"""Reconstruct a SYNTHETIC multicenter phase II trial from published aggregates.

The rows written here are NOT patient records. They are a seeded,
deterministic reconstruction whose aggregates match those published in
Pang et al. (2017), Stem Cells Transl Med: bone-marrow mesenchymal stromal
cells for refractory aplastic anemia, 74 patients in 7 centers.

Matched exactly (and asserted in ``tests/test_dataset.py``):

* 74 patients; best response 5 CR, 16 PR, 53 NR (21 responders, 28.4%).
* 65 alive, 9 dead; median follow-up 517 days (about 17 months);
  Kaplan-Meier overall survival at day 365 = 65/74.
* 7 patients with an adverse event (transient headache/fever).
* Recovery among the 21 responders, per lineage: median (range) 19 (11-29)
  leukocytic, 17 (12-25) erythrocytic, 31 (26-84) megakaryocytic days.
  Both the Kaplan-Meier median and the plain median of observed recovery
  days equal the published value.

Choices made where the paper is silent:

* Centers are anonymised "Center A".."Center G" with unequal sizes
  20/15/12/10/8/5/4; responders per center 7/4/3/3/2/1/1 and CRs spread
  over four centers (2/1/0/1/1/0/0). Patient ids follow a random
  enrolment order across centers.
* Recovery counts among the 21 responders: leukocytic 19, erythrocytic 17,
  megakaryocytic 15. CRs recover every lineage; non-recovery is nested
  among PRs (a PR missing leukocytic recovery also misses the other two,
  and one missing erythrocytic also misses megakaryocytic). A lineage not
  recovered is right-censored at the patient's follow-up; NRs are
  censored on all lineages.
* Recovery days: minimum and maximum at the published range ends; the
  order statistics that define both medians are tied at the published
  median; all other days are uniform integers strictly inside
  (min, median) or (median, max), assigned to patients at random.
* Deaths: 8 NR + 1 PR, all before day 365 (uniform on days 30-364 for NRs,
  120-364 for the PR, i.e. after the latest possible recovery day).
  Alive patients are followed 366-1095 days, arranged so the 37th and 38th
  smallest follow-up times are both 517.
* Adverse events are assigned to 7 patients at random.
* Covariates (not published per patient): prior_atg = 1 in 15/21
  responders and 22/53 NRs; active_infection = 1 in 2/21 responders and
  16/53 NRs; assigned at random within each response group.
* Age in whole years, triangular(14, 25, 65) rounded down; not matched
  to any published figure.

The same trial is also written as CDISC ADaM datasets in SAS transport (XPORT
v5) files: ``adsl.xpt`` (one record per subject: USUBJID = patient_id,
SITEID = center, AGE, the flags ITTFL/EFFFL/SAFFL = Y for everyone, TRAEFL
= adverse_event, PRATGFL = prior_atg, INFFL = active_infection as Y/N),
``adrs.xpt`` (PARAMCD BESTRSP, AVALC = response, ANL01FL = Y) and
``adtte.xpt`` (PARAMCD OS = followup_days with CNSR = 1 - died, and
TTRLEUK/TTRERY/TTRMEG = each lineage's day with CNSR = 1 - recovered; AVALU
DAYS). Their header dates are fixed, so they too are reproduced byte for byte.

Run ``python -m marrow.datasets.reconstruct [--out DIR]`` to regenerate the
bundled CSVs and ADaM files byte for byte.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from marrow.datasets import ADRS_XPT, ADSL_XPT, ADTTE_XPT, PATIENTS_CSV, RECOVERY_CSV

SEED = 20170601
PATIENT_STREAM = 0
RECOVERY_STREAM = 1

CENTERS = tuple(f"Center {letter}" for letter in "ABCDEFG")
CENTER_SIZES = (20, 15, 12, 10, 8, 5, 4)
CENTER_CR = (2, 1, 0, 1, 1, 0, 0)
CENTER_PR = (5, 3, 3, 2, 1, 1, 1)

DEATHS = {"CR": 0, "PR": 1, "NR": 8}
NR_MIN_DEATH_DAY = 30
RESPONDER_MIN_DEATH_DAY = 120
LANDMARK_DAY = 365
MEDIAN_FOLLOWUP_DAYS = 517
MAX_FOLLOWUP_DAYS = 1095
N_ADVERSE_EVENTS = 7

COVARIATE_COUNTS = {
    "prior_atg": {"responder": 15, "NR": 22},
    "active_infection": {"responder": 2, "NR": 16},
}
AGE_MIN, AGE_MODE, AGE_MAX = 14, 25, 65


@dataclass(frozen=True)
class Lineage:
    """Published recovery summary for one blood lineage among responders."""

    name: str
    n_recovered: int
    median: int
    low: int
    high: int


LINEAGES = (
    Lineage("leukocytic", 19, 19, 11, 29),
    Lineage("erythrocytic", 17, 17, 12, 25),
    Lineage("megakaryocytic", 15, 31, 26, 84),
)

PATIENT_COLUMNS = [
    "patient_id",
    "center",
    "response",
    "followup_days",
    "died",
    "adverse_event",
    "prior_atg",
    "active_infection",
    "age",
]
RECOVERY_COLUMNS = ["patient_id", "lineage", "day", "recovered"]


def _rng(stream: int) -> np.random.Generator:
    """Independent reproducible generator number ``stream`` derived from SEED."""
    return np.random.default_rng(SEED).spawn(stream + 1)[stream]


def _roster(rng: np.random.Generator) -> pd.DataFrame:
    """Patient ids, centers and best responses in a random enrolment order."""
    centers: list[str] = []
    responses: list[str] = []
    for name, size, n_cr, n_pr in zip(CENTERS, CENTER_SIZES, CENTER_CR, CENTER_PR, strict=True):
        centers += [name] * size
        responses += ["CR"] * n_cr + ["PR"] * n_pr + ["NR"] * (size - n_cr - n_pr)
    order = rng.permutation(len(centers))
    return pd.DataFrame(
        {
            "patient_id": [f"P{i:03d}" for i in range(1, len(centers) + 1)],
            "center": np.array(centers)[order],
            "response": np.array(responses)[order],
        }
    )


def _flags(rng: np.random.Generator, groups: pd.Series, counts: Mapping[str, int]) -> np.ndarray:
    """0/1 array with exactly ``counts[g]`` ones at random rows of each group ``g``."""
    flags = np.zeros(len(groups), dtype=np.int64)
    for group, k in counts.items():
        rows = np.flatnonzero(groups.to_numpy() == group)
        flags[rng.choice(rows, size=k, replace=False)] = 1
    return flags


def _death_days(rng: np.random.Generator, responses: pd.Series) -> np.ndarray:
    """Death day (< LANDMARK_DAY) for each dead patient, by response."""
    lows = np.where(responses == "NR", NR_MIN_DEATH_DAY, RESPONDER_MIN_DEATH_DAY)
    return rng.integers(lows, LANDMARK_DAY, endpoint=False)


def _alive_followup(rng: np.random.Generator, n_alive: int, n_total: int) -> np.ndarray:
    """Follow-up days of survivors so that the median over all patients is exact.

    Every death precedes every survivor's follow-up, so the middle order
    statistic(s) of all ``n_total`` patients fall among the survivors.
    """
    middle = sorted({(n_total - 1) // 2, n_total // 2})
    n_dead = n_total - n_alive
    n_below = middle[0] - n_dead
    n_above = n_alive - n_below - len(middle)
    assert n_below >= 0 and n_above >= 0
    below = rng.integers(LANDMARK_DAY + 1, MEDIAN_FOLLOWUP_DAYS, size=n_below)
    above = rng.integers(MEDIAN_FOLLOWUP_DAYS + 1, MAX_FOLLOWUP_DAYS, size=n_above, endpoint=True)
    days = np.concatenate([below, np.full(len(middle), MEDIAN_FOLLOWUP_DAYS), above])
    return rng.permutation(days)


def _followup_days(rng: np.random.Generator, responses: pd.Series, died: np.ndarray) -> np.ndarray:
    """Follow-up (death or last contact) in days for every patient."""
    days = np.zeros(len(died), dtype=np.int64)
    dead = died == 1
    days[dead] = _death_days(rng, responses[dead])
    days[~dead] = _alive_followup(rng, int((~dead).sum()), len(died))
    return days


def _ages(rng: np.random.Generator, n: int) -> np.ndarray:
    """Whole-year ages from a bounded, right-skewed triangular distribution."""
    return np.floor(rng.triangular(AGE_MIN, AGE_MODE, AGE_MAX, size=n)).astype(np.int64)


def build_patients() -> pd.DataFrame:
    """One row per synthetic patient, columns PATIENT_COLUMNS, sorted by id."""
    rng = _rng(PATIENT_STREAM)
    patients = _roster(rng)
    responses = patients["response"]
    arm = responses.where(responses == "NR", "responder")
    patients["died"] = _flags(rng, responses, DEATHS)
    patients["followup_days"] = _followup_days(rng, responses, patients["died"].to_numpy())
    everyone = pd.Series("all", index=patients.index)
    patients["adverse_event"] = _flags(rng, everyone, {"all": N_ADVERSE_EVENTS})
    for covariate, counts in COVARIATE_COUNTS.items():
        patients[covariate] = _flags(rng, arm, counts)
    patients["age"] = _ages(rng, len(patients))
    return patients[PATIENT_COLUMNS].sort_values("patient_id", ignore_index=True)


def _pinned_ranks(n_recovered: int, n_at_risk: int) -> tuple[int, int]:
    """0-based first/last ranks of recovery days that must equal the median.

    The plain median uses the middle rank(s) of the ``n_recovered`` days;
    the Kaplan-Meier median (no censoring before the last recovery) is the
    first day on which at least ceil(n_at_risk / 2) patients have recovered.
    """
    km_rank = math.ceil(n_at_risk / 2) - 1
    assert km_rank < n_recovered, "Kaplan-Meier median not reached"
    ranks = ((n_recovered - 1) // 2, n_recovered // 2, km_rank)
    return min(ranks), max(ranks)


def _recovery_days(rng: np.random.Generator, lineage: Lineage, n_at_risk: int) -> np.ndarray:
    """Sorted recovery days reproducing the lineage's range and both medians."""
    first, last = _pinned_ranks(lineage.n_recovered, n_at_risk)
    n_above = lineage.n_recovered - last - 2
    below = rng.integers(lineage.low + 1, lineage.median, size=first - 1)
    above = rng.integers(lineage.median + 1, lineage.high, size=n_above)
    return np.concatenate(
        [
            [lineage.low],
            np.sort(below),
            np.full(last - first + 1, lineage.median),
            np.sort(above),
            [lineage.high],
        ]
    ).astype(np.int64)


def _lineage_rows(
    rng: np.random.Generator, patients: pd.DataFrame, lineage: Lineage, pr_order: Sequence[int]
) -> pd.DataFrame:
    """Recovery rows of one lineage; unrecovered rows are censored at follow-up."""
    responders = np.flatnonzero(patients["response"].to_numpy() != "NR")
    n_missed = len(responders) - lineage.n_recovered
    assert 0 <= n_missed <= len(pr_order)
    recovering = np.setdiff1d(responders, pr_order[:n_missed])
    day = patients["followup_days"].to_numpy(dtype=np.int64, copy=True)
    recovered = np.zeros(len(patients), dtype=np.int64)
    day[recovering] = rng.permutation(_recovery_days(rng, lineage, len(responders)))
    recovered[recovering] = 1
    return pd.DataFrame(
        {
            "patient_id": patients["patient_id"],
            "lineage": lineage.name,
            "day": day,
            "recovered": recovered,
        }
    )


def build_recovery(patients: pd.DataFrame) -> pd.DataFrame:
    """Long format recovery data: one row per patient and lineage, sorted."""
    rng = _rng(RECOVERY_STREAM)
    assert patients["followup_days"][patients["response"] != "NR"].min() > max(lineage.high for lineage in LINEAGES), (
        "responders must be followed beyond every recovery day"
    )
    pr_order = rng.permutation(np.flatnonzero(patients["response"].to_numpy() == "PR"))
    recovery = pd.concat(
        [_lineage_rows(rng, patients, lineage, pr_order) for lineage in LINEAGES],
        ignore_index=True,
    )
    lineage_rank = {lineage.name: i for i, lineage in enumerate(LINEAGES)}
    recovery = recovery.sort_values(
        ["patient_id", "lineage"],
        key=lambda col: col.map(lineage_rank) if col.name == "lineage" else col,
        ignore_index=True,
    )
    return recovery[RECOVERY_COLUMNS]


STUDYID = "MARROW-SYN"
ADAM_LINEAGES = {  # lineage -> (PARAMCD, PARAM) in ADTTE; the default ADaM mapping uses the same codes
    "leukocytic": ("TTRLEUK", "Time to Leukocytic Recovery (Days)"),
    "erythrocytic": ("TTRERY", "Time to Erythrocytic Recovery (Days)"),
    "megakaryocytic": ("TTRMEG", "Time to Megakaryocytic Recovery (Days)"),
}
RESPONSE_AVAL = {"CR": 1, "PR": 2, "NR": 3}
XPORT_DATE = b"01JUN17:00:00:00"  # fixed header timestamp (ddMMMyy:hh:mm:ss): reproducible bytes
_XPORT_STAMP = re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d")
_XPORT_DATA = b"HEADER RECORD*******OBS"


@dataclass(frozen=True)
class AdamDataset:
    """One ADaM dataset to write: its records, variable labels and dataset label."""

    name: str
    label: str
    frame: pd.DataFrame
    labels: dict[str, str]


def _yn(flags: pd.Series) -> pd.Series:
    return flags.map({1: "Y", 0: "N"})


def build_adam(patients: pd.DataFrame, recovery: pd.DataFrame) -> tuple[AdamDataset, ...]:
    """ADSL, ADRS and ADTTE holding exactly the patients and recovery tables' information."""
    ids = patients["patient_id"]
    everyone = pd.Series("Y", index=patients.index)
    adsl = pd.DataFrame(
        {
            "STUDYID": STUDYID,
            "USUBJID": ids,
            "SUBJID": ids,
            "SITEID": patients["center"],
            "AGE": patients["age"].astype("float64"),
            "AGEU": "YEARS",
            "ITTFL": everyone,
            "EFFFL": everyone,
            "SAFFL": everyone,
            "TRAEFL": _yn(patients["adverse_event"]),
            "PRATGFL": _yn(patients["prior_atg"]),
            "INFFL": _yn(patients["active_infection"]),
        }
    )
    adsl_labels = {
        "STUDYID": "Study Identifier",
        "USUBJID": "Unique Subject Identifier",
        "SUBJID": "Subject Identifier for the Study",
        "SITEID": "Study Site Identifier",
        "AGE": "Age",
        "AGEU": "Age Units",
        "ITTFL": "Intent-To-Treat Population Flag",
        "EFFFL": "Efficacy Population Flag",
        "SAFFL": "Safety Population Flag",
        "TRAEFL": "Any Treatment-Related Adverse Event Flag",
        "PRATGFL": "Prior ATG Therapy Flag",
        "INFFL": "Active Infection at Baseline Flag",
    }
    adrs = pd.DataFrame(
        {
            "STUDYID": STUDYID,
            "USUBJID": ids,
            "PARAMCD": "BESTRSP",
            "PARAM": "Best Overall Response",
            "AVALC": patients["response"],
            "AVAL": patients["response"].map(RESPONSE_AVAL).astype("float64"),
            "ANL01FL": "Y",
        }
    )
    adrs_labels = {
        "STUDYID": "Study Identifier",
        "USUBJID": "Unique Subject Identifier",
        "PARAMCD": "Parameter Code",
        "PARAM": "Parameter",
        "AVALC": "Analysis Value (C)",
        "AVAL": "Analysis Value (1=CR, 2=PR, 3=NR)",
        "ANL01FL": "Analysis Flag 01",
    }
    survival = pd.DataFrame(
        {
            "USUBJID": ids,
            "PARAMCD": "OS",
            "PARAM": "Overall Survival (Days)",
            "AVAL": patients["followup_days"],
            "CNSR": 1 - patients["died"],
            "EVNTDESC": patients["died"].map({1: "DEATH", 0: "ALIVE AT LAST CONTACT"}),
            "order": 0,
        }
    )
    lineage_rows = recovery.assign(
        PARAMCD=recovery["lineage"].map(lambda name: ADAM_LINEAGES[name][0]),
        PARAM=recovery["lineage"].map(lambda name: ADAM_LINEAGES[name][1]),
        AVAL=recovery["day"],
        CNSR=1 - recovery["recovered"],
        EVNTDESC=recovery["recovered"].map({1: "RECOVERED", 0: "NOT RECOVERED AT LAST ASSESSMENT"}),
        order=recovery["lineage"].map({name: i + 1 for i, name in enumerate(ADAM_LINEAGES)}),
    ).rename(columns={"patient_id": "USUBJID"})
    adtte = pd.concat([survival, lineage_rows[survival.columns]], ignore_index=True)
    adtte = adtte.sort_values(["USUBJID", "order"], kind="stable", ignore_index=True).drop(columns="order")
    adtte.insert(0, "STUDYID", STUDYID)
    adtte["AVAL"] = adtte["AVAL"].astype("float64")
    adtte["CNSR"] = adtte["CNSR"].astype("float64")
    adtte.insert(adtte.columns.get_loc("AVAL") + 1, "AVALU", "DAYS")
    adtte_labels = {
        "STUDYID": "Study Identifier",
        "USUBJID": "Unique Subject Identifier",
        "PARAMCD": "Parameter Code",
        "PARAM": "Parameter",
        "AVAL": "Analysis Value",
        "AVALU": "Analysis Value Unit",
        "CNSR": "Censor",
        "EVNTDESC": "Event or Censoring Description",
    }
    return (
        AdamDataset("ADSL", "Subject-Level Analysis Dataset", adsl, adsl_labels),
        AdamDataset("ADRS", "Response Analysis Dataset", adrs, adrs_labels),
        AdamDataset("ADTTE", "Time-to-Event Analysis Dataset", adtte[list(adtte_labels)], adtte_labels),
    )


def write_xport(dataset: AdamDataset, path: Path, version: int = 5) -> None:
    """Write a SAS transport file with a fixed header timestamp, atomically."""
    import pyreadstat

    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        pyreadstat.write_xport(
            dataset.frame,
            tmp,
            file_label=dataset.label,
            column_labels=dataset.labels,
            table_name=dataset.name,
            file_format_version=version,
        )
        data = Path(tmp).read_bytes()
        cut = data.find(_XPORT_DATA)
        header = _XPORT_STAMP.sub(XPORT_DATE, data[:cut])
        Path(tmp).write_bytes(header + data[cut:])
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _to_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` in the canonical, byte-stable CSV layout."""
    frame.to_csv(path, index=False, lineterminator="\n")


def write(out_dir: Path) -> None:
    """Regenerate patients.csv, recovery.csv and the ADaM files adsl.xpt, adrs.xpt, adtte.xpt in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    patients = build_patients()
    recovery = build_recovery(patients)
    _to_csv(patients, out_dir / PATIENTS_CSV.name)
    _to_csv(recovery, out_dir / RECOVERY_CSV.name)
    names = {"ADSL": ADSL_XPT.name, "ADRS": ADRS_XPT.name, "ADTTE": ADTTE_XPT.name}
    for dataset in build_adam(patients, recovery):
        write_xport(dataset, out_dir / names[dataset.name])


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PATIENTS_CSV.parent, help="output directory (default: %(default)s)")
    write(parser.parse_args(argv).out)


if __name__ == "__main__":
    main()
