"""The client side: hand a command to a running worker, or say that it must run here.

`marrow.cli.main` calls `delegate(argv)` before anything else. Standard library only, so a command
that runs in-process (or `marrow --help`) pays nothing for it beyond one `stat` of the socket path.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from pathlib import Path

from marrow.worker.protocol import ProtocolError, identity, log_path, recv_message, send_message, socket_path

# Commands worth sending: they import PyMC/ArviZ or compile models. `priors`, `init` and `worker`
# are quick in-process and `worker` must never be delegated to itself.
DELEGABLE = frozenset(
    {"fit", "summarize", "diagnose", "compare", "compare-models", "plot", "report", "sensitivity", "prior-check"}
)
NEVER = frozenset({"-h", "--help", "--version", "--no-worker"})
OFF = frozenset({"off", "0", "no", "false"})
CONNECT_TIMEOUT_S = 5.0
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 3


def command_of(argv: list[str]) -> str | None:
    """The first argument that is not an option (marrow's global options take no values)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def wants_worker(argv: list[str], environ=None) -> bool:
    """True when this command line may go to a worker: a delegable command, no --help/--version/
    --no-worker anywhere, and MARROW_WORKER is not 'off'."""
    environ = os.environ if environ is None else environ
    if environ.get("MARROW_WORKER", "").strip().lower() in OFF:
        return False
    if any(arg in NEVER for arg in argv):
        return False
    return command_of(argv) in DELEGABLE


def connect(path: Path, timeout: float = CONNECT_TIMEOUT_S) -> socket.socket | None:
    """A connection to the worker at `path`, or None when none is listening.

    A socket file nobody listens on (a worker that was killed) is removed so the next command does
    not try it again."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():  # only our own user's worker
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except ConnectionRefusedError:
        sock.close()
        remove_stale(path)
        return None
    except OSError:  # permission denied, path too long, timeout: not ours to use
        sock.close()
        return None
    return sock


def remove_stale(path: Path) -> None:
    """Remove a socket file that refuses connections (its worker is gone)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def request(op: str, path: Path | None = None, timeout: float | None = 10.0, **fields) -> dict | None:
    """Send one request and return the response; None when no worker answers at `path`."""
    sock = connect(socket_path() if path is None else path)
    if sock is None:
        return None
    with sock:
        try:
            sock.settimeout(timeout)
            send_message(sock, {"op": op, **identity(), **fields})
            return recv_message(sock)
        except (OSError, ProtocolError):
            return None


def delegate(argv: list[str], environ=None, stdout=None, stderr=None, own: dict | None = None) -> int | None:
    """Run `argv` in the worker and return its exit code, after writing its output to ours.

    None means "run it here": the command is not delegable, the worker is off, absent or stale, or
    it refused the command (another marrow version, Python executable or installation; marrow's
    files changed; stopping). `own` overrides this process's identity (for tests)."""
    environ = os.environ if environ is None else environ
    if not wants_worker(argv, environ):
        return None
    path = socket_path(environ)
    sock = connect(path)
    if sock is None:
        return None
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    with sock:
        try:
            send_message(sock, {"op": "run", "argv": list(argv), "cwd": os.getcwd(), **(own or identity())})
            sock.settimeout(None)  # a command may run for minutes
        except OSError:  # the worker never got the command (it is shutting down; no cwd): run it here
            return None
        except KeyboardInterrupt:
            return _interrupted(stderr)
        try:
            response = recv_message(sock)
        except KeyboardInterrupt:
            return _interrupted(stderr)
        except (OSError, ProtocolError) as exc:
            stderr.write(
                f"marrow: internal error: the worker stopped before answering ({exc}); "
                f"see its log {log_path(path)}, or rerun with --no-worker\n"
            )
            stderr.flush()
            return EXIT_INTERNAL
    if "refused" in response or "exit_code" not in response:
        return None
    stdout.write(response.get("stdout", ""))
    stdout.flush()
    stderr.write(response.get("stderr", ""))
    stderr.flush()
    return int(response["exit_code"])


def _interrupted(stderr) -> int:
    stderr.write("marrow: interrupted (the worker finishes the job in the background)\n")
    stderr.flush()
    return EXIT_INTERRUPTED
