"""Run many independent replicate tasks and collect their small records.

The contract every study (simulate, sbc) relies on:
- a `Task` names its scenario and replicate and carries its own seed (`seed_for`), so results do not
  depend on the number of workers, the order of completion or the scheduler;
- `fn(task) -> dict` is a top-level function (importable by name on a Dask worker) returning a flat
  record of numbers and short strings, never draws; it keeps what it compiles in a module-level cache,
  so a long-lived worker process compiles once and refits for every later task;
- `run_tasks` returns one row per task, sorted by (scenario, replicate), whatever ran them.

Tasks run in blocks (one Dask task and one Parquet file per block of consecutive replicates,
`marrow.simulate.blocks`) where `marrow.simulate.cluster` says: in this process, on a local cluster or
on an existing one. A task that raises gives a row with an `error` column; the study goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from marrow.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from marrow.simulate.blocks import Block, Record

ERROR_LENGTH = 500  # characters of an exception's message kept in a record


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


def tasks_for(study_seed: int, scenarios: Sequence[str], n_replicates: int, first: int = 0) -> list[Task]:
    """Every (scenario, replicate) task of a study, with its seed: replicates `first` to
    `first + n_replicates - 1` (a study extended by N more replicates asks for `first=` the old count)."""
    return [
        Task(name, index, r, seed_for(study_seed, index, r))
        for index, name in enumerate(scenarios)
        for r in range(first, first + n_replicates)
    ]


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run_tasks`: the finished blocks are on disk, the cluster is closed."""


def _plain(name: str, value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"record value {name!r} is a {type(value).__name__}: records hold numbers and short strings")


def _ids(task: Task) -> Record:
    return {
        "scenario": task.scenario,
        "scenario_index": task.scenario_index,
        "replicate": task.replicate,
        "seed": task.seed,
    }


def run_one(fn: Callable[[Task], Mapping[str, Any]], task: Task) -> Record:
    """`fn(task)` as a record with the task's identity; an exception becomes an `error` value."""
    ids = _ids(task)
    try:
        record = fn(task)
        if not isinstance(record, Mapping):
            raise TypeError(f"the task function returned a {type(record).__name__}, not a dict")
        clash = set(record) & set(ids)
        if clash:
            raise ValueError(f"the record sets {sorted(clash)}, which the engine sets")
        return {**ids, **{str(k): _plain(str(k), v) for k, v in record.items()}}
    except Exception as exc:  # the study goes on; the row says what went wrong
        return {**ids, "error": f"{type(exc).__name__}: {exc}"[:ERROR_LENGTH]}


def run_block(fn: Callable[[Task], Mapping[str, Any]], tasks: Sequence[Task]) -> tuple[list[Record], float]:
    """Run a block's tasks in order (on a worker or here): their records and the seconds taken."""
    start = time.perf_counter()
    records = [run_one(fn, task) for task in tasks]
    return records, time.perf_counter() - start


Outcome = tuple["Block", list["Record"], float, bool]  # block, records, seconds, whether to keep on disk


def _in_process(fn: Callable, blocks: Sequence[Block]) -> Iterator[Outcome]:
    for block in blocks:
        records, seconds = run_block(fn, block.tasks)
        yield block, records, seconds, True


@contextmanager
def _executor(where: str, n_workers: int | None, compile_root: str | Path | None, n_blocks: int) -> Iterator[Callable]:
    """A function (fn, blocks) -> outcomes in order of completion, on the cluster `where` names."""
    from marrow.simulate.cluster import PROCESS, dask_client

    if where == PROCESS:
        yield _in_process
        return
    with dask_client(where, n_workers, compile_root, max_workers=n_blocks) as client:

        def on_cluster(fn: Callable, blocks: Sequence[Block]) -> Iterator[Outcome]:
            from uuid import uuid4

            from distributed import as_completed

            run = uuid4().hex[:8]
            futures = {
                client.submit(run_block, fn, block.tasks, key=f"marrow-{block.name}-{run}", pure=False): block
                for block in blocks
            }
            for future in as_completed(futures):
                block = futures.pop(future)
                if future.status == "error":  # the worker died (the block's own errors are records)
                    exc = future.exception()
                    message = f"{type(exc).__name__}: {exc}"[:ERROR_LENGTH]
                    yield block, [{**_ids(t), "error": message} for t in block.tasks], 0.0, False
                else:
                    records, seconds = future.result()
                    yield block, records, seconds, True
                future.release()

        yield on_cluster


