"""The resident worker: PyMC, nutpie and ArviZ imported once, compiled models kept between commands.

One thread accepts connections and answers `ping`, `status` and `stop` at once, even while a command
runs; `run` requests go to a queue that the main thread works through one at a time, each exactly as
`marrow.cli.run` would run it in a fresh process: in the client's working directory, with its
argv, its output captured and returned at the end. An exception in a command becomes the CLI's
usual message and exit code; it never ends the worker. The worker exits on `stop`, SIGTERM, or after
`idle_minutes` without a command, and removes its socket file (only if it is still its own).
When marrow's files change (an edit, an upgrade) it refuses the next command, which then runs in
its own process, and restarts itself on the new code.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import io
import os
import queue
import shlex
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path

from marrow.formatting import plural
from marrow.worker.protocol import (
    MAX_SOCKET_PATH,
    OPS,
    ProtocolError,
    identity,
    log_path,
    make_private_dirs,
    mismatch,
    recv_message,
    send_message,
    source_fingerprint,
)

# Imported before the socket opens, so the first command pays no import time. Optional ones
# (nutpie) are skipped when not installed.
WARM_MODULES = (
    "pymc",
    "arviz",
    "nutpie",
    "pandas",
    "marrow.cli",
    "marrow.commands.fit",
    "marrow.commands.inspect",
    "marrow.fits.run",
    "marrow.fits.compiled",
    "marrow.data",
    # and every registered model's implementation (warm_modules)
    "marrow.summaries",
    "marrow.diagnostics",
    "marrow.formatting",
    "marrow.plots.style",
)
REQUEST_READ_TIMEOUT_S = 10.0
ACCEPT_POLL_S = 0.2  # how often the accepting thread checks whether the worker is stopping
EXIT_DEBUG_TRACEBACK = 1  # what Python exits with on an uncaught exception (`--debug`)


class AlreadyRunning(Exception):
    """Another worker answers on the socket path."""


class Terminate(BaseException):
    """Raised in the main thread by SIGTERM; a BaseException so no command's handler swallows it."""


def warm_modules() -> tuple[str, ...]:
    """`WARM_MODULES` and the implementation of every registered model (its descriptor's `module`)."""
    from marrow.descriptor import REGISTRY

    return WARM_MODULES + tuple(d.module for d in REGISTRY)


def warm_up(log) -> float:
    """Import the heavy modules; returns the seconds it took."""
    start = time.perf_counter()
    for name in warm_modules():
        if importlib.util.find_spec(name.split(".")[0]) is None:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken optional module must not stop the worker
            log(f"warm-up: could not import {name}: {type(exc).__name__}: {exc}")
    from marrow.fits import compiled

    compiled.expect_refits()  # compiled models are kept here: nutpie's C callbacks, built once, sample fastest
    return time.perf_counter() - start


