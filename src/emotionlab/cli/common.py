"""Shared CLI helpers: one stderr console (progress, notes, errors), a stdout console for a command's main
output (tables meant to be read or piped), a clean failure, JSON output."""
from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator
from typing import NoReturn

import typer
from rich.console import Console

console = Console(stderr=True)


def out_console() -> Console:
    """A console on stdout for a command's main output: tables meant to be read or piped (``models list``,
    ``models show``). Made per call, so it writes to the current ``sys.stdout``; piped (and no ``COLUMNS``),
    it is 200 columns wide so rows are not wrapped at 80."""
    import os

    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=200 if piped else None)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one error line and exit. The message is plain text: brackets in it (``images[1]``, ``[min, max]``,
    key lists) are printed as they are, not read as Rich markup."""
    from rich.markup import escape

    # soft_wrap: one line however narrow the terminal (a wrapped message reads as several errors, and breaks grep)
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


@contextlib.contextmanager
def checked() -> Iterator[None]:
    """Checks of the arguments (``resolve_device``, ``check_output_file``, ...): a ``ValueError`` they raise
    becomes one error line and exit 2, before any work runs."""
    try:
        yield
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))


def _flag(param: typer.CallbackParam) -> str:
    opts = list(getattr(param, "opts", None) or [])
    return next((o for o in opts if o.startswith("--")), opts[0] if opts else (param.name or "value").upper())


def _bound_text(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return ""


def bounds(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False):
    """A Typer option callback: the value (each value of a repeated option) must be a finite number within the
    bounds (``lo_open`` / ``hi_open``: the bound itself is excluded); else one error line naming the flag and
    the value, exit 2, while the arguments are parsed (before any work). ``None`` (not given) passes.
    ``nan`` and ``inf`` never pass: a comparison with NaN is false, so plain ``min=`` / ``max=`` let it through."""

    def check(param: typer.CallbackParam, value):
        if value is None:
            return value
        for v in value if isinstance(value, (list, tuple)) else (value,):
            ok = math.isfinite(v)
            if ok and lo is not None:
                ok = v > lo if lo_open else v >= lo
            if ok and hi is not None:
                ok = v < hi if hi_open else v <= hi
            if not ok:
                kind = "an integer" if isinstance(v, int) else "a finite number"
                fail(f"{_flag(param)} {v}: expected {kind} {_bound_text(lo, hi, lo_open, hi_open)}".rstrip())
        return value

    return check


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()
