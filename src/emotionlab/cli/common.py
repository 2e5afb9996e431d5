"""Shared CLI helpers: one stderr console, a clean failure, JSON output."""
from __future__ import annotations

import json
import sys
from typing import NoReturn

from rich.console import Console

console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one error line and exit. The message is plain text: brackets in it (``images[1]``, ``[min, max]``,
    key lists) are printed as they are, not read as Rich markup."""
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise SystemExit(code)


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()
