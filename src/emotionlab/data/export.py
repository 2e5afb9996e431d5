"""Convert between the FER-2013 CSV layout and image folders, losslessly for 48x48 PNGs.

CSV -> ``OUT/<split>/<class>/<row>.png`` (``OUT/<class>/`` when the CSV has no Usage column); the file name is
the 0-based data row, so folder -> CSV restores the original row order and the round trip is exact. A folder
dataset written back to folders (``dedup --drop``) keeps its file names.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .errors import DataError
from .fer2013 import FaceDataset, write_fer_csv

# Folder split names (see folders.SPLIT_NAMES) back to FER-2013 Usage values.
FOLDER_TO_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
NO_SPLIT = ("all", "Unspecified", "")


def export_folders(ds: FaceDataset, out: str | os.PathLike, overwrite: bool = False,
                   progress: Callable[[int], None] | None = None) -> Path:
    """Write every image as a PNG under ``out/<split>/<class>/<row>.png``; returns ``out``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(out, "output folder exists and is not empty (pass --overwrite to write into it)")
    rows = ds.rows if ds.rows is not None else np.arange(len(ds))
    width = max(5, len(str(int(rows.max()))))
    names = ds.label_set.labels
    written: set[Path] = set()
    for i in range(len(ds)):
        split = str(ds.usage[i])
        d = out / names[int(ds.labels[i])] if split in NO_SPLIT else out / split / names[int(ds.labels[i])]
        d.mkdir(parents=True, exist_ok=True)
        if ds.rows is None and ds.paths:  # a folder dataset keeps its file names (a.jpg and a.png: a_7.png)
            p = d / f"{Path(ds.paths[i]).stem}.png"
            p = p.with_name(f"{p.stem}_{i}.png") if p in written else p
        else:
            p = d / f"{int(rows[i]):0{width}d}.png"
        written.add(p)
        if not cv2.imwrite(str(p), np.ascontiguousarray(ds.images[i])):
            raise DataError(p, "could not write PNG")
        if progress and (i + 1) % 1000 == 0:
            progress(1000)
    if progress:
        progress(len(ds) % 1000)
    return out


def folder_order(ds: FaceDataset) -> np.ndarray:
    """Row order for a folder dataset: by numeric file name when every name is a distinct integer
    (an exported CSV), else the loader's sorted path order."""
    if not ds.paths:
        return np.arange(len(ds))
    stems = [Path(p).stem for p in ds.paths]
    if all(s.isdigit() for s in stems) and len(set(map(int, stems))) == len(stems):
        return np.argsort(np.asarray([int(s) for s in stems]), kind="stable")
    return np.arange(len(ds))


def folder_to_csv(ds: FaceDataset, out: str | os.PathLike) -> Path:
    """Write a folder dataset as a FER-2013 CSV (``.csv`` or ``.csv.gz``); images must be 48x48 for FER tools
    but any size is written as-is. Splits train/val/test become Training/PublicTest/PrivateTest."""
    out = Path(out)
    if not (out.name.endswith(".csv") or out.name.endswith(".csv.gz")):
        raise DataError(out, "expected an output file ending in .csv or .csv.gz")
    order = folder_order(ds)
    usage = np.asarray([FOLDER_TO_USAGE.get(str(u), str(u)) for u in ds.usage[order]])
    has_splits = not all(u in NO_SPLIT for u in usage.tolist())
    if has_splits and any(u in NO_SPLIT for u in usage.tolist()):
        raise DataError(ds.source, "some images are inside a train/val/test folder and some are not; "
                                   "put every class folder under a split folder, or none")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_fer_csv(out, ds.images[order], ds.labels[order], usage if has_splits else None)
    return out
