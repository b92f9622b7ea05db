"""Run many independent replicate tasks and collect their small records.

The contract every study (simulate, sbc) relies on:
- a `Task` names its scenario and replicate and carries its own seed (`seed_for`), so results do not
  depend on the number of workers, the order of completion or the scheduler;
- `fn(task) -> dict` is a top-level function (importable by name on a Dask worker) returning a flat
  record of numbers and short strings, never draws;
- `run_tasks` returns one row per task, sorted by (scenario, replicate), whatever ran them.

This first version runs in process; the Dask, block and resume machinery replaces its body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Task:
    """One replicate: `scenario` (a name), `replicate` (0-based) and the seed derived for it."""

    scenario: str
    scenario_index: int
    replicate: int
    seed: int


def seed_for(study_seed: int, scenario_index: int, replicate: int) -> int:
    """The replicate's seed: a `numpy.random.SeedSequence` child of (study seed, scenario, replicate)."""
    sequence = np.random.SeedSequence([study_seed, scenario_index, replicate])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def tasks_for(study_seed: int, scenarios: Sequence[str], n_replicates: int) -> list[Task]:
    """Every (scenario, replicate) task of a study, with its seed."""
    return [
        Task(name, index, r, seed_for(study_seed, index, r))
        for index, name in enumerate(scenarios)
        for r in range(n_replicates)
    ]


def run_tasks(
    fn: Callable[[Task], dict[str, Any]],
    tasks: Sequence[Task],
    *,
    out: Path | None = None,
    block_size: int = 50,
    scheduler: str | None = None,
    n_workers: int | None = None,
    resume: bool = False,
    progress: bool = False,
):
    """Run `fn` on every task and return a pandas DataFrame, one row per task (columns `scenario`,
    `replicate`, `seed`, then the record's), sorted by scenario index and replicate."""
    import pandas as pd

    rows = [
        {"scenario": t.scenario, "scenario_index": t.scenario_index, "replicate": t.replicate, "seed": t.seed, **fn(t)}
        for t in tasks
    ]
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values(["scenario_index", "replicate"], kind="stable").reset_index(drop=True)
    return frame
