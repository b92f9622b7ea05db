"""A study's progress bar (replicates done, elapsed, estimated time left), on stderr; silent when off."""

from __future__ import annotations

from types import TracebackType
from typing import Any


def time_left(elapsed: float | None, done_here: float, left: float) -> float | None:
    """Seconds left at this run's average pace (elapsed / replicates done since it started), or None
    before the first result. Results arrive in blocks, so a recent-speed estimate (rich's own) jumps
    wildly: one block finishing right after another reads as a near-infinite speed."""
    if elapsed is None or done_here <= 0:
        return None
    return elapsed / done_here * max(left, 0.0)


class StudyProgress:
    """`with StudyProgress(total, done, enabled) as bar: bar.advance(n)`; does nothing when not enabled."""

    def __init__(self, total: int, done: int = 0, enabled: bool = False, label: str = "replicates") -> None:
        self.total, self.done, self.enabled, self.label = total, done, enabled, label
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> StudyProgress:
        if self.enabled:
            from datetime import timedelta

            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                ProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.text import Text

            class TimeLeft(ProgressColumn):
                def render(self, task: Any) -> Text:
                    left = time_left(task.elapsed, task.completed - task.fields["done_before"], task.remaining or 0)
                    return Text("-:--:--" if left is None else str(timedelta(seconds=round(left))))

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeLeft(),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.done, done_before=self.done)
        return self

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
