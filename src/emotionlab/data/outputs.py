"""Paths a user names for a command, checked before any work runs.

A results file given as an existing folder (or a folder given as an existing file) used to fail with a
traceback *after* the model ran, losing the results. These checks look only at the file system (they create
nothing), so a command can call them first and fail in a second, with one line that names the flag and the
path. Every error is a :class:`PathError` (a :class:`~emotionlab.data.errors.DataError`, so a ``ValueError``).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import DataError

STDOUT = "-"


class PathError(DataError):
    """A path given for a command cannot serve: ``"{what} {path}: {problem}"``."""

    def __init__(self, path: object, message: str, what: str = "path"):
        self.what = what
        super().__init__(f"{what} {path}" if what else path, message)
        self.path = str(path)


def _first_existing(path: Path) -> Path:
    """The nearest ancestor of ``path`` (not ``path`` itself) that exists."""
    p = path.absolute().parent
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _check_creatable(path: Path, what: str, kind: str) -> None:
    """``path`` does not exist: its nearest existing ancestor must be a writable folder."""
    anc = _first_existing(path)
    if not anc.is_dir():
        raise PathError(path, f"cannot create this {kind}: {anc} is a file, not a folder", what)
    if not os.access(anc, os.W_OK | os.X_OK):
        raise PathError(path, f"cannot create this {kind}: no permission to write in {anc}", what)


def _suffix_ok(path: Path, suffixes: Iterable[str]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s.lower()) for s in suffixes)


def check_output_file(path: str | os.PathLike, what: str = "--out", suffixes: Iterable[str] | None = None,
                      allow_stdout: bool = False) -> Path:
    """``path`` can be written as a file: not a folder, ending in one of ``suffixes`` (when given), in a folder
    that exists or can be created. ``allow_stdout``: ``-`` (standard output) passes. Returns the path."""
    if allow_stdout and str(path) == STDOUT:
        return Path(path)
    p = Path(path)
    if str(path).strip() == "":
        raise PathError("''", "empty path; expected a file name", what)
    if suffixes is not None:
        suffixes = tuple(suffixes)
        if not _suffix_ok(p, suffixes):
            raise PathError(p, f"expected a {' or '.join(suffixes)} file", what)
    if p.is_dir():
        raise PathError(p, "is a folder; expected a file path", what)
    if p.exists():
        if not os.access(p, os.W_OK):
            raise PathError(p, "the file exists and is not writable", what)
        return p
    _check_creatable(p, what, "file")
    return p


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """``path`` is a folder, or can be created as one: not an existing file, under a writable folder."""
    p = Path(path)
    if str(path).strip() == "":
        raise PathError("''", "empty path; expected a folder", what)
    if p.exists() or os.path.lexists(p):
        if not p.is_dir():
            raise PathError(p, "is a file, not a folder; expected a folder (an existing one or one to create)",
                            what)
        if not os.access(p, os.W_OK | os.X_OK):
            raise PathError(p, "no permission to write in this folder", what)
        return p
    _check_creatable(p, what, "folder")
    return p


def check_input_path(path: str | os.PathLike, what: str = "path", kind: str | None = None) -> Path:
    """``path`` exists (``kind`` ``"file"`` or ``"dir"``: and is one). Returns the path."""
    p = Path(path)
    if not p.exists():
        raise PathError(p, "not found", what)
    if kind == "file" and p.is_dir():
        raise PathError(p, "is a folder; expected a file", what)
    if kind == "dir" and not p.is_dir():
        raise PathError(p, "is a file; expected a folder", what)
    return p
