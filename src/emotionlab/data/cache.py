"""A small on-disk cache for parsed datasets, keyed by the content hash of the source file."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir() -> Path:
    """``$EMOTIONLAB_CACHE`` or ``$XDG_CACHE_HOME/emotionlab`` (``~/.cache/emotionlab``)."""
    root = os.environ.get("EMOTIONLAB_CACHE")
    if root:
        path = Path(root)
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emotionlab"
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_hash(path: str | os.PathLike, algo: str = "sha1", chunk: int = 1 << 22) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
