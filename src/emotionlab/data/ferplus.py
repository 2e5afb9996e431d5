"""FER+ vote reader (``fer2013new.csv``, Barsoum et al. 2016, MIT), row-aligned with FER-2013.

Each image has 10 annotator votes over neutral, happiness, surprise, sadness, anger, disgust, fear,
contempt, unknown and NF (not a face). Following the FER+ reference code we remove single-vote outliers,
build soft distributions over the 8 emotions, take a majority label only when it holds more than half of
the remaining votes, and mark images whose top choice is unknown / not-a-face as invalid.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .fer2013 import open_text, utf8_error
from .labels import FER7, FERPLUS8

VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                "unknown", "NF")
# FER+ column -> index in FERPLUS8 (angry, disgust, fear, happy, sad, surprise, neutral, contempt)
_TO_FERPLUS8 = [FERPLUS8.index(c) for c in VOTE_COLUMNS[:8]]


@dataclass
class FerPlusVotes:
    votes: np.ndarray  # (N,10) raw counts in file column order
    soft: np.ndarray  # (N,8) FERPLUS8 order, rows sum to 1 (0 for invalid rows)
    majority: np.ndarray  # (N,) FERPLUS8 index, -1 when no majority or unknown / not-a-face
    valid: np.ndarray  # (N,) bool: top choice is an emotion
    usage: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.majority)

    def soft_fer7(self) -> np.ndarray:
        """Soft targets over FER7 (contempt dropped, renormalized); invalid rows are all zero."""
        s = self.soft[:, : len(FER7)].copy()
        tot = s.sum(1, keepdims=True)
        np.divide(s, tot, out=s, where=tot > 0)
        s[tot[:, 0] == 0] = 0
        return s


def votes_to_targets(votes: np.ndarray, min_votes: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,10) votes -> soft (N,8), majority (N,), valid (N,) per Barsoum et al. 2016."""
    v = votes.astype(np.float64).copy()
    v[v < min_votes] = 0.0  # single votes are treated as outliers
    total = v.sum(1)
    top = v.argmax(1)
    valid = (total > 0) & (top < 8)
    emo = v[:, :8]
    esum = emo.sum(1, keepdims=True)
    soft = np.zeros((len(v), 8))
    np.divide(emo, esum, out=soft, where=esum > 0)
    soft[~valid] = 0.0
    soft8 = np.zeros_like(soft)
    soft8[:, _TO_FERPLUS8] = soft
    has_major = valid & (v.max(1) > 0.5 * total)
    majority = np.where(has_major, np.asarray(_TO_FERPLUS8)[np.minimum(top, 7)], -1)
    return soft8, majority.astype(np.int64), valid


def load_ferplus(path: str | os.PathLike) -> FerPlusVotes:
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        return _read_votes(path)
    except UnicodeDecodeError as e:
        raise utf8_error(path, e) from None


def _read_votes(path: Path) -> FerPlusVotes:
    votes, usage, names = [], [], []
    with open_text(path) as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in VOTE_COLUMNS if c not in header]
        if missing:
            raise DataError(path, f"missing vote columns {missing}; header is {header}", line=1)
        idx = [header.index(c) for c in VOTE_COLUMNS]
        iu = header.index("Usage") if "Usage" in header else None
        iname = header.index("Image name") if "Image name" in header else None
        for lineno, rec in enumerate(reader, start=2):
            if not rec:
                continue
            try:
                row = [int(rec[i]) for i in idx]
            except (ValueError, IndexError):
                raise DataError(path, f"expected 10 integer vote counts in columns {list(VOTE_COLUMNS)}, "
                                      f"got {rec}", line=lineno) from None
            if min(row) < 0:
                raise DataError(path, f"negative vote count in {row}", line=lineno)
            votes.append(row)
            usage.append(rec[iu].strip() if iu is not None else "")
            names.append(rec[iname].strip() if iname is not None else "")
    if not votes:
        raise DataError(path, "no vote rows")
    v = np.asarray(votes, dtype=np.int64)
    soft, majority, valid = votes_to_targets(v)
    return FerPlusVotes(votes=v, soft=soft, majority=majority, valid=valid, usage=np.asarray(usage), names=names)


