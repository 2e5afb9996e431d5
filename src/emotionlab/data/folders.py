"""Image-folder datasets: ``root/<class>/*.png`` with an optional ``train/ val/ test/`` level.

Folder names go through the alias table (``anger`` -> ``angry``, ``happiness`` -> ``happy``...). Images of any
size, colour depth or format become grayscale at the requested size through the shared preprocessing.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import DataError
from .fer2013 import FaceDataset
from .labels import FER7, LabelSet, canonical_name, get_label_set
from .preprocess import resize, to_gray

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "publictest": "val", "test": "test", "privatetest": "test"}


def read_image(path: str | os.PathLike, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """Read an image with OpenCV, honouring EXIF orientation; raise a clear error if it can't be decoded."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(path, f"cannot read file: {e.strerror or e}") from None
    return decode_image(data, path, flags)


def decode_image(data: bytes | np.ndarray, source: str | os.PathLike, flags: int = cv2.IMREAD_UNCHANGED
                 ) -> np.ndarray:
    """Encoded image bytes (e.g. Spark's ``binaryFile`` content) -> array, exactly as :func:`read_image` reads
    a file; ``source`` names the image in the error."""
    data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if data.size == 0:
        raise DataError(source, "file is empty (0 bytes)")
    img = cv2.imdecode(data, flags | cv2.IMREAD_ANYDEPTH if flags == cv2.IMREAD_UNCHANGED else flags)
    if img is None:
        raise DataError(source, "not a readable image (corrupt, truncated or unsupported format)")
    if flags == cv2.IMREAD_UNCHANGED:
        # IMREAD_UNCHANGED skips EXIF rotation; apply it ourselves.
        img = _apply_exif(data, img)
    return img


def _apply_exif(data: np.ndarray, img: np.ndarray) -> np.ndarray:
    try:
        from io import BytesIO

        from PIL import Image

        with Image.open(BytesIO(data.tobytes())) as im:
            orient = im.getexif().get(0x0112, 1)
    except Exception:
        return img
    ops = {2: lambda a: cv2.flip(a, 1), 3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
           4: lambda a: cv2.flip(a, 0), 5: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE), 1),
           6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
           7: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE), 1),
           8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE)}
    return ops[orient](img) if orient in ops else img


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
