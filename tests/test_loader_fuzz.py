"""Property-based test of the loader: any table built from the contract's columns either loads into a
`TrialData` that keeps the contract's promises, or raises `DataError`; never another exception
(warnings are errors under pytest, so none may leak either). Deterministic: derandomized, no database."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marrow.data import Needs, TrialData, load_frames
from marrow.data.load import MAX_ABS_COVARIATE, MAX_DAYS, RESPONSE_CODES, parse_csv_bytes
from marrow.errors import DataError, ProblemList
from marrow.spec import ModelSpec

FUZZ = settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

IDS = ["P1", "P2", "P3", "p1", " P2 "]
SPECIAL = [
    "0",
    "1",
    "1.0",
    "yes",
    "No",
    "TRUE",
    "f",
    "CR",
    "pr",
    "nr",
    "SD",
    "inf",
    "-inf",
    "Infinity",
    "nan",
    "NaN",
    "1e308",
    "-1e308",
    "1e400",
    "1000000",
    "1000001",
    "-1",
    "0.5",
    "1,5",
    "12",
    "١٢",
    "0x10",
    "1_0",
    "NA",
]
CELL = st.one_of(
    st.none(),
    st.sampled_from(["", "  "]),
    st.sampled_from(SPECIAL),
    st.sampled_from(IDS),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=5),
)
PATIENT_COLUMNS = [
    "patient_id",
    "center",
    "response",
    "responder",
    "followup_days",
    "died",
    "adverse_event",
    "age",
    "x",
]
RECOVERY_COLUMNS = ["patient_id", "lineage", "day", "recovered", "day_lower", "day_upper"]
OUTCOMES: Counter = Counter()  # how the examples ended, to see that the fuzz reaches the whole loader
NEEDS = [
    Needs(),
    Needs(response=True),
    Needs(ordinal=True),
    Needs(recovery=True),
    Needs(recovery=True, followup=True),
    Needs(followup=True, died=True, covariates=("age",)),
    Needs(adverse_event=True, covariates=("age", "x")),
    Needs(response=True, covariates=("center",)),
] + [ModelSpec(m).needs() for m in ("response", "recovery", "survival", "safety")]


OFTEN, HALF, RARELY = st.sampled_from([True] * 9 + [False]), st.booleans(), st.sampled_from([False] * 7 + [True])
RARELY_COLUMN = st.sampled_from([False] * 3 + [True])  # a column with arbitrary cells
REQUIRED_OFTEN = ("patient_id", "center", "lineage", "day", "recovered")


def plausible(name: str, row: int, recovery: bool, seed: int) -> str:
    """A valid cell for `name` in data row `row` (recovery rows: patient P0, one lineage per row)."""
    if name == "patient_id":
        return "P0" if recovery else f"P{row}"
    if name == "lineage":
        return f"lineage {row}"
    if recovery and row % 3 == 0:  # an interval-censored recovery
        return {"day_lower": "2", "day_upper": "30", "recovered": "1", "day": "30"}.get(name, "1")
    choices = {
        "center": ("A", "B", "Zürich"),
        "response": ("CR", "PR", "NR", "cr"),
        "age": ("30", "41.5", "yes", "no"),
        "followup_days": ("365", "400.5"),
        "day": ("3", "30"),
        "day_lower": ("",),
        "day_upper": ("",),
    }.get(name, ("0", "1", "1", "yes"))
    return choices[(seed + row) % len(choices)]


@st.composite
def table(draw, names: list[str], max_rows: int, recovery: bool = False) -> pd.DataFrame:
    """A frame of some of `names`: cells plausible for their column, a few arbitrary
    (few draws: generation is the cost)."""
    rows = draw(st.integers(1, max_rows))
    chosen = [n for n in names if draw(OFTEN if n in REQUIRED_OFTEN else HALF)]
    if ("day_lower" in chosen) != ("day_upper" in chosen) and not draw(RARELY):  # the interval columns come as a pair
        chosen = [n for n in chosen if n not in ("day_lower", "day_upper")]
    cells = {}
    for name in chosen:
        seed = draw(st.integers(0, 11))
        column = [plausible(name, row, recovery, seed) for row in range(rows)]
        for row in draw(st.sets(st.integers(0, rows - 1), max_size=2)) if draw(RARELY_COLUMN) else ():
            column[row] = draw(CELL)
        cells[name] = column
    return pd.DataFrame(cells, index=pd.RangeIndex(rows), dtype=object)


def assert_keeps_the_contract(data: TrialData, needs: Needs) -> None:
    p = data.patients
    ids = list(p["patient_id"])
    assert len(ids) == len(set(ids)) and all(isinstance(i, str) and i for i in ids)
    assert all(isinstance(c, str) and c for c in p["center"])
    for name in ("responder", "died", "adverse_event"):
        if name in p.columns:
            assert p[name].dtype == np.int64 and set(p[name]) <= {0, 1}
    if needs.response or needs.ordinal:
        assert "responder" in p.columns
    if "response" in p.columns:
        assert set(p["response"]) <= set(RESPONSE_CODES)
    if "followup_days" in p.columns:
        assert ((p["followup_days"] > 0) & (p["followup_days"] <= MAX_DAYS)).all()
    x = data.covariate_matrix()
    assert (
        x.shape == (len(p), len(needs.covariates)) and np.isfinite(x).all() and (np.abs(x) <= MAX_ABS_COVARIATE).all()
    )
    assert len(data.center_index) == len(p) and data.coords()
    assert isinstance(data.has_ordinal_response, bool)  # computable on any valid table
    if data.recovery is not None:
        r = data.recovery
        assert r["recovered"].dtype == np.int64 and set(r["recovered"]) <= {0, 1}
        assert (r["day"] == r["day_upper"]).all() and (r["day_lower"] <= r["day_upper"]).all()
        assert ((r["day_upper"] > 0) & (r["day_upper"] <= MAX_DAYS) & (r["day_lower"] >= 0)).all()
        assert (r.loc[r["day_lower"] < r["day_upper"], "recovered"] == 1).all()
        assert set(r["patient_id"]) <= set(ids)
        assert data.interval_censored == bool((r["day_lower"] < r["day_upper"]).any())


@FUZZ
@given(
    patients=table(PATIENT_COLUMNS, 5),
    recovery=st.none() | table(RECOVERY_COLUMNS, 6, recovery=True),
    needs=st.sampled_from(NEEDS),
)
def _fuzz_tables(patients, recovery, needs):
    try:
        data = load_frames(patients, recovery, needs)
    except DataError as error:
        assert error.problems and all(p.message and p.file in ("patients", "recovery") for p in error.problems)
        OUTCOMES["DataError"] += 1
        return
    assert_keeps_the_contract(data, needs)
    OUTCOMES["loaded" if recovery is None else "loaded with recovery"] += 1


def test_any_table_loads_or_raises_data_error():
    OUTCOMES.clear()
    _fuzz_tables()
    # Guards the strategies: a fuzz whose tables all failed early would prove nothing about the rest.
    assert OUTCOMES["loaded"] >= 50 and OUTCOMES["loaded with recovery"] >= 10 and OUTCOMES["DataError"] >= 200


FIELDS = st.sampled_from(PATIENT_COLUMNS + ["Center", "center", ""]) | st.sampled_from(SPECIAL) | st.text(max_size=4)


@st.composite
def csv_bytes(draw) -> bytes:
    sep = draw(st.sampled_from([",", ",", ";"]))
    header = draw(st.lists(FIELDS, min_size=1, max_size=5))
    lines = [sep.join(header)] + [
        sep.join(draw(st.lists(FIELDS, min_size=0, max_size=6))) for _ in range(draw(st.integers(0, 4)))
    ]
    text = "\n".join(lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    return text.encode(encoding, errors="replace") + draw(st.sampled_from([b"", b"\n", b"\xff", b"\x00"]))


@settings(FUZZ, max_examples=100)
@given(data=csv_bytes(), needs=st.sampled_from(NEEDS[:3]))
def test_any_csv_file_reads_or_reports_problems(data, needs):
    problems, notes = ProblemList(), []
    frame = parse_csv_bytes(data, "f.csv", problems, notes)
    if frame is None:
        assert problems.problems
        return
    try:
        load_frames(frame, None, needs, patients_name="f.csv", problems=problems, notes=notes)
    except DataError as error:
        assert all(p.file == "f.csv" for p in error.problems)
