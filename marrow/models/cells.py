"""Identical rows aggregated into weighted cells: the one way every model makes its likelihood cost
follow the number of distinct values rather than of patients (exact: identical rows have identical
terms, so a cell's term times its number of rows is their sum)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cells:
    """The distinct rows of a table, in lexicographic order of their columns.

    `first`: one representative row of each cell (its first occurrence); `of_row`: the cell of every
    row; `count`: the number of rows in each cell (int64).
    """

    first: np.ndarray
    of_row: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.count)


def cells(table: np.ndarray) -> Cells:
    """Cells of the rows of the 2-D array `table` (columns side by side, e.g. `np.column_stack`;
    integer codes and float values alike, compared exactly). A table with no columns is one cell."""
    table = np.asarray(table)
    if table.shape[1] == 0:
        n = len(table)
        return Cells(np.zeros(1, np.int64), np.zeros(n, np.int64), np.array([n], dtype=np.int64))
    _, first, of_row, count = np.unique(table, axis=0, return_index=True, return_inverse=True, return_counts=True)
    return Cells(first, of_row.reshape(-1), count)
