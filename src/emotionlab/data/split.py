"""Seeded stratified train/val/test splits and k-fold index files."""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split


def stratified_split(labels: np.ndarray, val_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.arange(len(labels))
    labels = np.asarray(labels)
    strat = labels if np.bincount(labels).min(initial=0) >= 2 or len(np.unique(labels)) == 1 else None
    if test_frac > 0:
        rest, test = train_test_split(idx, test_size=test_frac, stratify=strat, random_state=seed)
    else:
        rest, test = idx, idx[:0]
    if val_frac > 0:
        sub = labels[rest] if strat is not None else None
        train, val = train_test_split(rest, test_size=val_frac / (1 - test_frac), stratify=sub, random_state=seed)
    else:
        train, val = rest, rest[:0]
    return np.sort(train), np.sort(val), np.sort(test)


def kfold_indices(labels: np.ndarray, folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in skf.split(np.zeros(len(labels)), labels)]
