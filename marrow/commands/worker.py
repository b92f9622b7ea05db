"""`marrow worker start|stop|status`: a background process that keeps PyMC loaded (docs/worker.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click

from marrow.errors import MarrowError

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


class WorkerError(MarrowError):
    """The worker could not be started (exit 2, like other usage errors)."""


@click.group()
def worker() -> None:
    """A background process that keeps PyMC, nutpie and ArviZ loaded and compiled models in memory.

    While it runs, fit, summarize, diagnose, compare, compare-models, plot, report, sensitivity and
    prior-check are sent to it, skipping the start-up of Python and PyMC and, for a model fitted
    before, its compilation. The numbers are the same as without it. See docs/worker.md.

    \b
    Example:
      marrow worker start
      marrow fit response --out response.nc               # sent to the worker
      marrow --no-worker fit response --out response.nc   # run here (or MARROW_WORKER=off)
      marrow worker status
      marrow worker stop
    """


@worker.command("start")
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    default=30,
    show_default=True,
    metavar="MINUTES",
    help="Exit after this many minutes without a command; 0 = never.",
)
def start(idle_timeout: float) -> int:
    """Start a worker in the background (does nothing if one is running).

    \b
    Example:
      marrow worker start --idle-timeout 120
    """
    from marrow.worker.client import request
    from marrow.worker.protocol import log_path, open_private_log, socket_path

    path = socket_path()
    running = request("ping", path)
    if running is not None:
        click.echo(f"marrow worker already running: pid {running.get('pid')}, socket {path}")
        return 0
    log = log_path(path)
    _check_socket_path(path)
    _make_private_dirs(path.parent)
    try:
        with open_private_log(log) as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "marrow.worker", "--socket", str(path), "--idle-timeout", f"{idle_timeout:g}"],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                cwd="/",
            )
    except OSError as exc:
        raise WorkerError(f"cannot start the worker: {exc}") from None
    began = time.monotonic()
    while True:
        answer = request("ping", path, timeout=2.0)
        if answer is not None:
            break
        if process.poll() is not None:
            raise WorkerError(
                f"the worker exited (code {process.returncode}) before it was ready; see its log {log}:\n" + _tail(log)
            )
        if time.monotonic() - began > START_TIMEOUT_S:
            process.terminate()
            raise WorkerError(
                f"the worker did not answer within {START_TIMEOUT_S:.0f} s and was stopped; "
                f"see its log {log}:\n" + _tail(log)
            )
        time.sleep(0.1)
    pid = answer.get("pid")
    if pid != process.pid:  # another `start` won the race; ours exits by itself
        click.echo(f"marrow worker already running: pid {pid}, socket {path}")
        return 0
    idle = f"exits after {idle_timeout:g} idle minutes" if idle_timeout > 0 else "runs until stopped"
    click.echo(
        f"marrow worker started in {time.monotonic() - began:.1f} s: pid {pid}, socket {path}\n"
        f"log: {log}\n"
        f"It {idle}; stop it with `marrow worker stop`."
    )
    return 0


@worker.command("stop")
def stop() -> int:
    """Stop the running worker (a command it is running finishes first).

    \b
    Example:
      marrow worker stop
    """
    from marrow.worker.client import request
    from marrow.worker.protocol import process_alive, socket_path

    path = socket_path()
    answer = request("stop", path)
    if answer is None:
        click.echo("no marrow worker is running")
        return 0
    pid = answer.get("pid")
    if answer.get("busy"):
        click.echo(f"marrow worker (pid {pid}) is finishing `{answer['busy']}` and exits after it")
    began = time.monotonic()
    while process_alive(pid):
        if time.monotonic() - began > STOP_TIMEOUT_S:
            click.echo(
                f"marrow worker (pid {pid}) takes no new commands and exits when its current one is done "
                f"(`kill {pid}` ends it now)"
            )
            return 0
        time.sleep(0.05)
    click.echo(f"marrow worker stopped (pid {pid})")
    return 0


@worker.command("status")
def status() -> int:
    """Show the running worker; exit 1 when none is running.

    \b
    Example:
      marrow worker status
    """
    from marrow.worker.client import request
    from marrow.worker.protocol import socket_path

    path = socket_path()
    answer = request("status", path)
    if answer is None or "pid" not in answer:
        click.echo(f"no marrow worker is running (socket {path})")
        return 1
    rows = [
        ("pid", answer["pid"]),
        ("uptime", _duration(answer["uptime_s"]) + f" (since {answer['started_utc']})"),
        ("commands served", answer["served"]),
        (
            "running now",
            f"{answer['busy']['command']} ({answer['busy']['seconds']:.0f} s)" if answer.get("busy") else "nothing",
        ),
        ("queued", answer.get("queued", 0)),
        ("compiled models kept", answer.get("compiled_models") if answer.get("compiled_models") is not None else "n/a"),
        ("peak memory", f"{answer['peak_memory_mb']} MB"),
        ("marrow version", answer["marrow_version"]),
        ("python", answer["python"]),
        ("idle timeout", f"{answer['idle_timeout_min']:g} min" if answer["idle_timeout_min"] else "none"),
        ("socket", answer["socket"]),
        ("log", answer["log"]),
    ]
    width = max(len(name) for name, _ in rows)
    click.echo("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    if answer.get("refuses_your_commands"):
        click.echo(f"note: commands run in their own process instead: {answer['refuses_your_commands']}")
    return 0


def _check_socket_path(path: Path) -> None:
    from marrow.worker.protocol import MAX_SOCKET_PATH

    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise WorkerError(
            f"socket path {path} is longer than the {MAX_SOCKET_PATH} bytes a Unix socket allows; "
            "set MARROW_WORKER_SOCKET to a shorter path"
        )


def _make_private_dirs(folder: Path) -> None:
    from marrow.worker.protocol import make_private_dirs

    try:
        make_private_dirs(folder)
    except OSError as exc:
        raise WorkerError(f"cannot create {folder}: {exc}") from None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text[-lines:]) or "  (the log is empty)"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"
