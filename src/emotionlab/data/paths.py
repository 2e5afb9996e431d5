"""Where datasets are looked for when the user names no path: one rule for benchmarks, readers and tests.

Why one function: the benchmarks default to ``$EMOTIONLAB_DATA`` or the ``shared/data`` folder beside the
checkout; written out in every script, the rule drifted (some scripts resolved it from the repository, one from
the current directory). The checkout is found from the current directory, never from where this module is
installed: an installed package does not reach back into a source tree.
"""
from __future__ import annotations

import os
from pathlib import Path


def checkout_root(start: str | os.PathLike | None = None) -> Path | None:
    """The emotionlab source checkout holding ``start`` (default: the current directory), or None: the first
    folder upwards with ``pyproject.toml`` and ``src/emotionlab``."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() and (d / "src" / "emotionlab").is_dir():
            return d
    return None


def default_data_root() -> Path:
    """``$EMOTIONLAB_DATA``, else ``shared/data`` beside the checkout the current directory is in, else
    ``../shared/data`` relative to the current directory."""
    env = os.environ.get("EMOTIONLAB_DATA")
    if env:
        return Path(env)
    repo = checkout_root()
    if repo is not None:
        return repo.parent / "shared" / "data"
    return Path("..") / "shared" / "data"


def default_fer2013_csv() -> Path:
    """The FER-2013 CSV (Kaggle layout, gzipped) under :func:`default_data_root`."""
    return default_data_root() / "fer2013" / "fer2013.csv.gz"
