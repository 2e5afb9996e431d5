"""Duplicate and near-duplicate faces: exact content hashes, a 64-bit DCT perceptual hash, leakage reports.

FER-2013 holds ~1,514 groups of pixel-identical images, some across Training / test splits and some with
conflicting labels. Exact groups come from SHA-1 of the pixels; near groups from pHash (Zauner 2010, as in
the ``imagehash`` package: 32x32 resize, 2-D DCT, 8x8 low frequencies against their median) with a Hamming
threshold. Near search avoids O(N^2) by multi-index hashing: split the 64 bits into ``threshold + 1`` bands;
two hashes within ``threshold`` bits agree exactly on at least one band (pigeonhole), so only rows sharing a
band value are compared. Groups are the connected components of the pair graph (scipy), so near groups
are transitive and can chain; the CSV lists every member with its hash so a reviewer can see why.
"""
from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .fer2013 import FaceDataset

Progress = Callable[[int], None]
# Splits ranked for the --drop policy: a group keeps its copy in the highest-ranked split.
SPLIT_RANK = {"PrivateTest": 3, "test": 3, "PublicTest": 2, "val": 2, "Training": 1, "train": 1}
MAX_THRESHOLD = 12


def content_hashes(images: np.ndarray, progress: Progress | None = None) -> list[str]:
    """SHA-1 hex digest of each image's pixels (shape and bytes)."""
    out = []
    for i, im in enumerate(np.ascontiguousarray(images)):
        out.append(hashlib.sha1(im.tobytes()).hexdigest())
        if progress and (i + 1) % 2048 == 0:
            progress(2048)
    if progress:
        progress(len(out) % 2048)
    return out


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * x + 1) * k / (2 * n))
    c[0] /= np.sqrt(2.0)
    return c


