"""Image-folder datasets: ``root/<class>/*.png`` with an optional ``train/ val/ test/`` level.

Folder names go through the alias table (``anger`` -> ``angry``, ``happiness`` -> ``happy``...). Images of any
size, colour depth or format become grayscale at the requested size through the shared preprocessing.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .decode import DecodeLimits, read_image_file
from .decode import decode_image as _decode
from .errors import DataError
from .fer2013 import FaceDataset
from .labels import FER7, LabelSet, canonical_name, get_label_set
from .preprocess import resize, to_gray

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "publictest": "val", "test": "test", "privatetest": "test"}


def read_image(path: str | os.PathLike, limits: DecodeLimits | None = None) -> np.ndarray:
    """Read an image file as 8-bit BGR through the decode guard (EXIF honoured, bounded cost); a missing,
    empty, corrupt or oversized file raises a :class:`DataError` that names it."""
    return read_image_file(path, limits)


def decode_image(data: bytes | np.ndarray, source: str | os.PathLike, limits: DecodeLimits | None = None
                 ) -> np.ndarray:
    """Encoded image bytes (e.g. Spark's ``binaryFile`` content) -> 8-bit BGR, exactly as :func:`read_image`
    reads a file; ``source`` names the image in the error."""
    return _decode(data, source, limits or DecodeLimits.local())


def list_images(root: str | os.PathLike, recursive: bool = True) -> list[Path]:
    root = Path(root)
    it = root.rglob("*") if recursive else root.glob("*")
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def scan_folder(root: str | os.PathLike, label_set: LabelSet | str = FER7, ignore_unknown: bool = False
                ) -> list[tuple[Path, int, str]]:
    """(path, label index, split) for every image; split is train/val/test or '' without a split level."""
    root = Path(root)
    ls = get_label_set(label_set)
    if not root.is_dir():
        raise DataError(root, "not a directory; expected root/<class>/*.png or root/<split>/<class>/*.png")
    subdirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not subdirs:
        raise DataError(root, "has no class folders; expected root/<class>/*.png or root/<split>/<class>/")
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_NAMES]
    groups = [(SPLIT_NAMES[d.name.lower()], d) for d in split_dirs] if split_dirs else [("", root)]
    items: list[tuple[Path, int, str]] = []
    unknown: set[str] = set()
    if split_dirs:  # with a split level, other folders and images at the root would be silently lost
        unknown.update(d.name for d in subdirs if d not in split_dirs)
    for _, base in groups:
        unknown.update(str(p.relative_to(root)) for p in list_images(base, recursive=False))
    for split, base in groups:
        for cdir in sorted(d for d in base.iterdir() if d.is_dir()):
            name = canonical_name(cdir.name)
            if name not in ls.labels:
                unknown.add(str(cdir.relative_to(root)))
                continue
            for p in list_images(cdir):
                items.append((p, ls.labels.index(name), split))
    if unknown and not ignore_unknown:
        shown = sorted(unknown)
        raise DataError(root, f"class folders not in label set {ls.name} {list(ls.labels)} (or images outside "
                              f"any class folder): {shown[:10]}{' ...' if len(shown) > 10 else ''} "
                              "(rename them, pick another --labels set, or pass --ignore-unknown)")
    if not items:
        raise DataError(root, "no images found (extensions: " + ", ".join(sorted(IMAGE_EXTS)) + ")")
    return items


def load_folder(root: str | os.PathLike, label_set: LabelSet | str = FER7, size: int = 48,
                ignore_unknown: bool = False, skip_bad: bool = False) -> FaceDataset:
    """Load an image folder as grayscale face crops at ``size``; unreadable images raise unless skip_bad."""
    ls = get_label_set(label_set)
    items = scan_folder(root, ls, ignore_unknown)
    images, labels, usage, paths = [], [], [], []
    skipped, bad = 0, []
    for p, y, split in items:
        try:
            img = read_image(p)
        except DataError as e:
            if not skip_bad:
                raise
            skipped += 1
            bad.append(str(e))
            continue
        g = to_gray(img)
        h, w = g.shape
        if h != w:  # centre square crop keeps the face geometry undistorted
            s = min(h, w)
            g = g[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        images.append(resize(g, size))
        labels.append(y)
        usage.append(split or "all")
        paths.append(str(p))
    if not images:
        raise DataError(root, "no readable images")
    return FaceDataset(images=np.stack(images), labels=np.asarray(labels, np.int64), usage=np.asarray(usage),
                       label_set=ls, paths=paths, source=str(root), skipped=skipped,
                       extra={"bad_examples": bad[:5]})
