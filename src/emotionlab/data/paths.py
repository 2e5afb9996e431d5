"""Where datasets are looked for when the user names no path: one rule for benchmarks, readers and tests.

Why one function: the benchmarks default to ``$EMOTIONLAB_DATA`` or the ``shared/data`` folder beside the
checkout; written out in every script, the rule drifted (some scripts resolved it from the repository, one from
the current directory).
"""
from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[3]  # src/emotionlab/data/paths.py -> the checkout


def default_data_root() -> Path:
    """``$EMOTIONLAB_DATA``, else ``../shared/data`` beside a source checkout, else relative to the current dir."""
    env = os.environ.get("EMOTIONLAB_DATA")
    if env:
        return Path(env)
    if (_REPO / "src" / "emotionlab").is_dir():
        return _REPO.parent / "shared" / "data"
    return Path("..") / "shared" / "data"


def default_fer2013_csv() -> Path:
    """The FER-2013 CSV (Kaggle layout, gzipped) under :func:`default_data_root`."""
    return default_data_root() / "fer2013" / "fer2013.csv.gz"
