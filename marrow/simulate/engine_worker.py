"""Set-up of a Dask worker process: its own PyTensor compile folder, taken before PyTensor is imported.

Workers that share a compile folder wait on each other's compile lock (and on a network file system,
worse). Each worker claims the first free `ROOT/HOST/worker-K` folder (a lock file held for the life of
the process, so a folder is reused by the next study's worker, with its compiled C code and numba cache,
but never by two live processes) and points `PYTENSOR_FLAGS` at it (`base_compiledir`, which also holds
PyTensor's numba cache). ROOT is `$MARROW_COMPILE_ROOT`, else `~/.cache/marrow/pytensor-workers`.

`run_tasks` registers `CompileFolder` on every cluster it uses; it reaches a worker before its first
task. A worker of an external cluster that imports PyTensor before any task (another preload) should
start with `dask worker ADDRESS --preload marrow.simulate.engine_worker` to take its folder first.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import IO, Any

from distributed.diagnostics.plugin import WorkerPlugin

PLUGIN_NAME = "marrow-compile-folder"
ROOT_VARIABLE = "MARROW_COMPILE_ROOT"
_HELD: list[IO[str]] = []  # lock files kept open for the life of the process
_FOLDER: list[Path] = []  # the folder this process took (a preload and the plugin take one, not two)
_log = logging.getLogger(__name__)


def default_root() -> Path:
    """`$MARROW_COMPILE_ROOT`, else the user's cache folder: `~/.cache/marrow/pytensor-workers`."""
    if os.environ.get(ROOT_VARIABLE):
        return Path(os.environ[ROOT_VARIABLE])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "marrow" / "pytensor-workers"


def claim_folder(root: Path) -> Path:
    """The first `root/HOST/worker-K` folder no live process holds, now held by this one."""
    host = root / socket.gethostname()
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one folder per process
        folder = host / f"worker-pid{os.getpid()}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    for k in range(10_000):
        folder = host / f"worker-{k}"
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lock", "a")  # kept open: the lock is the process's
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _HELD.append(handle)
        return folder
    raise RuntimeError(f"no free compile folder under {host}")


def flags_with_folder(flags: str, folder: Path) -> str:
    """`PYTENSOR_FLAGS` with its compile folder replaced by `folder`."""
    kept = [f for f in flags.split(",") if f and not f.strip().startswith(("compiledir=", "base_compiledir="))]
    return ",".join([*kept, f"base_compiledir={folder}"])


def use_own_compile_folder(root: str | Path | None = None) -> Path | None:
    """Point this process's PyTensor at a folder of its own under `root` (default `default_root()`).
    Returns the folder, or None when PyTensor was imported already (its folder can no longer change)."""
    if _FOLDER:
        return _FOLDER[0]
    if "pytensor" in sys.modules:
        current = getattr(sys.modules["pytensor"].config, "base_compiledir", "?")
        if f"base_compiledir={current}" not in os.environ.get("PYTENSOR_FLAGS", ""):
            _log.warning("PyTensor was imported before marrow set this worker's compile folder; it uses %s", current)
        return None
    folder = claim_folder(Path(root) if root is not None else default_root())
    os.environ["PYTENSOR_FLAGS"] = flags_with_folder(os.environ.get("PYTENSOR_FLAGS", ""), folder)
    _FOLDER.append(folder)
    return folder


class CompileFolder(WorkerPlugin):
    """Dask worker plugin: `use_own_compile_folder` when the plugin reaches the worker (before its tasks)."""

    idempotent = True  # registering again (a second study on the same cluster) changes nothing

    def __init__(self, root: str | None = None) -> None:
        self.root = root

    def setup(self, worker: Any) -> None:
        use_own_compile_folder(self.root)


def dask_setup(worker: Any) -> None:
    """`dask worker ... --preload marrow.simulate.engine_worker`: take the compile folder at start-up."""
    use_own_compile_folder()