def _aligned_rows(ds, votes: FerPlusVotes, check_usage: bool = True) -> np.ndarray:
    """The FER+ row of each dataset row (``ds.rows``), checked: in range and, when FER+ has a Usage column,
    the same split on both sides (files that are not row-aligned fail here, not as silently wrong labels)."""
    rows = ds.rows if ds.rows is not None else np.arange(len(ds))
    if rows.max() >= len(votes):
        raise DataError(ds.source, f"FER+ file has {len(votes)} rows but the dataset refers to row {rows.max()}")
    if check_usage and votes.usage[0]:
        bad = np.flatnonzero(votes.usage[rows] != ds.usage)
        if len(bad):
            raise DataError(ds.source, f"FER+ Usage disagrees with FER-2013 at {len(bad)} rows (first: row "
                                       f"{rows[bad[0]]}); are the files row-aligned?")
    return rows


def ferplus_dataset(ds, votes: FerPlusVotes, majority_only: bool = False, check_usage: bool = True):
    """FER-2013 rows relabelled by FER+ over its 8 classes (label set ``ferplus8``: FER7 + contempt).

    The FER+ protocol (Barsoum et al. 2016): rows whose most voted choice is unknown / not-a-face are not
    faces with an emotion and are left out; ``labels`` is the majority emotion, and ``soft`` the vote
    distribution (the "probability" / cross-entropy targets). Rows without a majority are kept with their most
    voted emotion for training, or left out with ``majority_only`` (how the test split is scored). What was
    left out is counted in ``extra["ferplus"]``, never dropped silently.
    """
    from .fer2013 import FaceDataset

    rows = _aligned_rows(ds, votes, check_usage)
    valid, major, soft = votes.valid[rows], votes.majority[rows], votes.soft[rows]
    keep = valid & (major >= 0) if majority_only else valid
    idx = np.flatnonzero(keep)
    labels = np.where(major[idx] >= 0, major[idx], soft[idx].argmax(1)).astype(np.int64)
    out = FaceDataset(images=ds.images[idx], labels=labels, usage=ds.usage[idx], label_set=FERPLUS8,
                      rows=rows[idx], soft=soft[idx].astype(np.float32),
                      paths=None if ds.paths is None else [ds.paths[i] for i in idx], source=ds.source,
                      extra={k: v for k, v in ds.extra.items() if not isinstance(v, np.ndarray)})
    out.extra["ferplus"] = {"kept": int(len(idx)), "excluded_not_an_emotion": int((~valid).sum()),
                            "excluded_no_majority": int((valid & (major < 0)).sum()) if majority_only else 0,
                            "no_majority_kept": 0 if majority_only else int((valid & (major < 0)).sum())}
    return out


def attach_ferplus(ds, votes: FerPlusVotes, check_usage: bool = True):
    """Attach FER+ soft targets (FER7) to a FER-2013 dataset, aligned through ``ds.rows``.

    Rows FER+ marks invalid (unknown / not a face) keep their one-hot FER-2013 label.
    """
    rows = _aligned_rows(ds, votes, check_usage)
    soft = votes.soft_fer7()[rows]
    onehot = np.eye(len(FER7))[ds.labels]
    ok = soft.sum(1) > 0
    soft[~ok] = onehot[~ok]
    ds.soft = soft.astype(np.float32)
    ds.extra["ferplus_valid"] = ok
    return ds


def wants_ferplus_labels(ds, label_set: str) -> bool:
    """True when ``label_set`` is FER+'s 8 classes and ``ds`` holds FER-2013 rows (their 7 labels cannot serve)."""
    return label_set == FERPLUS8.name and ds.rows is not None and ds.label_set.name == FER7.name


def with_ferplus(ds, label_set: str, ferplus: str | os.PathLike | FerPlusVotes | None, majority_only: bool = False):
    """``ds`` as training and evaluation see it: relabelled by FER+ for ``ferplus8`` on FER-2013 rows (the votes
    are then required), else with FER+ soft targets attached when votes are given, else unchanged. One rule for
    ``train``, ``cv`` and the validation split (``majority_only``, as the FER+ test is scored)."""
    votes = load_ferplus(ferplus) if ferplus is not None and not isinstance(ferplus, FerPlusVotes) else ferplus
    if wants_ferplus_labels(ds, label_set):
        if votes is None:
            raise ValueError("label_set ferplus8 on FER-2013 rows needs the FER+ votes: --ferplus fer2013new.csv")
        return ferplus_dataset(ds, votes, majority_only=majority_only)
    if votes is not None:
        attach_ferplus(ds, votes)
    return ds
