"""Reviewed label corrections for FER-2013 CSVs, with an audit trail; FER+ suggests candidates.

A CHANGES.csv has columns ``row,old,new[,reason]``: ``row`` is the 0-based data row of the source CSV (the
header is not a row), ``old`` / ``new`` are label indices or names (``happy``, ``Happiness``). ``old`` must
match the current label, so a list reviewed against one version of the file cannot silently corrupt another.
The output CSV keeps every row in the original order and adds ``relabel_from`` (the previous label index,
empty when unchanged) and ``reason``.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .fer2013 import FaceDataset, open_text_out, pixels_to_text
from .ferplus import FerPlusVotes
from .labels import FER7, LabelSet


@dataclass(frozen=True)
class Change:
    row: int
    old: int
    new: int
    reason: str
    line: int  # line in CHANGES.csv, for error messages


def _parse_label(value: str, ls: LabelSet, path: Path, line: int, column: str) -> int:
    v = value.strip()
    if v.lstrip("-").isdigit():
        k = int(v)
        if not 0 <= k < len(ls):
            raise DataError(path, f"{column} is {k}, expected 0..{len(ls) - 1} or a {ls.name} name "
                                  f"{list(ls.labels)}", line=line)
        return k
    if v in ls:
        return ls.index(v)
    raise DataError(path, f"{column} is {v!r}, expected a label index 0..{len(ls) - 1} or one of "
                          f"{list(ls.labels)}", line=line)


def read_changes(path: str | os.PathLike, label_set: LabelSet = FER7) -> list[Change]:
    """Parse and check CHANGES.csv (header ``row,old,new[,reason]``); duplicate rows are an error."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    changes: list[Change] = []
    seen: dict[int, int] = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in ("row", "old", "new") if c not in header]
        if missing:
            raise DataError(path, f"header is {header}, expected columns row,old,new[,reason] "
                                  f"(missing {missing})", line=1)
        ir, io_, inew = header.index("row"), header.index("old"), header.index("new")
        ire = header.index("reason") if "reason" in header else None
        for lineno, rec in enumerate(reader, start=2):
            if not rec or all(not c.strip() for c in rec):
                continue
            if len(rec) <= max(ir, io_, inew):
                raise DataError(path, f"has {len(rec)} fields, expected {','.join(header)}", line=lineno)
            r = rec[ir].strip()
            if not r.isdigit():
                raise DataError(path, f"row is {r!r}, expected a 0-based data row number", line=lineno)
            row = int(r)
            if row in seen:
                raise DataError(path, f"row {row} is changed twice (first on line {seen[row]})", line=lineno)
            seen[row] = lineno
            old = _parse_label(rec[io_], label_set, path, lineno, "old")
            new = _parse_label(rec[inew], label_set, path, lineno, "new")
            reason = rec[ire].strip() if ire is not None and ire < len(rec) else ""
            changes.append(Change(row, old, new, reason, lineno))
    if not changes:
        raise DataError(path, "no changes listed")
    return changes


def apply_changes(ds: FaceDataset, changes: list[Change], changes_path: str | os.PathLike
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(new labels, previous label or -1 per row, reason per row); checks every ``old`` against the data."""
    rows = ds.rows if ds.rows is not None else np.arange(len(ds))
    where = {int(r): i for i, r in enumerate(rows)}
    labels = ds.labels.copy()
    prev = np.full(len(ds), -1, np.int64)
    reasons = [""] * len(ds)
    names = ds.label_set.labels
    for c in changes:
        i = where.get(c.row)
        if i is None:
            why = " (it was skipped as malformed)" if c.row <= int(rows.max()) else ""
            raise DataError(changes_path, f"row {c.row} is not in {ds.source} ({len(ds)} data rows){why}",
                            line=c.line)
        if labels[i] != c.old:
            raise DataError(changes_path, f"row {c.row}: old is {c.old} ({names[c.old]}) but the data has "
                                          f"{int(labels[i])} ({names[int(labels[i])]})", line=c.line)
        if c.new != c.old:
            prev[i] = c.old
            labels[i] = c.new
            reasons[i] = c.reason
    return labels, prev, reasons


def write_relabelled_csv(path: str | os.PathLike, ds: FaceDataset, labels: np.ndarray, prev: np.ndarray,
                         reasons: list[str]) -> Path:
    """FER-2013 CSV plus audit columns ``relabel_from,reason`` (readers ignore extra columns)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    has_usage = not all(u == "Unspecified" for u in ds.usage.tolist())
    with open_text_out(path) as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels"] + (["Usage"] if has_usage else []) + ["relabel_from", "reason"])
        for i in range(len(ds)):
            px = pixels_to_text(ds.images[i])
            w.writerow([int(labels[i]), px] + ([str(ds.usage[i])] if has_usage else [])
                       + ["" if prev[i] < 0 else int(prev[i]), reasons[i]])
    return path


def review_ferplus(ds: FaceDataset, votes: FerPlusVotes, min_share: float = 0.7) -> list[dict]:
    """Candidate changes: rows whose FER-2013 label differs from a FER+ majority holding at least
    ``min_share`` of the 10 raw votes (contempt, unknown and not-a-face majorities are never proposed)."""
    if not 0.5 < min_share <= 1.0:
        raise ValueError(f"--min-share must be in (0.5, 1], got {min_share}")
    rows = ds.rows if ds.rows is not None else np.arange(len(ds))
    if int(rows.max()) >= len(votes):
        raise DataError(ds.source, f"FER+ file has {len(votes)} rows but the dataset has row {int(rows.max())}")
    maj = votes.majority[rows]
    total = votes.votes[rows].sum(1)
    # votes for the majority class, in FER+ column order -> FERPLUS8 index
    from .ferplus import _TO_FERPLUS8

    col = {t: c for c, t in enumerate(_TO_FERPLUS8)}
    share = np.zeros(len(ds))
    ok = (maj >= 0) & (maj < len(FER7))
    share[ok] = [votes.votes[r, col[m]] for r, m in zip(rows[ok], maj[ok])]
    share = np.divide(share, total, out=np.zeros(len(ds)), where=total > 0)
    cand = np.flatnonzero(ok & (maj != ds.labels) & (share >= min_share))
    names = FER7.labels
    out = []
    for i in cand:
        m = int(maj[i])
        out.append({"row": int(rows[i]), "old": names[int(ds.labels[i])], "new": names[m],
                    "reason": f"FER+ {votes.votes[rows[i], col[m]]}/{int(total[i])} votes {names[m]}"})
    return out


def write_changes_csv(path: str | os.PathLike, changes: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["row", "old", "new", "reason"])
        w.writeheader()
        w.writerows(changes)
    return path
