"""The resident worker: start/status/stop, the same numbers through it as without it, errors that
leave it running, and every case where a command must quietly run in its own process instead."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_csv

from marrow import __version__ as marrow_version
from marrow.worker import client, protocol, server
from marrow.worker.protocol import process_alive as _alive

FIT = ("fit", "safety", "--draws", "200", "--tune", "200", "--chains", "2", "--out", "fit.nc")


def worker_env(sock: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MARROW_WORKER", "XDG_RUNTIME_DIR")}
    env["MARROW_WORKER_SOCKET"] = str(sock)
    return env


def marrow(*args, env: dict, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`marrow ARGS` as a user types it (a fresh process that may delegate to the worker)."""
    return subprocess.run(
        [sys.executable, "-m", "marrow", *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def status(env: dict) -> dict | None:
    return client.request("status", Path(env["MARROW_WORKER_SOCKET"]))


def stop_worker(env: dict, pid: int | None = None) -> None:
    """Finalizer: stop the worker at env's socket, or process `pid` (the worker's pid survives its
    restarts, during which the socket does not answer), and make sure it is gone."""
    answer = status(env)
    pid = answer["pid"] if answer else pid
    if pid is None:
        return
    if answer is None or client.request("stop", Path(env["MARROW_WORKER_SOCKET"])) is None:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def ready(env: dict) -> dict:
    """Status of the worker at env's socket, waiting while it (re)starts; also the log's length now."""
    deadline = time.monotonic() + 90
    while (answer := status(env)) is None:
        assert time.monotonic() < deadline, "the worker did not answer"
        time.sleep(0.1)
    answer["log_size"] = protocol.log_path(Path(env["MARROW_WORKER_SOCKET"])).stat().st_size
    return answer


def served_or_skip(env: dict, before: dict) -> int:
    """Commands served since `before` (a `ready()`); skip when a concurrent edit of marrow's files made
    the worker refuse the command and restart (the command then ran in its own process, correctly)."""
    log = protocol.log_path(Path(env["MARROW_WORKER_SOCKET"]))
    with open(log) as f:
        f.seek(before["log_size"])
        if "marrow's files changed" in f.read():
            pytest.skip("marrow's files were edited during the test; the worker restarted instead of serving")
    return status(env)["served"] - before["served"]


@pytest.fixture
def env(tmp_path_factory):
    """A socket path of its own (short enough for a Unix socket); no worker is left behind."""
    environment = worker_env(tmp_path_factory.mktemp("w") / "run" / "w.sock")
    yield environment
    stop_worker(environment)


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """One worker shared by this module's delegation tests."""
    environment = worker_env(tmp_path_factory.mktemp("w") / "w.sock")
    pid = None
    try:
        result = marrow("worker", "start", env=environment, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        pid = status(environment)["pid"]
        yield environment
    finally:
        stop_worker(environment, pid)


# ---- commands -------------------------------------------------------------------------------------


@pytest.mark.worker
def test_start_status_stop_round_trip(env):
    sock = Path(env["MARROW_WORKER_SOCKET"])
    result = marrow("worker", "status", env=env)
    assert result.returncode == 1 and "no marrow worker is running" in result.stdout
    result = marrow("worker", "stop", env=env)
    assert result.returncode == 0 and "no marrow worker is running" in result.stdout

    result = marrow("worker", "start", "--idle-timeout", "5", env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    pid = status(env)["pid"]
    assert f"pid {pid}" in result.stdout and str(sock) in result.stdout and "marrow worker stop" in result.stdout
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700  # created by marrow
    assert protocol.log_path(sock).exists()

    again = marrow("worker", "start", env=env)
    assert again.returncode == 0 and "already running" in again.stdout and f"pid {pid}" in again.stdout

    result = marrow("worker", "status", env=env)
    assert result.returncode == 0
    shown = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in result.stdout.splitlines())
    assert shown["pid"] == str(pid) and shown["commands served"] == "0" and shown["idle timeout"] == "5 min"
    assert shown["marrow version"] == marrow_version and shown["socket"] == str(sock)
    assert shown["python"] == sys.executable and shown["uptime"].endswith("Z)")

    result = marrow("worker", "stop", env=env)
    assert result.returncode == 0 and f"stopped (pid {pid})" in result.stdout
    assert not sock.exists()
    assert marrow("worker", "status", env=env).returncode == 1


@pytest.mark.worker
def test_worker_exits_when_idle_and_on_sigterm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("w")
    for idle, how in ((0.01, "idle"), (0, "sigterm")):
        sock = folder / f"{how}.sock"
        process = subprocess.Popen(
            [sys.executable, "-m", "marrow.worker", "--socket", str(sock), "--idle-timeout", str(idle)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 90
            while client.request("ping", sock) is None:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
            if how == "sigterm":
                process.send_signal(signal.SIGTERM)
            log, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, log
        assert not sock.exists(), log
        assert ("no command for 0.01 minutes" if how == "idle" else "SIGTERM") in log


# ---- delegation -----------------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.sampling
def test_delegated_fit_gives_the_same_numbers(running, tmp_path):
    from marrow.fits import Fit

    before = ready(running)
    (tmp_path / "worker").mkdir()
    (tmp_path / "here").mkdir()
    via = marrow(*FIT, env=running, cwd=tmp_path / "worker")
    assert via.returncode == 0, via.stderr
    assert served_or_skip(running, before) == 1
    here = marrow(*FIT, env={**running, "MARROW_WORKER": "off"}, cwd=tmp_path / "here")
    assert here.returncode == 0, here.stderr
    assert status(running)["served"] == before["served"] + 1

    assert via.stdout == here.stdout and via.stderr == here.stderr  # the same messages, in the same order
    a, b = Fit.load(tmp_path / "worker" / "fit.nc"), Fit.load(tmp_path / "here" / "fit.nc")
    assert set(a.idata.posterior.data_vars) == set(b.idata.posterior.data_vars)
    for name in a.idata.posterior.data_vars:
        assert np.array_equal(a.idata.posterior[name].to_numpy(), b.idata.posterior[name].to_numpy()), name
    assert a.provenance["command_line"] == b.provenance["command_line"] == "marrow " + " ".join(FIT)


@pytest.mark.worker
def test_data_error_through_worker_is_reported_and_worker_survives(
    running, tmp_path, patients_frame, marrow_cli, monkeypatch
):
    write_csv(patients_frame.drop(columns=["center"]), tmp_path / "bad.csv")
    before = ready(running)
    args = ("fit", "safety", "--data", "bad.csv", "--out", "x.nc")
    via = marrow(*args, env=running, cwd=tmp_path)
    assert served_or_skip(running, before) == 1
    monkeypatch.chdir(tmp_path)
    code, out, err = marrow_cli(*args)  # in this process, never delegated
    assert via.returncode == code == 2
    assert via.stderr == err and via.stdout == out
    assert "bad.csv, column 'center'" in err and "Traceback" not in via.stderr
    assert not (tmp_path / "x.nc").exists()
    assert client.request("ping", Path(running["MARROW_WORKER_SOCKET"]))["pid"] == status(running)["pid"]


@pytest.mark.worker
def test_mismatched_client_runs_in_its_own_process(running, tmp_path):
    sock = Path(running["MARROW_WORKER_SOCKET"])
    before = ready(running)["served"]
    for field, value in (("marrow_version", "0.0.0"), ("python", "/usr/bin/python9"), ("marrow_path", "/elsewhere")):
        own = {**protocol.identity(), field: value}
        assert client.delegate(["summarize", "x.nc"], environ=running, own=own) is None
    assert status(running)["served"] == before
    assert sock.exists()  # a mismatch is not a stale socket


def test_stale_socket_is_removed_and_command_runs_here(tmp_path):
    sock = tmp_path / "w.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))  # bound, never listening: what a killed worker leaves behind
    dead.close()
    assert sock.exists()
    assert client.delegate(["fit", "safety"], environ={"MARROW_WORKER_SOCKET": str(sock)}) is None
    assert not sock.exists()
    sock.write_text("not a socket")  # something else at that path is left alone
    assert client.delegate(["fit", "safety"], environ={"MARROW_WORKER_SOCKET": str(sock)}) is None
    assert sock.read_text() == "not a socket"


def test_worker_dying_mid_command_is_an_internal_error(tmp_path):
    import io
    import threading

    sock = tmp_path / "w.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen(1)

    def die_after_reading():  # reads the command, then vanishes without an answer
        conn, _ = listener.accept()
        with conn:
            protocol.recv_message(conn)

    thread = threading.Thread(target=die_after_reading)
    thread.start()
    out, err = io.StringIO(), io.StringIO()
    try:
        code = client.delegate(["fit", "safety"], environ={"MARROW_WORKER_SOCKET": str(sock)}, stdout=out, stderr=err)
    finally:
        thread.join(10)
        listener.close()
    assert code == 3 and out.getvalue() == ""
    assert "the worker stopped before answering" in err.getvalue() and "--no-worker" in err.getvalue()


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["fit", "response"], {}, True),
        (["--debug", "summarize", "f.nc"], {}, True),
        (["report", "--out", "r"], {"MARROW_WORKER": "on"}, True),
        (["fit", "response"], {"MARROW_WORKER": "off"}, False),
        (["fit", "response"], {"MARROW_WORKER": "OFF"}, False),
        (["--no-worker", "fit", "response"], {}, False),
        (["fit", "response", "--help"], {}, False),
        (["fit", "-h"], {}, False),
        (["--version"], {}, False),
        ([], {}, False),
        (["priors", "list"], {}, False),
        (["worker", "status"], {}, False),
        (["init"], {}, False),
    ],
)
def test_which_command_lines_go_to_the_worker(argv, environ, expected):
    assert client.wants_worker(argv, environ) is expected


def test_client_imports_nothing_heavy():
    code = (
        "import marrow.worker.client, sys; "
        "print([m for m in ('pymc', 'arviz', 'pandas', 'numpy', 'click', 'pytensor') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_no_worker_option_is_accepted_in_process(marrow_cli):
    code, out, _ = marrow_cli("--no-worker", "priors", "list")
    assert code == 0 and "weakly-informative" in out


# ---- server and protocol, in this process ---------------------------------------------------------


def test_execute_turns_an_exception_into_exit_3_and_restores_state(monkeypatch, tmp_path):
    import marrow.cli

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(marrow.cli.cli, "main", boom)
    cwd, argv = os.getcwd(), list(sys.argv)
    response = server.execute(["summarize", "f.nc"], str(tmp_path))
    assert response["exit_code"] == 3 and response["stdout"] == ""
    assert (
        "marrow: internal error: RuntimeError: kaboom" in response["stderr"] and "Traceback" not in response["stderr"]
    )
    response = server.execute(["--debug", "summarize", "f.nc"], str(tmp_path))
    assert response["exit_code"] == 3 and "Traceback" in response["stderr"] and "kaboom" in response["stderr"]
    assert os.getcwd() == cwd and sys.argv == argv
    assert "refused" in server.execute(["summarize"], str(tmp_path / "missing"))


def test_messages_round_trip_and_truncation_is_detected():
    left, right = socket.socketpair()
    with left, right:
        message = {"op": "run", "argv": ["fit", "response", "--out", "é.nc"], "cwd": "/tmp"}
        protocol.send_message(left, message)
        assert protocol.recv_message(right) == message
        left.sendall(protocol.HEADER.pack(100) + b'{"op"')
        left.shutdown(socket.SHUT_WR)
        with pytest.raises(protocol.ProtocolError):
            protocol.recv_message(right)


def test_socket_location(monkeypatch):
    assert protocol.socket_path({"MARROW_WORKER_SOCKET": "/x/w.sock", "XDG_RUNTIME_DIR": "/run/user/7"}) == Path(
        "/x/w.sock"
    )
    assert protocol.socket_path({"XDG_RUNTIME_DIR": "/run/user/7"}) == Path("/run/user/7/marrow/worker.sock")
    assert protocol.socket_path({}) == Path.home() / ".cache" / "marrow" / f"worker-{os.getuid()}.sock"
    assert protocol.log_path(Path("/x/w.sock")) == Path("/x/w.log")
