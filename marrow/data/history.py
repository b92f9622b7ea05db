"""The history table of `marrow priors map`: one row per historical study (study, n, responders).

Read and validated like the trial's tables (`marrow.data.load.read_table`), every problem at once.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from marrow.data.load import data_rows, read_table
from marrow.errors import ProblemList

HISTORY_COLUMNS = ("study", "n", "responders")


def read_history(path: Path | str) -> pd.DataFrame:
    """Read and validate a history table (study, n, responders); every problem reported at once.

    Returns columns study (text), n (int), responders (int), one row per study.
    """
    path = Path(path)
    name = str(path)
    problems = ProblemList()
    table = read_table(path, problems)
    problems.raise_if_any()
    assert table is not None  # None only with a problem, raised above
    absent = [c for c in HISTORY_COLUMNS if c not in table.columns]
    for column in absent:
        problems.add(name, "required column is missing", column, expected="columns study, n, responders")
    problems.raise_if_any()

    study = table["study"].astype("string").str.strip()
    empty = study.isna() | (study == "")
    if empty.any():
        problems.add(name, "empty study names", "study", data_rows(empty), "a name for every study")
    dup = study.duplicated(keep=False) & ~empty
    if dup.any():
        problems.add(name, "duplicated study names", "study", data_rows(dup), "each study once")
    numbers = {}
    for column, lowest in (("n", 1), ("responders", 0)):
        raw = table[column]
        values = pd.to_numeric(raw, errors="coerce")
        missing = raw.isna()
        if missing.any():
            problems.add(name, "missing values", column, data_rows(missing), f"a whole number >= {lowest} in every row")
        bad = values.isna() & ~missing
        if bad.any():
            problems.add(name, "values are not numbers", column, data_rows(bad), f"a whole number >= {lowest}")
        not_whole = values.notna() & ((values % 1 != 0) | (values < lowest))
        if not_whole.any():
            problems.add(
                name,
                f"values are not whole numbers >= {lowest}",
                column,
                data_rows(not_whole),
                f"a whole number >= {lowest}",
            )
        numbers[column] = values
    n, responders = numbers["n"], numbers["responders"]
    over = n.notna() & responders.notna() & (responders > n)
    if over.any():
        problems.add(name, "more responders than patients", "responders", data_rows(over), "responders <= n")
    if len(table) < 2:
        problems.add(name, f"only {len(table)} study", expected="at least 2 historical studies (3 or more advised)")
    problems.raise_if_any()
    return pd.DataFrame({"study": study.astype(str), "n": n.astype("int64"), "responders": responders.astype("int64")})
