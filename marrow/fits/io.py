"""Output files: checked before the work, written atomically, created like any ordinary file.

One rule for every output marrow writes (fits, tables, figures, prior sets, plan templates and the
report folder): it is created as any program creates a file, with mode 0666 & ~umask (0644 under
the usual umask 022), and a folder with 0777 & ~umask. Only the worker's socket, its folder and its
log are private (0600/0700; `marrow.worker.protocol`).

`check_writable` runs before any data are loaded or anything is sampled and creates nothing.
`atomic_path` creates missing folders only when the file is written and removes them again, with
its temporary file, if the write fails or is interrupted (Ctrl-C, SIGTERM). Once the process has
been interrupted, no output is written at all (see `refuse_if_interrupted`).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from marrow.errors import OutputExistsError, UsageError

FILE_MODE = 0o666  # before the umask, as open() and every ordinary program use
FOLDER_MODE = 0o777


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt so that every cleanup that handles Ctrl-C also runs."""


# The interrupt received by this process (set by the CLI's signal handlers), or None. PyMC and nutpie
# catch KeyboardInterrupt while sampling and return the draws so far; an output must then not be
# written as if the run had completed, so every write checks this first.
_received: type[KeyboardInterrupt] | None = None


def note_interrupt(kind: type[KeyboardInterrupt] | None) -> None:
    """Record that the process was interrupted (None forgets it)."""
    global _received
    _received = kind


def received_interrupt() -> type[KeyboardInterrupt] | None:
    """The interrupt this process received (Terminated or KeyboardInterrupt), or None."""
    return _received


def refuse_if_interrupted() -> None:
    """Raise the interrupt this process received, if any, instead of writing an output."""
    if _received is not None:
        raise _received()


def current_umask() -> int:
    """The process umask (read by setting it and putting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_mode(folder: bool = False) -> int:
    """The mode an output file (or folder) gets: 0666 (0777) & ~umask."""
    return (FOLDER_MODE if folder else FILE_MODE) & ~current_umask()


def _existing_ancestor(folder: Path) -> Path:
    """`folder` itself or its nearest ancestor that exists (what must be writable to create it)."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _create_file(folder: Path, name: str) -> Path:
    """Create an empty, new file `name` in `folder`, mode 0666 & ~umask (the kernel applies the umask)."""
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.close(fd)
    return path


def _temp_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(4)}.tmp"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_writable(path: Path | str, force: bool, folder: bool = False) -> None:
    """Fail now, before any work, if `path` could not be written later. Creates nothing.

    Refuses an existing output without `force` (`OutputExistsError`), a file where a folder is
    needed or the reverse, and a location this process cannot create files in (`UsageError`,
    exit 2). The check really creates and removes a small file in the nearest existing folder, so
    read-only file systems and access lists are caught as well as permission bits."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not force:
            raise OutputExistsError(str(path))
        if path.is_dir() and not folder:
            raise UsageError(f"cannot write {path}: it is a folder; give a file name")
        if folder and not path.is_dir():
            raise UsageError(f"cannot write the folder {path}: a file of that name exists")
    base = _existing_ancestor(path.parent)
    if not base.is_dir():
        raise UsageError(f"cannot write {path}: {base} is not a folder")
    try:
        probe = _create_file(base, _temp_name("marrow-write-check"))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: cannot create files in {base} ({_reason(exc)})") from None
    probe.unlink()


def make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents (mode 0777 & ~umask); returns those created, outermost first."""
    missing = []
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    created: list[Path] = []
    for item in reversed(missing):
        try:
            item.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            remove_folders(created)
            raise UsageError(f"cannot create folder {item}: {_reason(exc)}") from None
        created.append(item)
    return created


def remove_folders(created: list[Path]) -> None:
    """Remove folders `make_folders` created (innermost first), if they are still empty."""
    for item in reversed(created):
        try:
            item.rmdir()
        except OSError:
            return


def check_space(path: Path, needed: int) -> None:
    """Refuse (exit 2) to start writing about `needed` bytes where less is free."""
    try:
        free = shutil.disk_usage(_existing_ancestor(path.parent)).free
    except OSError:
        return
    if free < needed:
        raise UsageError(
            f"cannot write {path}: it needs about {_size(needed)} and only {_size(free)} "
            "are free there; nothing was written"
        )


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


@contextmanager
def atomic_path(path: Path | str, force: bool = False, size_hint: int | None = None) -> Iterator[Path]:
    """Yield a new temporary file beside `path`; on success it replaces `path` in one step.

    On any failure nothing is left behind: the temporary file and the folders created for it are
    removed. An `OSError` while writing (a full disk, a lost mount) becomes a `UsageError` naming
    the file (exit 2); an interrupt propagates after the cleanup. `size_hint` (bytes about to be
    written) is checked against the free space first: HDF5, behind NetCDF, cannot be relied on to
    fail cleanly when the disk fills up under it."""
    path = Path(path)
    refuse_if_interrupted()
    check_writable(path, force)
    if size_hint is not None:
        check_space(path, size_hint)
    created = make_folders(path.parent)
    tmp: Path | None = None
    done = False
    try:
        tmp = _create_file(path.parent, _temp_name(path.name))
        yield tmp
        refuse_if_interrupted()
        os.replace(tmp, path)
        done = True
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {_reason(exc)}; nothing was written") from None
    finally:
        if not done:
            if tmp is not None:
                try:
                    tmp.unlink(missing_ok=True)
                except OSError:
                    pass
            remove_folders(created)


@contextmanager
def atomic_folder(path: Path | str, force: bool = False) -> Iterator[Path]:
    """Yield a new, empty work folder beside `path` (0777 & ~umask); on success it replaces `path`.

    The folder counterpart of `atomic_path`: an existing `path` is moved aside and deleted only
    once the new one is in place; on failure or interrupt the work folder and any parents created
    for it are removed."""
    path = Path(path)
    refuse_if_interrupted()
    check_writable(path, force, folder=True)
    created = make_folders(path.parent)
    work: Path | None = None
    done = False
    try:
        work = path.parent / f".{path.name}.building-{secrets.token_hex(4)}"
        work.mkdir()
        yield work
        refuse_if_interrupted()
        old = None
        if path.exists() or path.is_symlink():
            old = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
            os.replace(path, old)
        os.replace(work, path)
        done = True
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
    except OSError as exc:
        if done:
            raise
        raise UsageError(f"cannot write {path}: {_reason(exc)}; nothing was written") from None
    finally:
        if not done:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            remove_folders(created)


def write_text(path: Path | str, text: str, force: bool = False) -> None:
    with atomic_path(path, force) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: Path | str, payload: bytes, force: bool = False) -> None:
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(payload)
