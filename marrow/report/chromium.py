"""Headless Chromium driven over the DevTools protocol, with the standard library only.

Chromium's `--remote-debugging-pipe` speaks the DevTools protocol over two pipes (it reads
commands on file descriptor 3 and writes replies and events on 4, each message JSON ended by a
NUL byte), so no port is opened and no websocket client is needed. `Browser` launches one
headless Chromium with a new empty profile and the flags this closed network needs, and `Page`
is one tab: `send()` a command and get its result, `events()` for what happened meanwhile.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marrow.errors import MarrowError, UsageError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = (
    "install it with `apt-get update && apt-get install -y --no-install-recommends chromium` "
    "(Debian/Ubuntu), or set MARROW_CHROMIUM to the browser's path"
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)

_LAUNCHER = (
    "import os, sys\n"
    "read, write = int(sys.argv[1]), int(sys.argv[2])\n"
    "os.dup2(read, 3); os.dup2(write, 4); os.close(read); os.close(write)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


class BrowserError(MarrowError):
    """Chromium could not be started or did not answer as the DevTools protocol says."""


def _high_pipe() -> tuple[int, int]:
    """os.pipe() on descriptors above 4, so that putting them on 3 and 4 in the child cannot clobber them."""
    import fcntl

    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return ends[0], ends[1]


def find_chromium() -> str:
    """The path of a Chromium (or Chrome) executable: $MARROW_CHROMIUM, else the first on PATH."""
    chosen = os.environ.get("MARROW_CHROMIUM")
    if chosen:
        path = shutil.which(chosen)
        if path is None:
            raise UsageError(f"MARROW_CHROMIUM={chosen} is not an executable; {INSTALL_HINT}")
        return path
    for name in CANDIDATES:
        path = shutil.which(name)
        if path is not None:
            return path
    raise UsageError(f"the PDF is printed by headless Chromium, which is not installed: {INSTALL_HINT}")


@dataclass
class Page:
    """One tab, attached with a flat session: commands go to it, its events are kept for `events()`."""

    browser: Browser
    session: str
    target: str

    def send(self, method: str, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        """The first event `method` of this tab (already received or still to come)."""
        return self.browser.wait_for(method, self.session, timeout)

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})

    def events(self) -> list[dict[str, Any]]:
        """Every event of this tab received so far (each returned once)."""
        return self.browser.events(self.session)

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        reply = self.send(
            "Runtime.evaluate", timeout=timeout, expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise BrowserError(f"script failed in the page: {reply['exceptionDetails'].get('text', reply)}")
        return reply["result"].get("value")


class Browser:
    """A headless Chromium process; use as a context manager so the process and its profile are removed."""

    def __init__(self, executable: str | None = None, timeout: float = 30.0) -> None:
        self.executable = executable or find_chromium()
        self.timeout = timeout
        self._next_id = 0
        self._buffer = b""
        self._pending: list[dict[str, Any]] = []
        self._process: subprocess.Popen | None = None
        self._profile = ""

    def __enter__(self) -> Browser:
        self._profile = tempfile.mkdtemp(prefix="marrow-chromium-")
        to_browser_r, self._to_browser = _high_pipe()
        self._from_browser, from_browser_w = _high_pipe()
        # The browser must find the pipes on descriptors 3 and 4. subprocess cannot remap descriptors,
        # preexec_fn is unsafe with threads and sh redirects only descriptors 0-9, so a two-line
        # Python launcher moves them there and becomes the browser.
        command = [
            sys.executable,
            "-c",
            _LAUNCHER,
            str(to_browser_r),
            str(from_browser_w),
            self.executable,
            *FLAGS,
            f"--user-data-dir={self._profile}",
            "about:blank",
        ]
        try:
            # stderr to a file, not a pipe: a chatty browser must never block on a full pipe
            with open(Path(self._profile) / "stderr.log", "wb") as log:
                self._process = subprocess.Popen(
                    command,
                    pass_fds=(to_browser_r, from_browser_w),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
        except OSError as exc:
            shutil.rmtree(self._profile, ignore_errors=True)
            raise BrowserError(f"cannot start {self.executable}: {exc}") from None
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        os.set_blocking(self._from_browser, False)
        try:
            self.send("Browser.getVersion", timeout=self.timeout)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is not None:
            try:
                if process.poll() is None:
                    try:
                        self.send("Browser.close", timeout=5)
                    except (BrowserError, OSError):
                        pass
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self._process = None
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    # --- the protocol -----------------------------------------------------------------------------------

    def _write(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode("utf-8") + b"\0"
        while data:
            written = os.write(self._to_browser, data)
            data = data[written:]

    def _read(self, deadline: float) -> dict[str, Any]:
        """The next message from the browser, waiting until `deadline` (time.monotonic())."""
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], min(left, 0.5))
            if not ready:
                if self._process is not None and self._process.poll() is not None:
                    raise BrowserError(f"Chromium exited (code {self._process.returncode}): {self._stderr()}")
                continue
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                try:
                    code = self._process.wait(timeout=2) if self._process is not None else None
                except subprocess.TimeoutExpired:
                    code = None
                how = f"exited (code {code})" if code is not None else "closed the DevTools pipe"
                raise BrowserError(f"Chromium {how}: {self._stderr()}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _stderr(self) -> str:
        """The last lines Chromium wrote to stderr (less the noise of Debian's launcher script)."""
        try:
            text = (Path(self._profile) / "stderr.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        lines = [line for line in text.splitlines() if line.strip() and "unexpected operator" not in line]
        return " | ".join(lines[-5:])

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._write(message)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message', reply['error'])}")
                return reply.get("result", {})
            if "method" in reply:
                self._pending.append(reply)

    def wait_for(self, method: str, session: str | None, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self._pending):
                if event["method"] == method and event.get("sessionId") == session:
                    return self._pending.pop(i).get("params", {})
            self._pending.append(self._read(deadline))

    def events(self, session: str) -> list[dict[str, Any]]:
        """Every event of `session` received so far (and forget them)."""
        mine = [e for e in self._pending if e.get("sessionId") == session]
        self._pending = [e for e in self._pending if e.get("sessionId") != session]
        return mine

    def new_page(self, width: int = 1280, height: int = 900) -> Page:
        """A new tab whose viewport is `width` x `height` CSS px."""
        target = self.send("Target.createTarget", {"url": "about:blank"})
        session = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
        page = Page(self, session, target["targetId"])
        page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        return page


def open_file(page: Page, path: Path, timeout: float = 60.0) -> None:
    """Load a local HTML file in `page` and wait until it (and its images) finished loading."""
    page.send("Page.enable")
    page.send("Page.navigate", url=Path(path).resolve().as_uri())
    page.wait_for("Page.loadEventFired", timeout=timeout)
