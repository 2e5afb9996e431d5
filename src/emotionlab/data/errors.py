"""Errors for bad input: each names the file, the line or field, and what was expected."""
from __future__ import annotations


class DataError(ValueError):
    """A dataset file does not have the expected layout or content."""

    def __init__(self, path: object, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