def bind(path: Path) -> socket.socket:
    """A listening Unix socket at `path` (mode 0600, in a 0700 folder when marrow creates it)."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise OSError(
            f"socket path {path} is {len(os.fsencode(path))} bytes, more than the {MAX_SOCKET_PATH} "
            "a Unix socket allows; set MARROW_WORKER_SOCKET to a shorter path"
        )
    make_private_dirs(path.parent)
    if os.path.lexists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
            raise AlreadyRunning(f"a worker already listens on {path}")
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # left by a worker that was killed
        except TimeoutError:
            raise AlreadyRunning(f"a worker already listens on {path} (busy)") from None
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is never group- or world-accessible, not even briefly
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener


class Worker:
    """State of one worker process; `serve()` runs it until stop, SIGTERM or the idle timeout."""

    def __init__(self, path: Path, idle_minutes: float, log_stream=None):
        self.path = path
        self.idle_minutes = idle_minutes
        self.log_stream = log_stream or sys.__stderr__
        self.log_lock = threading.Lock()
        self.started = time.time()
        self.served = 0
        self.current: tuple[str, float] | None = None  # (command line, start) of the running command
        self.jobs: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.own = identity()
        self.fingerprint = source_fingerprint()  # before the imports: an edit during warm-up counts
        self.restart = False
        self.listener: socket.socket | None = None
        self.inode: tuple[int, int] | None = None
        self.acceptor: threading.Thread | None = None

    # ---- life cycle -------------------------------------------------------------------------
    def serve(self) -> int:
        """Warm up, listen, run commands until told to stop; returns the process exit code."""
        os.environ["MARROW_WORKER"] = "off"  # a command that starts `marrow` must not wait for this worker
        self.log(f"starting: pid {os.getpid()}, marrow {self.own['marrow_version']}, {sys.executable}")
        self.log(f"warm-up: imported PyMC, ArviZ and friends in {warm_up(self.log):.1f} s")
        try:
            self.listener = bind(self.path)
        except AlreadyRunning as exc:
            self.log(f"not starting: {exc}")
            return 0
        except OSError as exc:
            self.log(f"cannot listen on {self.path}: {exc}")
            return 2
        st = os.stat(self.path)
        self.inode = (st.st_dev, st.st_ino)
        atexit.register(self.remove_socket)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        minutes = f"{self.idle_minutes:g} idle minute{'' if self.idle_minutes == 1 else 's'}"
        idle = f"exits after {minutes}" if self.idle_minutes > 0 else "no idle timeout"
        self.log(f"ready on {self.path} ({idle})")
        self.acceptor = threading.Thread(target=self._accept_loop, name="marrow-worker-accept", daemon=True)
        self.acceptor.start()
        try:
            self._run_jobs()
        except Terminate:
            self.log("SIGTERM: exiting")
        finally:
            self._shut_down()
        if self.restart:
            self.log("restarting on marrow's new files")
            os.execv(
                sys.executable,
                [
                    sys.executable,
                    "-m",
                    "marrow.worker",
                    "--socket",
                    str(self.path),
                    "--idle-timeout",
                    f"{self.idle_minutes:g}",
                ],
            )
        return 0

    def _on_sigterm(self, signum, frame) -> None:
        raise Terminate()

    def request_stop(self, reason: str) -> None:
        """Stop taking commands now (the socket disappears at once); the main thread exits when free."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.remove_socket()
        self.log(f"stopping: {reason}")
        self.jobs.put(None)

    def remove_socket(self) -> None:
        """Unlink the socket file if it is still ours (a newer worker may have bound the same path)."""
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self.inode:
                os.unlink(self.path)
        except OSError:
            pass

    def _shut_down(self) -> None:
        self.stopping.set()
        self.remove_socket()
        if self.acceptor is not None:
            self.acceptor.join(timeout=5)
        while True:  # commands queued behind the last one run in their own process instead
            try:
                item = self.jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._reply(item[0], {"refused": "the worker is stopping"})
        self.log(f"exited after {plural(self.served, 'command')}")

    # ---- connections (accepting thread) -----------------------------------------------------
    def _accept_loop(self) -> None:
        listener = self.listener
        listener.settimeout(ACCEPT_POLL_S)
        while not self.stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                self.log(f"accept failed: {exc}")
                break
            try:
                self._dispatch(conn)
            except Exception as exc:  # one bad client must not end the worker
                self.log(f"request failed: {type(exc).__name__}: {exc}")
                conn.close()
        listener.setblocking(False)
        while True:  # connections that arrived as the socket went away: tell them to run it themselves
            try:
                conn, _ = listener.accept()
            except OSError:
                break
            conn.setblocking(True)
            conn.settimeout(REQUEST_READ_TIMEOUT_S)
            try:
                recv_message(conn)
            except (OSError, ProtocolError):
                pass
            self._reply(conn, {"refused": "the worker is stopping"})
        listener.close()

    def _dispatch(self, conn: socket.socket) -> None:
        conn.settimeout(REQUEST_READ_TIMEOUT_S)
        try:
            request = recv_message(conn)
        except (OSError, ProtocolError) as exc:
            self.log(f"bad request: {exc}")
            conn.close()
            return
        op = request.get("op")
        if op not in OPS:
            self._reply(conn, {"error": f"unknown op {op!r}; expected one of {', '.join(OPS)}"})
        elif op == "ping":
            self._reply(conn, {"ok": True, "pid": os.getpid(), **self.own})
        elif op == "status":
            self._reply(conn, self.status(request))
        elif op == "stop":
            busy = self.current[0] if self.current else None
            self.request_stop("stop requested")
            self._reply(conn, {"ok": True, "pid": os.getpid(), "busy": busy})
        else:
            reason = "the worker is stopping" if self.stopping.is_set() else mismatch(request, self.own)
            if not reason and not (isinstance(request.get("argv"), list) and isinstance(request.get("cwd"), str)):
                reason = "a run request needs argv (a list) and cwd"
            if not reason and source_fingerprint() != self.fingerprint:
                reason = "marrow's files changed since the worker started; it restarts"
                self.restart = True
                self.request_stop("marrow's files changed")
            if reason:
                self._reply(conn, {"refused": reason})
            else:
                self.jobs.put((conn, request))  # the main thread replies and closes

    def status(self, request: dict) -> dict:
        """What `marrow worker status` shows."""
        import resource

        compiled = sys.modules.get("marrow.fits.compiled")
        current = self.current
        stale = (
            ""
            if source_fingerprint() == self.fingerprint
            else "marrow's files changed since it started; it restarts at the next command"
        )
        return {
            "pid": os.getpid(),
            "started_utc": datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "uptime_s": round(time.time() - self.started, 1),
            "served": self.served,
            "queued": self.jobs.qsize(),
            "busy": {"command": current[0], "seconds": round(time.monotonic() - current[1], 1)} if current else None,
            "marrow_version": self.own["marrow_version"],
            "python": self.own["python"],
            "socket": str(self.path),
            "log": str(log_path(self.path)),
            "idle_timeout_min": self.idle_minutes,
            "compiled_models": compiled.cached_entries() if hasattr(compiled, "cached_entries") else None,
            "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "refuses_your_commands": stale or mismatch(request, self.own),
        }

    def _reply(self, conn: socket.socket, message: dict) -> bool:
        """Send `message` and close; False when the client has gone (it was interrupted)."""
        try:
            with conn:
                conn.settimeout(REQUEST_READ_TIMEOUT_S)
                send_message(conn, message)
            return True
        except OSError:
            return False

    # ---- commands (main thread) -------------------------------------------------------------
    def _run_jobs(self) -> None:
        last = time.monotonic()
        while True:
            timeout = None
            if self.idle_minutes > 0:
                timeout = max(0.0, last + self.idle_minutes * 60 - time.monotonic())
            try:
                item = self.jobs.get(timeout=timeout)
            except queue.Empty:
                self.request_stop(f"no command for {self.idle_minutes:g} minute{'' if self.idle_minutes == 1 else 's'}")
                return
            if item is None or self.stopping.is_set():
                if item is not None:
                    self._reply(item[0], {"refused": "the worker is stopping"})
                return
            conn, request = item
            self._serve_one(conn, request)
            last = time.monotonic()

    def _serve_one(self, conn: socket.socket, request: dict) -> None:
        argv = [str(a) for a in request["argv"]]
        line = shlex.join(["marrow", *argv])
        self.current = (line, time.monotonic())
        start = time.perf_counter()
        try:
            response = execute(argv, request["cwd"], self.log_stream)
        finally:
            self.current = None
        seconds = time.perf_counter() - start
        if "refused" in response:
            self.log(f"refused {line}: {response['refused']}")
            self._reply(conn, response)
            return
        self.served += 1
        delivered = self._reply(conn, response)
        self.log(
            f"{line} -> exit {response['exit_code']} in {seconds:.2f} s (cwd {request['cwd']})"
            + ("" if delivered else "; the client had gone, output dropped")
        )

    def log(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.log_lock:
            try:
                self.log_stream.write(f"{stamp} {message}\n")
                self.log_stream.flush()
            except (OSError, ValueError):
                pass


def execute(argv: list[str], cwd: str, real_stderr=None) -> dict:
    """Run one command line as `marrow.cli.run` does in-process; returns {stdout, stderr, exit_code}.

    The working directory, sys.argv (recorded in a fit's provenance), warning filters and the
    streams of logging handlers are the command's own while it runs and restored afterwards."""
    from marrow.cli import run

    out, err = io.StringIO(), io.StringIO()
    saved_cwd, saved_argv = os.getcwd(), sys.argv
    try:
        os.chdir(cwd)
    except OSError as exc:
        return {"refused": f"cannot enter the working directory {cwd}: {exc}"}
    try:
        sys.argv = ["marrow", *argv]
        with (
            redirect_stdout(out),
            redirect_stderr(err),
            warnings.catch_warnings(),
            _logging_to(err, real_stderr or sys.__stderr__),
        ):
            try:
                code = run(argv)
            except SystemExit as exc:  # a command that calls sys.exit itself
                code = _exit_code(exc.code, err)
            except Exception:  # run() maps every exception to an exit code; this is a last resort
                traceback.print_exc(file=err)
                code = EXIT_DEBUG_TRACEBACK
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        _close_figures()
    return {"stdout": out.getvalue(), "stderr": err.getvalue(), "exit_code": int(code)}


def _exit_code(code, err) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    err.write(f"{code}\n")  # sys.exit("message") prints the message and exits 1
    return 1


@contextmanager
def _logging_to(stream, real_stderr):
    """Point logging handlers that write to the worker's stderr (PyMC's own) at `stream` meanwhile."""
    import logging

    targets = {id(real_stderr), id(sys.__stderr__)}
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    swapped = []
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler and id(handler.stream) in targets:
                swapped.append((handler, handler.setStream(stream)))
    try:
        yield
    finally:
        for handler, old in swapped:
            handler.setStream(old)


def _close_figures() -> None:
    """Figures a command left open in pyplot would pile up over thousands of commands."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


def main(argv: list[str] | None = None) -> int:
    """`python -m marrow.worker [--socket PATH] [--idle-timeout MINUTES]` (what `marrow worker start` runs)."""
    import argparse

    from marrow.worker.protocol import socket_path

    parser = argparse.ArgumentParser(
        prog="python -m marrow.worker", description="Run a marrow worker in the foreground."
    )
    parser.add_argument("--socket", type=Path, default=None, help="Socket path (default: see docs/worker.md).")
    parser.add_argument(
        "--idle-timeout", type=float, default=30.0, help="Exit after this many idle minutes; 0 = never."
    )
    args = parser.parse_args(argv)
    worker = Worker(args.socket or socket_path(), args.idle_timeout)
    return worker.serve()
