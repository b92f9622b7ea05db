"""A study's results on disk: blocks of records, one Parquet file each, written atomically.

A block is the records of a run of consecutive replicates of one scenario. Its file name says which
(`s003-r000100-000149.parquet`: scenario index 3, replicates 100 to 149) and the file holds, besides
the records, each task's scenario, replicate and seed, and the study's fingerprint in the Parquet
metadata. Resuming reads every block, checks it was written for the same fingerprint and seeds, and
runs only the tasks no block holds; extending a study (more replicates) makes new blocks the same way.

Records keep only values that are not None: a record that lacks a column (a failed task has no
estimates) reads back the same whichever block it was written in, so the final table depends on the
records only, never on how they were split into blocks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marrow.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from marrow.simulate.engine import Task

ID_COLUMNS = ("scenario", "scenario_index", "replicate", "seed")
FINGERPRINT_KEY = b"marrow.fingerprint"
SECONDS_KEY = b"marrow.seconds"
SUFFIX = ".parquet"
TEMP_SUFFIX = ".tmp"

Record = dict[str, Any]


@dataclass(frozen=True)
class Block:
    """Consecutive tasks of one scenario, run as one unit (one Dask task, one file)."""

    tasks: tuple[Task, ...]

    @property
    def name(self) -> str:
        first, last = self.tasks[0], self.tasks[-1]
        return f"s{first.scenario_index:03d}-r{first.replicate:06d}-{last.replicate:06d}"


def plan_blocks(tasks: Sequence[Task], block_size: int, align: int = 1) -> list[Block]:
    """Split `tasks` into blocks of at most `block_size` tasks: per scenario, in replicate order, and
    breaking wherever the replicates are not consecutive (so a file name's range is its contents) and
    before every replicate that is a multiple of `align` (a batch of batched refits in one block)."""
    if block_size < 1:
        raise UsageError(f"block_size must be at least 1, got {block_size}")
    ordered = sorted(tasks, key=lambda t: (t.scenario_index, t.replicate))
    blocks: list[Block] = []
    current: list[Task] = []
    for task in ordered:
        if current and (
            len(current) == block_size
            or task.scenario_index != current[-1].scenario_index
            or task.replicate != current[-1].replicate + 1
            or (align > 1 and task.replicate % align == 0)
        ):
            blocks.append(Block(tuple(current)))
            current = []
        current.append(task)
    if current:
        blocks.append(Block(tuple(current)))
    return blocks


def check_tasks(tasks: Sequence[Task]) -> None:
    """Refuse duplicate (scenario, replicate) pairs and a scenario index with two names."""
    seen: set[tuple[int, int]] = set()
    names: dict[int, str] = {}
    for task in tasks:
        key = (task.scenario_index, task.replicate)
        if key in seen:
            raise UsageError(f"task {task.scenario!r} replicate {task.replicate} is listed twice")
        seen.add(key)
        if names.setdefault(task.scenario_index, task.scenario) != task.scenario:
            raise UsageError(
                f"scenario index {task.scenario_index} names both {names[task.scenario_index]!r} and {task.scenario!r}"
            )


def to_table(records: Sequence[Record], fingerprint: str, seconds: float) -> pa.Table:
    """One block's records (identity columns first) as an Arrow table carrying the fingerprint."""
    import pyarrow as pa

    columns: dict[str, None] = dict.fromkeys(ID_COLUMNS)
    for record in records:
        columns.update(dict.fromkeys(record))
    table = pa.table({name: pa.array([r.get(name) for r in records]) for name in columns})
    metadata = {FINGERPRINT_KEY: fingerprint.encode(), SECONDS_KEY: repr(float(seconds)).encode()}
    return table.replace_schema_metadata(metadata)


def from_table(table: pa.Table) -> list[Record]:
    """The records of a block, each without its None values (see the module's docstring)."""
    return [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]


def write_block(folder: Path, block: Block, table: pa.Table) -> Path:
    """Write `table` as `folder/<block name>.parquet`, atomically: a temporary file in the same
    folder, then `os.replace`, so a reader (or an interrupted run) never sees half a file."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{block.name}{SUFFIX}"
    temp = folder / f".{block.name}.{os.getpid()}{TEMP_SUFFIX}"
    try:
        pq.write_table(table, temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def block_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def remove_blocks(folder: Path) -> None:
    """Delete the block files and leftover temporary files of `folder` (only those: `force`)."""
    for path in [*block_files(folder), *folder.glob(f".*{TEMP_SUFFIX}")] if folder.is_dir() else []:
        path.unlink(missing_ok=True)


def read_done(folder: Path, tasks: Iterable[Task], fingerprint: str) -> dict[tuple[int, int], Record]:
    """The records already on disk for `tasks`, keyed by (scenario index, replicate).

    Raises `UsageError` when a block was written for another fingerprint, or holds one of `tasks`
    with another seed or scenario name (the study changed: start again with `force`)."""
    import pyarrow.parquet as pq

    wanted = {(t.scenario_index, t.replicate): t for t in tasks}
    done: dict[tuple[int, int], Record] = {}
    for path in block_files(folder):
        try:
            table = pq.read_table(path)
        except Exception as exc:  # a corrupt file cannot be reused; say which
            raise UsageError(
                f"{path} is not a readable block ({type(exc).__name__}: {exc}); delete it or use force"
            ) from exc
        found = (table.schema.metadata or {}).get(FINGERPRINT_KEY, b"").decode()
        if found != fingerprint:
            raise UsageError(
                f"{path} was written for another study (fingerprint {found!r}, this study {fingerprint!r}); "
                "use another folder, or force to start again"
            )
        for record in from_table(table):
            key = (int(record["scenario_index"]), int(record["replicate"]))
            task = wanted.get(key)
            if task is None:
                continue  # a replicate this run does not ask for (e.g. a study run with fewer)
            if int(record["seed"]) != task.seed or record["scenario"] != task.scenario:
                raise UsageError(
                    f"{path} holds {record['scenario']!r} replicate {key[1]} with seed {record['seed']}, but this "
                    f"study gives it {task.scenario!r} and seed {task.seed}; use force to start again"
                )
            done[key] = record
    return done


def to_frame(records: Iterable[Record]) -> pd.DataFrame:
    """The study table: one row per record, sorted by scenario index and replicate; identity columns,
    then the records' columns in order of first appearance, `error` (when any task failed) last."""
    import pandas as pd

    rows = sorted(records, key=lambda r: (r["scenario_index"], r["replicate"]))
    columns: dict[str, None] = dict.fromkeys(ID_COLUMNS)
    for row in rows:
        columns.update(dict.fromkeys(row))
    if "error" in columns:
        columns.pop("error")
        columns["error"] = None
    return pd.DataFrame(rows, columns=list(columns)).reset_index(drop=True)
