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


def group_stratified_split(groups, strata, val_frac: float = 0.1, test_frac: float = 0.2, seed: int = 0,
                           min_per_stratum: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted train / val / test row indices where all rows of a group land in the same part.

    ``groups``: one key per row (e.g. the MD5 of the image bytes, so identical images never straddle parts);
    ``strata``: one key per row (e.g. ``"1|3|20-39"``); a group is stratified by its first row's key. Strata
    with fewer than ``min_per_stratum`` groups (and, on small data, the smallest strata until each part can
    hold one group of every stratum) are pooled into one "rare" stratum so that the split stays stratified
    (scikit-learn needs at least two members per class). Part sizes are counted in groups.
    """
    groups = np.asarray(groups)
    strata = np.asarray(strata).astype(str)
    if len(groups) != len(strata):
        raise ValueError(f"{len(groups)} group keys but {len(strata)} strata keys; expected one of each per row")
    if len(groups) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    uniq, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    _, codes = np.unique(strata[first], return_inverse=True)
    counts = np.bincount(codes)
    # A stratified part needs every stratum to fit: pool the smallest strata until there are no more strata
    # than groups in the smallest part (small data), and always pool those with < min_per_stratum groups.
    parts = [n for n in (round(test_frac * len(uniq)), round(val_frac * len(uniq))) if n > 0]
    limit = min(parts) if parts else len(counts)
    order = np.argsort(counts, kind="stable")
    pooled = np.zeros(len(counts), bool)
    pooled[counts < min_per_stratum] = True
    for k in order:
        if (~pooled).sum() + (1 if pooled.any() else 0) <= limit:
            break
        pooled[k] = True
    codes = codes.copy()
    if pooled.any():
        if counts[pooled].sum() < 2:  # a pool of one cannot be stratified: give it to the largest stratum
            codes[pooled[codes]] = int(np.argmax(np.where(pooled, -1, counts)))
        else:
            codes[pooled[codes]] = len(counts)
    _, codes = np.unique(codes, return_inverse=True)
    g_tr, g_va, g_te = stratified_split(codes, val_frac, test_frac, seed)
    part = np.empty(len(uniq), np.int8)
    part[g_tr], part[g_va], part[g_te] = 0, 1, 2
    row_part = part[inverse]
    return (np.flatnonzero(row_part == 0), np.flatnonzero(row_part == 1), np.flatnonzero(row_part == 2))
