"""Seeded stratified train/val/test splits and k-fold index files."""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split


def stratified_split(labels: np.ndarray, val_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted train / val / test indices; sizes are round(frac * N) of the whole set.

    Sizes are passed to scikit-learn as integers: a float ratio like 0.1 / 0.9 of 63 rows is
    7.000000000000001, which scikit-learn rounds up to 8. Stratified when every present class has two rows.
    """
    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    present = np.bincount(labels)[np.bincount(labels) > 0] if len(labels) else np.zeros(0, int)
    strat = labels if len(present) == 1 or (len(present) and present.min() >= 2) else None
    n_test = int(round(test_frac * len(labels)))
    n_val = int(round(val_frac * len(labels)))
    for name, n in (("test", n_test), ("validation", n_val)):
        if strat is not None and 0 < n < len(present):
            raise ValueError(f"a stratified {name} part of {n} rows cannot hold all {len(present)} classes; "
                             f"use a larger fraction (or more data)")
    if n_test > 0:
        rest, test = train_test_split(idx, test_size=n_test, stratify=strat, random_state=seed)
    else:
        rest, test = idx, idx[:0]
    if n_val > 0:
        sub = labels[rest] if strat is not None else None
        if sub is not None and np.bincount(sub)[np.bincount(sub) > 0].min() < 2:
            sub = None
        train, val = train_test_split(rest, test_size=n_val, stratify=sub, random_state=seed)
    else:
        train, val = rest, rest[:0]
    return np.sort(train), np.sort(val), np.sort(test)


def kfold_indices(labels: np.ndarray, folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in skf.split(np.zeros(len(labels)), labels)]
