"""The one user-error type. The CLI catches it in one place and prints one line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where in a user's file the problem is; line and column are 1-based, 0 when unknown."""

    path: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line and self.column:
            return f"{self.path}:{self.line}:{self.column}"
        if self.line:
            return f"{self.path}:{self.line}"
        return self.path


class PlaitError(Exception):
    """A problem the user can fix: bad input, missing tool, failed precondition.

    Rendered as `location: what is wrong — how to fix it`.
    """

    def __init__(self, message: str, fix: str = "", location: Location | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.location = location

    def lines(self) -> list[str]:
        """Every problem, one line each (a plan can have several)."""
        return [str(self)]

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        return f"{text} — {self.fix}" if self.fix else text