def phash(images: np.ndarray, hash_size: int = 8, highfreq_factor: int = 4,
          progress: Progress | None = None, chunk: int = 4096) -> np.ndarray:
    """64-bit DCT perceptual hashes (N,) uint64; each chunk's low-frequency DCT is two matrix products."""
    imgs = np.asarray(images)
    if imgs.ndim != 3:
        raise ValueError(f"images have shape {imgs.shape}, expected (N, H, W) grayscale")
    side = hash_size * highfreq_factor
    c = _dct_matrix(side)[:hash_size]  # only the low-frequency rows of the DCT basis are needed
    out = np.empty(len(imgs), np.uint64)
    for s in range(0, len(imgs), chunk):
        part = imgs[s:s + chunk]
        small = np.stack([cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA) for im in part])
        y = small.astype(np.float64).reshape(-1, side) @ c.T  # X @ C^T, (n*side, h)
        y = y.reshape(len(part), side, hash_size).transpose(0, 2, 1).reshape(-1, side) @ c.T  # (C X C^T)^T
        low = y.reshape(len(part), hash_size, hash_size).transpose(0, 2, 1).reshape(len(part), -1)
        bits = low > np.median(low, axis=1, keepdims=True)
        out[s:s + len(part)] = np.packbits(bits, axis=1).view(">u8").reshape(-1)  # big-endian bit order
        if progress:
            progress(len(part))
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def near_pairs(hashes: np.ndarray, threshold: int) -> np.ndarray:
    """All pairs (i < j) with Hamming distance <= threshold, as an (M, 2) int64 array.

    Multi-index hashing: bands of 64 / (threshold + 1) bits; candidates share a band value.
    """
    if not 0 <= threshold <= MAX_THRESHOLD:
        raise ValueError(f"Hamming threshold {threshold} out of range, expected 0..{MAX_THRESHOLD} for 64-bit hashes")
    h = np.asarray(hashes, dtype=np.uint64)
    n = len(h)
    nb = threshold + 1
    edges = np.linspace(0, 64, nb + 1).astype(int)
    found: list[np.ndarray] = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        key = (h >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        ks = key[order]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        sizes = np.diff(np.r_[starts, n])
        for s, m in zip(starts[sizes > 1], sizes[sizes > 1]):
            members = order[s:s + m]
            a, b = np.triu_indices(m, 1)
            i, j = members[a], members[b]
            keep = hamming(h[i], h[j]) <= threshold
            if keep.any():
                found.append(np.stack([np.minimum(i, j)[keep], np.maximum(i, j)[keep]], 1))
    if not found:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    return np.unique(pairs, axis=0)


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Group id per row (connected components); rows with no partner get -1, ids are 0..G-1 by first row."""
    if len(pairs) == 0:
        return np.full(n, -1, np.int64)
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    sizes = np.bincount(comp)
    comp = np.where(sizes[comp] > 1, comp, -1)
    # renumber groups 0..G-1 in order of their first row, for stable, readable CSVs
    uniq, first = np.unique(comp[comp >= 0], return_index=True)
    order = np.argsort(np.flatnonzero(comp >= 0)[first])
    remap = np.full(comp.max() + 1 if len(uniq) else 1, -1, np.int64)
    remap[uniq[order]] = np.arange(len(uniq))
    return np.where(comp >= 0, remap[np.maximum(comp, 0)], -1)


def _exact_pairs(digests: list[str]) -> np.ndarray:
    _, inv = np.unique(np.asarray(digests), return_inverse=True)
    order = np.argsort(inv, kind="stable")
    same = inv[order][1:] == inv[order][:-1]
    return np.stack([order[:-1][same], order[1:][same]], 1).astype(np.int64)


@dataclass
class DedupResult:
    """Per-row group ids and hashes, plus the summary that the CLI prints."""

    group: np.ndarray  # (N,) group id or -1
    exact_group: np.ndarray  # (N,) exact-duplicate group id or -1
    sha1: list[str]
    phash: np.ndarray | None
    kind: str  # "exact" or "near"
    threshold: int | None
    summary: dict = field(default_factory=dict)


def _summarize(ds: FaceDataset, group: np.ndarray) -> dict:
    ids = group[group >= 0]
    n_groups = int(ids.max() + 1) if len(ids) else 0
    cross = 0
    pair_counts: Counter[str] = Counter()
    conflict_groups = conflict_rows = 0
    sizes = np.bincount(ids, minlength=n_groups) if n_groups else np.zeros(0, int)
    members = np.argsort(group, kind="stable")[np.sum(group < 0):]
    bounds = np.r_[0, np.cumsum(sizes)]
    for g in range(n_groups):
        idx = members[bounds[g]:bounds[g + 1]]
        splits = sorted(set(ds.usage[idx].tolist()))
        if len(splits) > 1:
            cross += 1
            for a in range(len(splits)):
                for b in range(a + 1, len(splits)):
                    pair_counts[f"{splits[a]}~{splits[b]}"] += 1
        if len(set(ds.labels[idx].tolist())) > 1:
            conflict_groups += 1
            conflict_rows += len(idx)
    return {
        "groups": n_groups,
        "rows": int(len(ids)),
        "redundant_rows": int(len(ids) - n_groups),
        "largest_group": int(sizes.max()) if n_groups else 0,
        "cross_split_groups": cross,
        "cross_split_pairs": dict(sorted(pair_counts.items())),
        "conflicting_label_groups": conflict_groups,
        "conflicting_label_rows": conflict_rows,
    }


def find_duplicates(ds: FaceDataset, near: bool = False, threshold: int = 4,
                    progress: Progress | None = None) -> DedupResult:
    """Exact duplicate groups, and with ``near`` the pHash groups within ``threshold`` bits (a superset)."""
    digests = content_hashes(ds.images, progress)
    ex_pairs = _exact_pairs(digests)
    exact_group = _components(len(ds), ex_pairs)
    summary = {"n": int(len(ds)), "exact": _summarize(ds, exact_group)}
    if not near:
        return DedupResult(exact_group, exact_group, digests, None, "exact", None, summary)
    ph = phash(ds.images, progress=progress)
    nr_pairs = near_pairs(ph, threshold)
    group = _components(len(ds), np.concatenate([ex_pairs, nr_pairs]))
    summary["near"] = {"hash": "phash64-dct", "threshold": threshold, "pairs": int(len(nr_pairs)),
                       **_summarize(ds, group)}
    summary["near"]["rows_beyond_exact"] = int((group >= 0).sum() - (exact_group >= 0).sum())
    return DedupResult(group, exact_group, digests, ph, "near", threshold, summary)


def drop_plan(ds: FaceDataset, res: DedupResult) -> np.ndarray:
    """Boolean keep-mask under the documented policy.

    * a group whose members carry different labels is dropped whole (its true label is unknowable);
    * otherwise one member is kept: the first row of the highest-ranked split (PrivateTest / test, then
      PublicTest / val, then Training / train), so a test image never keeps a copy in Training and the
      test sets shrink as little as possible;
    * rows in no group are always kept.
    """
    keep = np.ones(len(ds), bool)
    group = res.group
    for g in np.unique(group[group >= 0]):
        idx = np.flatnonzero(group == g)
        keep[idx] = False
        if len(set(ds.labels[idx].tolist())) > 1:
            continue
        rank = np.array([SPLIT_RANK.get(u, 0) for u in ds.usage[idx]])
        keep[idx[np.argmax(rank)]] = True  # argmax takes the first row among equal ranks
    return keep


def write_groups_csv(path: str | os.PathLike, ds: FaceDataset, res: DedupResult,
                     keep: np.ndarray | None = None) -> Path:
    """One line per grouped row: group, kind, size, row, usage, label, hashes, flags and the --drop action."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = ds.label_set.labels
    rows = ds.rows if ds.rows is not None else np.arange(len(ds))
    if keep is None:
        keep = drop_plan(ds, res)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["group", "kind", "size", "row", "path", "usage", "label", "label_name", "sha1", "phash",
                    "exact_group", "cross_split", "conflicting_labels", "action"])
        grouped = np.flatnonzero(res.group >= 0)
        for g in np.unique(res.group[grouped]):
            idx = np.flatnonzero(res.group == g)
            kind = "exact" if len({res.sha1[i] for i in idx}) == 1 else "near"
            cross = len(set(ds.usage[idx].tolist())) > 1
            conflict = len(set(ds.labels[idx].tolist())) > 1
            for i in idx:
                w.writerow([int(g), kind, len(idx), int(rows[i]), ds.paths[i] if ds.paths else "", ds.usage[i],
                            int(ds.labels[i]), names[int(ds.labels[i])], res.sha1[i],
                            f"{int(res.phash[i]):016x}" if res.phash is not None else "",
                            int(res.exact_group[i]), int(cross), int(conflict), "keep" if keep[i] else "drop"])
    return path
