"""Shared fixtures: tiny FER-style datasets made on the fly; the real data only for slow tests."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMOTIONLAB_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Parse caches go to a temporary directory, never the user's ~/.cache."""
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))


def make_fer_rows(n: int = 70, seed: int = 0, splits=("Training", "PublicTest", "PrivateTest")):
    """Synthetic FER-2013 rows whose classes are learnable: class k brightens a band at row 6k."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 7
    images = rng.integers(0, 60, size=(n, 48, 48)).astype(np.uint8)
    for i, y in enumerate(labels):
        images[i, 6 * y: 6 * y + 6] = 220
    usage = np.array([splits[i % len(splits)] for i in range(n)])
    return images, labels, usage


@pytest.fixture
def tiny_fer_csv(tmp_path) -> Path:
    from emotionlab.data.fer2013 import write_fer_csv

    images, labels, usage = make_fer_rows(70)
    path = tmp_path / "tiny_fer.csv"
    write_fer_csv(path, images, labels, usage)
    return path


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "fer2013" / "fer2013.csv.gz").exists():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA
