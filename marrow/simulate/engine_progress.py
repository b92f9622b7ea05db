"""A study's progress bar (replicates done, elapsed, estimated time left), on stderr; silent when off."""

from __future__ import annotations

from types import TracebackType
from typing import Any


class StudyProgress:
    """`with StudyProgress(total, done, enabled) as bar: bar.advance(n)`; does nothing when not enabled."""

    def __init__(self, total: int, done: int = 0, enabled: bool = False, label: str = "replicates") -> None:
        self.total, self.done, self.enabled, self.label = total, done, enabled, label
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> StudyProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.done)
        return self

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
