"""Domain errors and the exit codes they map to.

Errors are values: a `DataError` holds every problem found, so a user fixes all of them in one pass.
The CLI turns them into messages and exit codes in one place (`marrow.cli`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from marrow.formatting import plural

EXIT_OK = 0
EXIT_DIAGNOSTICS = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class Problem:
    """One problem with an input: where it is and what was expected."""

    file: str
    message: str
    column: str | None = None
    rows: tuple[int, ...] = ()
    expected: str | None = None

    def describe(self, max_rows: int = 5) -> str:
        """One readable line: file, column, first rows (1-based data rows) and expectation."""
        where = self.file
        if self.column:
            where += f", column '{self.column}'"
        text = f"{where}: {self.message}"
        if len(self.rows) == 1:
            text += f" (row {self.rows[0]})"
        elif len(self.rows) <= max_rows:
            text += f" (rows {', '.join(str(r) for r in self.rows)})"
        elif self.rows:
            shown = ", ".join(str(r) for r in self.rows[:max_rows])
            text += f" (rows {shown} and {len(self.rows) - max_rows} more; {len(self.rows)} in all)"
        if self.expected:
            text += f"; expected {self.expected}"
        return text


class MarrowError(Exception):
    """Base class of errors that the CLI reports without a traceback."""

    exit_code = EXIT_USAGE


class DataError(MarrowError):
    """Input data failed validation; holds every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = [p.describe() for p in self.problems]
        super().__init__(f"{plural(len(lines), 'data problem')}:\n  - " + "\n  - ".join(lines))


class UsageError(MarrowError):
    """A bad option, prior, plan or file path supplied by the user."""


class OutputExistsError(MarrowError):
    """Refused to overwrite an existing output without --force."""

    def __init__(self, path: str):
        super().__init__(f"{path} already exists; pass --force to overwrite it")


@dataclass
class ProblemList:
    """Collects problems while validating, then raises them all at once."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, *args, **kwargs) -> None:
        self.problems.append(Problem(*args, **kwargs))

    def raise_if_any(self) -> None:
        if self.problems:
            raise DataError(self.problems)
