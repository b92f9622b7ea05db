"""The worker's wire protocol and where its socket lives. Standard library only.

A message is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON (one object).
A connection carries one request and one response, then closes.

Request:  {"op": "run" | "ping" | "status" | "stop", "argv": [...], "cwd": str,
           "marrow_version": str, "python": str, "marrow_path": str}
Response to "run": {"stdout": str, "stderr": str, "exit_code": int}, or {"refused": reason} when the
worker will not run it (another marrow version, Python executable or marrow installation; marrow's
files changed since the worker started; the worker is stopping), in which case the client runs the
command itself. Any op may be answered with {"error": message}.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from pathlib import Path

HEADER = struct.Struct("!I")
MAX_MESSAGE = 1 << 30  # 1 GiB: far above any command's output, low enough to catch a corrupt header
OPS = ("run", "ping", "status", "stop")
# sockaddr_un.sun_path holds 108 bytes on Linux (104 on macOS), including the terminating NUL.
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107


class ProtocolError(Exception):
    """The peer closed the connection early or sent something that is not a message."""


def send_message(sock: socket.socket, message: dict) -> None:
    """Write one length-prefixed JSON message."""
    payload = json.dumps(message, ensure_ascii=False).encode("utf-8")
    if len(payload) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(payload):,} bytes exceeds the limit of {MAX_MESSAGE:,}")
    sock.sendall(HEADER.pack(len(payload)) + payload)


def recv_message(sock: socket.socket) -> dict:
    """Read one length-prefixed JSON message; ProtocolError if the peer closes first."""
    (size,) = HEADER.unpack(_recv_exactly(sock, HEADER.size))
    if size > MAX_MESSAGE:
        raise ProtocolError(f"message header announces {size:,} bytes (limit {MAX_MESSAGE:,})")
    try:
        message = json.loads(_recv_exactly(sock, size).decode("utf-8"))
    except ValueError as exc:
        raise ProtocolError(f"not a JSON message: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    return message


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise ProtocolError("connection closed before the message was complete")
        chunks += chunk
    return bytes(chunks)


def socket_path(environ=None) -> Path:
    """$MARROW_WORKER_SOCKET, else $XDG_RUNTIME_DIR/marrow/worker.sock, else ~/.cache/marrow/worker-UID.sock."""
    environ = os.environ if environ is None else environ
    if environ.get("MARROW_WORKER_SOCKET"):
        return Path(environ["MARROW_WORKER_SOCKET"]).expanduser()
    if environ.get("XDG_RUNTIME_DIR"):
        return Path(environ["XDG_RUNTIME_DIR"]) / "marrow" / "worker.sock"
    return Path.home() / ".cache" / "marrow" / f"worker-{os.getuid()}.sock"


def log_path(sock_path: Path) -> Path:
    """The worker's log file, next to its socket: worker.sock -> worker.log."""
    return sock_path.with_suffix(".log") if sock_path.suffix else sock_path.with_name(sock_path.name + ".log")


def open_private_log(path: Path):
    """Open the worker's log for writing, truncated, mode 0600 like its socket (an older, more
    readable log is made private first); commands' outputs can be in it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # os.open's mode applies only to a new file
    return os.fdopen(fd, "w")


def make_private_dirs(folder: Path) -> None:
    """Create `folder` and missing parents with mode 0700 (existing folders are left as they are)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)
        os.chmod(created, 0o700)  # mkdir's mode is masked by the umask


def marrow_path() -> str:
    """The folder of the marrow package in use (tells installations apart)."""
    return str(Path(__file__).resolve().parent.parent)


def source_fingerprint() -> str:
    """Number, latest modification time and total size of marrow's files: changes when its code does.

    The worker computes it when it starts and before each command (about a millisecond): a worker
    whose files were edited or upgraded since must not run the old code (it restarts instead)."""
    root = Path(marrow_path())
    count = latest = total = 0
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if d != "__pycache__"]
        for name in files:
            try:
                stat = os.stat(os.path.join(folder, name))
            except OSError:
                continue
            count += 1
            total += stat.st_size
            latest = max(latest, stat.st_mtime_ns)
    return f"{root}:{count}:{latest}:{total}"


def identity() -> dict[str, str]:
    """What must be equal on both sides for the worker to run a client's command."""
    from marrow.version import __version__

    return {"marrow_version": __version__, "python": sys.executable, "marrow_path": marrow_path()}


def mismatch(request: dict, own: dict[str, str]) -> str:
    """Why a worker with identity `own` must not run `request` ('' when it may)."""
    names = {"marrow_version": "marrow version", "python": "Python executable", "marrow_path": "marrow installation"}
    for key, label in names.items():
        same = _same_python if key == "python" else str.__eq__
        if not isinstance(request.get(key), str) or not same(request[key], own.get(key, "")):
            return f"{label} differs (worker: {own.get(key)}, client: {request.get(key)})"
    return ""


def _same_python(a: str, b: str) -> bool:
    """python and python3 in one virtual environment's bin folder are the same; other venvs are not."""

    def key(path: str) -> tuple[str, str]:
        return os.path.dirname(os.path.abspath(path)), os.path.realpath(path)

    return key(a) == key(b)


def process_alive(pid) -> bool:
    """Whether process `pid` still runs (a zombie child of this process counts as gone)."""
    if not isinstance(pid, int):
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: an exited worker waits as a zombie until init reaps it, which may take a second
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
