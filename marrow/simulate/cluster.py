"""Where a study's blocks run: in this process, on a local Dask cluster, or on an existing one.

- `scheduler="process"` (or `n_workers=0`): no Dask; blocks run here one after another (tests, debugging).
- `scheduler=None` (or `"local"`): a `distributed.LocalCluster` of `n_workers` worker processes (default:
  the CPUs available, `marrow.spec.available_cpus()`), one thread each, closed when the study ends.
- `scheduler="tcp://HOST:PORT"` (any Dask address) or a scheduler file (`*.json`): an existing cluster
  (`dask scheduler` + `dask worker`, or dask-jobqueue on SLURM/PBS); left running when the study ends.

Every Dask worker compiles in its own PyTensor folder: `dask_client` registers the worker plugin of
`marrow.simulate.engine_worker` on every cluster it connects to.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from marrow.errors import UsageError

PROCESS = "process"
LOCAL = "local"


def mode(scheduler: str | None, n_workers: int | None) -> str:
    """`PROCESS`, `LOCAL` or the external scheduler's address, from run_tasks' two options."""
    if n_workers is not None and n_workers < 0:
        raise UsageError(f"n_workers must be >= 0, got {n_workers}")
    if scheduler in (None, LOCAL):
        return PROCESS if n_workers == 0 else LOCAL
    if scheduler == PROCESS:
        if n_workers not in (None, 0):
            raise UsageError(f"scheduler='process' runs in this process; n_workers={n_workers} asks for workers")
        return PROCESS
    if n_workers is not None:
        raise UsageError("n_workers sizes the local cluster; an existing cluster's workers are its own")
    return scheduler


def _workers_ignore_ctrl_c():
    """Ctrl-C reaches every process of the terminal's group: local workers started inside this block
    inherit an ignored SIGINT, so only this process handles it (and closes them in order)."""
    if threading.current_thread() is not threading.main_thread():
        return nullcontext()

    @contextmanager
    def ignoring() -> Iterator[None]:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    return ignoring()


@contextmanager
def dask_client(where: str, n_workers: int | None, compile_root: str | Path | None, max_workers: int) -> Iterator[Any]:
    """A `distributed.Client` for `where` (`LOCAL` or an address / scheduler file), with the compile
    folder plugin registered; the local cluster (never an external one) is closed on exit."""
    from distributed import Client, LocalCluster

    from marrow.simulate.engine_worker import PLUGIN_NAME, CompileFolder
    from marrow.spec import available_cpus

    cluster = None
    if where == LOCAL:
        size = max(1, min(n_workers or available_cpus(), max_workers))
        with _workers_ignore_ctrl_c():
            cluster = LocalCluster(
                n_workers=size,
                threads_per_worker=1,
                processes=True,
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
            )
        client = Client(cluster)
    elif where.endswith(".json"):
        client = Client(scheduler_file=where, timeout="30s")
    else:
        client = Client(where, timeout="30s")
    try:
        client.register_plugin(CompileFolder(None if compile_root is None else str(compile_root)), name=PLUGIN_NAME)
        if cluster is None:
            try:
                client.wait_for_workers(1, timeout=300)
            except TimeoutError as exc:
                raise UsageError(f"no Dask worker joined the scheduler at {where} within 300 s") from exc
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
