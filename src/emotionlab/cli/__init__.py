"""The ``emotionlab`` command: one entry point, grouped subcommands, ``--help`` everywhere.

Each area registers its commands from its own module (``register(app)``), so the modules stay independent.
"""
from __future__ import annotations

import importlib
import sys

import typer

from .common import console, fail  # noqa: F401  (console: re-exported for subcommand modules)

app = typer.Typer(
    name="emotionlab",
    help="Face and text emotion recognition: train, evaluate, explain and serve, fully offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Modules that add commands; each defines register(app). Missing optional modules are skipped.
COMMAND_MODULES = ("data", "models", "predict", "explain", "text", "serve", "review", "maintain")


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        from .. import __version__

        typer.echo(__version__)
        raise typer.Exit()


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                continue
            raise
        mod.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user mistakes print one clear line, not a traceback."""
    from ..data.errors import DataError

    try:
        app(args=argv, standalone_mode=True)
    except (DataError, FileNotFoundError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        fail(str(msg))


if __name__ == "__main__":
    main(sys.argv[1:])
