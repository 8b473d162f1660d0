"""The one exception for input the user can fix: a bad folder, file or line, or a bad option."""

from __future__ import annotations

from pathlib import Path


class ReportInputError(ValueError):
    """Bad input to ``m1-report``, located by file and line where possible.

    ``str(error)`` is one line: ``path:line: what is wrong (how to fix it)``.  ``more`` holds further
    problems of the same kind (one line each), so that a user sees every bad file at once.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        hint: str | None = None,
        more: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.hint = hint
        self.more = list(more)
        super().__init__(self.render())

    def location(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "

    def render(self) -> str:
        text = self.location() + self.message
        if self.hint:
            text += f" ({self.hint})"
        if self.more:
            text += f" [and {len(self.more)} more problem{'s' if len(self.more) > 1 else ''}]"
        return text

    def lines(self) -> list[str]:
        """Every problem, one line each (the first is the main one, without the "and N more" suffix)."""
        first = self.location() + self.message + (f" ({self.hint})" if self.hint else "")
        return [first, *self.more]


def located(path: Path | str, line: int | None, message: str) -> str:
    """``path:line: message`` (the form of every problem line)."""
    return f"{path}:{line}: {message}" if line is not None else f"{path}: {message}"