def run_tasks(
    fn: Callable[[Task], Mapping[str, Any]],
    tasks: Sequence[Task],
    *,
    out: Path | str | None = None,
    block_size: int = 50,
    scheduler: str | None = None,
    n_workers: int | None = None,
    resume: bool = False,
    progress: bool = False,
    force: bool = False,
    fingerprint: str = "",
    compile_root: Path | str | None = None,
    align: int = 1,
) -> pd.DataFrame:
    """Run `fn` on every task and return a pandas DataFrame, one row per task (columns `scenario`,
    `scenario_index`, `replicate`, `seed`, then the records'; `error` when a task raised), sorted by
    scenario index and replicate. The table depends only on `fn` and the tasks.

    - `scheduler`: None or "local" (a local Dask cluster of `n_workers` processes, default the CPUs
      available), "process" (here, no Dask; also `n_workers=0`), or an existing cluster's address
      ("tcp://host:8786") or scheduler file ("scheduler.json").
    - `out`: a folder; blocks of `block_size` records go to `out/blocks/*.parquet` as they finish,
      with `fingerprint` (e.g. a hash of the design). A folder with blocks is reused only with
      `resume=True` (run only the tasks no block holds; same fingerprint and seeds, else UsageError)
      or replaced with `force=True`.
    - `align`: blocks also break before every replicate that is a multiple of it (a batch of batched
      refits, `marrow.simulate.study_batched`, stays in one block).
    - `progress`: a progress bar on stderr. `compile_root`: where Dask workers make their own
      PyTensor compile folders (default `$MARROW_COMPILE_ROOT` or `~/.cache/marrow/pytensor-workers`).

    Ctrl-C raises `StudyInterrupted` (a KeyboardInterrupt) after closing the cluster; the finished
    blocks stay on disk. A block lost to a dying worker gives error rows and is not written (resume
    runs it again)."""
    from marrow.simulate import blocks as store
    from marrow.simulate.cluster import mode
    from marrow.simulate.engine_progress import StudyProgress

    tasks = list(tasks)
    store.check_tasks(tasks)
    where = mode(scheduler, n_workers)
    folder = None if out is None else Path(out) / "blocks"
    done = _done(folder, tasks, resume=resume, force=force, fingerprint=fingerprint)
    todo = store.plan_blocks([t for t in tasks if (t.scenario_index, t.replicate) not in done], block_size, align)
    records = list(done.values())
    finished = 0
    try:
        with StudyProgress(len(tasks), len(done), progress) as bar:
            if todo:
                with _executor(where, n_workers, compile_root, len(todo)) as execute:
                    for block, block_records, seconds, keep in execute(fn, todo):
                        table = store.to_table(block_records, fingerprint, seconds)
                        if folder is not None and keep:
                            store.write_block(folder, block, table)
                        records.extend(store.from_table(table))
                        finished += 1
                        bar.advance(len(block.tasks))
    except KeyboardInterrupt as exc:
        where_to = f" in {folder}" if folder is not None else ""
        raise StudyInterrupted(
            f"interrupted: {finished} of {len(todo)} blocks finished{where_to}"
            + ("; run again with resume to finish" if folder is not None else "")
        ) from exc
    return store.to_frame(records)


def _done(folder: Path | None, tasks: Sequence[Task], *, resume: bool, force: bool, fingerprint: str) -> dict:
    """The records already on disk that this run keeps (after the reuse rules of `run_tasks`)."""
    from marrow.simulate import blocks as store

    if resume and force:
        raise UsageError("resume keeps the blocks in the folder and force deletes them: choose one")
    if folder is None:
        if resume:
            raise UsageError("resume needs the output folder of the study to resume")
        return {}
    if force:
        store.remove_blocks(folder)
        return {}
    if store.block_files(folder) and not resume:
        raise UsageError(
            f"{folder} already holds results; resume to finish or extend that study, or force to start again"
        )
    return store.read_done(folder, tasks, fingerprint)


@dataclass(frozen=True)
class Estimate:
    """A dry run's timings (seconds) and projections of a whole study's wall time."""

    n_tasks: int
    n_sampled: int
    warmup_seconds: float  # the first task: building and compiling the model, then one refit
    seconds_per_task: float  # mean over the sampled tasks, after the warm-up
    errors: int  # sampled tasks (warm-up included) that raised
    cpus: int  # workers this machine runs by default (`marrow.spec.available_cpus()`)
    workers: int  # the K asked for

    def seconds_on(self, workers: int) -> float:
        """Projected wall time on `workers` workers: each compiles once, then shares the tasks
        (cluster start-up, a few seconds, not included)."""
        return self.warmup_seconds + self.seconds_per_task * math.ceil(max(self.n_tasks - 1, 0) / max(workers, 1))

    @property
    def this_machine_seconds(self) -> float:
        return self.seconds_on(self.cpus)

    @property
    def on_workers_seconds(self) -> float:
        return self.seconds_on(self.workers)


def estimate(
    fn: Callable[[Task], Mapping[str, Any]],
    tasks: Sequence[Task],
    n_sample: int = 3,
    workers: int | None = None,
    group: int = 1,
) -> Estimate:
    """Time the first task (warm-up: compilation) and `n_sample` more, spread over the study, in this
    process, and project the study's time on this machine's CPUs and on `workers` workers.

    `group` > 1: `fn` does the work of `group` replicates (jG .. jG + G - 1) at the first task of
    each group and the others read it (batched refits): the timed tasks are first tasks of groups
    other than the warm-up's, each counted as 1/group of its time."""
    from marrow.spec import available_cpus

    tasks = list(tasks)
    if not tasks:
        raise UsageError("no tasks to estimate")
    cpus = available_cpus()
    start = time.perf_counter()
    errors = int("error" in run_one(fn, tasks[0]))
    warmup = time.perf_counter() - start
    first_group = (tasks[0].scenario_index, tasks[0].replicate // group)
    rest = [
        t
        for t in tasks[1:]
        if group == 1 or (t.replicate % group == 0 and (t.scenario_index, t.replicate // group) != first_group)
    ]
    picks = sorted({int(i) for i in np.linspace(0, len(rest) - 1, min(n_sample, len(rest)))}) if rest else []
    seconds = []
    for i in picks:
        start = time.perf_counter()
        errors += int("error" in run_one(fn, rest[i]))
        seconds.append((time.perf_counter() - start) / group)
    per_task = float(np.mean(seconds)) if seconds else warmup
    return Estimate(len(tasks), len(seconds), warmup, per_task, errors, cpus, workers or cpus)
