"""FER-2013 CSV reader (Kaggle layout ``emotion,pixels,Usage``), plain or gzipped, with a parse cache.

Goodfellow et al. 2013, "Challenges in Representation Learning: A report on three machine learning contests".
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import cache_dir, file_hash
from .errors import DataError
from .labels import FER7, LabelSet

SIDE = 48
N_PIXELS = SIDE * SIDE
SPLITS = ("Training", "PublicTest", "PrivateTest")
CACHE_VERSION = 2


@dataclass
class FaceDataset:
    """Images (N,H,W) uint8 grayscale, integer labels, split names and per-row provenance.

    ``rows`` holds the 0-based data-row index in the source file, so that row-aligned side files
    (FER+ votes) stay aligned after bad rows were skipped. ``soft`` optionally holds soft targets (N,C).
    """

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    label_set: LabelSet = FER7
    rows: np.ndarray | None = None
    soft: np.ndarray | None = None
    paths: list[str] | None = None
    source: str = ""
    skipped: int = 0
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, name: str) -> "FaceDataset":
        """The rows of one split (``Training``, ``PublicTest``, ``PrivateTest``)."""
        mask = self.usage == name
        if not mask.any():
            have = sorted(set(self.usage.tolist()))
            raise DataError(self.source, f"no rows with Usage={name!r}; the file has {have}")
        return self.subset(np.flatnonzero(mask))

    def subset(self, idx: np.ndarray) -> "FaceDataset":
        return FaceDataset(
            images=self.images[idx],
            labels=self.labels[idx],
            usage=self.usage[idx],
            label_set=self.label_set,
            rows=None if self.rows is None else self.rows[idx],
            soft=None if self.soft is None else self.soft[idx],
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            source=self.source,
            extra=dict(self.extra),
        )

    @property
    def splits(self) -> list[str]:
        seen: list[str] = []
        for u in self.usage.tolist():
            if u not in seen:
                seen.append(u)
        order = {s: i for i, s in enumerate(("Training", "train", "PublicTest", "val", "PrivateTest", "test"))}
        return sorted(seen, key=lambda s: order.get(s, 99))


def _open_binary(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def open_text(path: Path) -> io.TextIOBase:
    """A CSV as text, gzipped or not."""
    # utf-8-sig: a CSV saved by a spreadsheet starts with a byte-order mark that would otherwise join the header
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", newline="")


def utf8_error(path: Path, err: UnicodeDecodeError) -> DataError:
    """The first line that is not UTF-8 (the decoder reads in chunks, so its offset does not say which line)."""
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return DataError(path, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                                       "expected a UTF-8 (or ASCII) CSV", line=lineno)
    return DataError(path, f"not valid UTF-8 ({err.reason}); expected a UTF-8 (or ASCII) CSV")


def _explain_pixels(text: str) -> str:
    tokens = text.split()
    for i, tok in enumerate(tokens):
        try:
            v = int(tok)
        except ValueError:
            return f"pixel {i} is {tok!r}, expected an integer 0..255"
        if not 0 <= v <= 255:
            return f"pixel {i} is {v}, expected 0..255"
    return f"has {len(tokens)} pixel values, expected {N_PIXELS} (48x48)"


def parse_fer_csv(path: str | os.PathLike, skip_bad: bool = False, num_classes: int = 7) -> FaceDataset:
    """Parse a FER-2013 CSV without the cache. Bad rows raise :class:`DataError` unless ``skip_bad``."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        return _parse_fer_rows(path, skip_bad, num_classes)
    except UnicodeDecodeError as e:
        raise utf8_error(path, e) from None


def _parse_fer_rows(path: Path, skip_bad: bool, num_classes: int) -> FaceDataset:
    images: list[np.ndarray] = []
    labels: list[int] = []
    usage: list[str] = []
    rows: list[int] = []
    skipped = 0
    bad_examples: list[str] = []
    with open_text(path) as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(path, "empty file, expected a header 'emotion,pixels[,Usage]'") from None
        header = [h.strip() for h in header]
        if "emotion" not in header or "pixels" not in header:
            raise DataError(path, f"header is {header}, expected columns emotion,pixels[,Usage]", line=1)
        ie, ip = header.index("emotion"), header.index("pixels")
        iu = header.index("Usage") if "Usage" in header else None
        data_row = -1
        for lineno, rec in enumerate(reader, start=2):
            if not rec or (len(rec) == 1 and not rec[0].strip()):
                continue
            data_row += 1
            err = None
            if len(rec) < len(header):
                err = f"has {len(rec)} fields, expected {len(header)} ({','.join(header)})"
            else:
                lab = rec[ie].strip()
                try:
                    y = int(lab)
                    if not 0 <= y < num_classes:
                        err = f"emotion is {y}, expected 0..{num_classes - 1}"
                except ValueError:
                    err = f"emotion is {lab!r}, expected an integer 0..{num_classes - 1}"
                if err is None:
                    try:  # NumPy >= 2.3 raises on a non-numeric token instead of stopping early
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            px = np.fromstring(rec[ip], dtype=np.int32, sep=" ")
                    except ValueError:
                        px = np.zeros(0, np.int32)
                    if px.size != N_PIXELS or px.min(initial=0) < 0 or px.max(initial=0) > 255:
                        err = "pixels " + _explain_pixels(rec[ip])
                    elif len(rec[ip].split()) != N_PIXELS:
                        err = "pixels " + _explain_pixels(rec[ip])
            if err is not None:
                if not skip_bad:
                    raise DataError(path, f"row {data_row}: {err} (use --skip-bad to skip such rows)", line=lineno)
                skipped += 1
                if len(bad_examples) < 5:
                    bad_examples.append(f"line {lineno}: {err}")
                continue
            images.append(px.astype(np.uint8).reshape(SIDE, SIDE))
            labels.append(y)
            usage.append(rec[iu].strip() if iu is not None else "Unspecified")
            rows.append(data_row)
    if not images:
        raise DataError(path, "no valid rows")
    return FaceDataset(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        usage=np.asarray(usage),
        rows=np.asarray(rows, dtype=np.int64),
        source=str(path),
        skipped=skipped,
        extra={"bad_examples": bad_examples},
    )


def load_fer2013(path: str | os.PathLike, skip_bad: bool = False, use_cache: bool = True) -> FaceDataset:
    """Load FER-2013 from CSV (plain or .gz); the parsed arrays are cached by file hash.

    The first call on the full 35,887-row file parses ~300 MB of text; later calls load an .npz.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if not use_cache:
        return parse_fer_csv(path, skip_bad=skip_bad)
    key = f"fer2013-v{CACHE_VERSION}-{file_hash(path)}-{'skip' if skip_bad else 'strict'}.npz"
    cpath = cache_dir() / key
    if cpath.exists():
        try:
            z = np.load(cpath, allow_pickle=False)
            bad = z["bad_examples"].astype(str).tolist() if "bad_examples" in z.files else []
            return FaceDataset(
                images=z["images"], labels=z["labels"], usage=z["usage"].astype(str), rows=z["rows"],
                source=str(path), skipped=int(z["skipped"]), extra={"bad_examples": bad},
            )
        except Exception:  # a truncated cache file is rebuilt, never trusted
            cpath.unlink(missing_ok=True)
    ds = parse_fer_csv(path, skip_bad=skip_bad)
    tmp = cpath.with_suffix(".tmp.npz")
    np.savez(tmp, images=ds.images, labels=ds.labels, usage=ds.usage.astype("U16"), rows=ds.rows,
             skipped=np.int64(ds.skipped), bad_examples=np.asarray(ds.extra.get("bad_examples", []), dtype=str))
    os.replace(tmp, cpath)
    return ds


_PIXEL_TEXT = np.array([str(v) for v in range(256)], dtype=object)


def pixels_to_text(image: np.ndarray) -> str:
    """One image as the space-separated pixel string of the CSV (a lookup table: ~5x faster than str())."""
    return " ".join(_PIXEL_TEXT[np.asarray(image, dtype=np.uint8).reshape(-1)])


def open_text_out(path: Path):
    """Text writer, gzipped when the name ends with .gz (level 6: level 9 is 2x slower for ~1% smaller)."""
    if path.suffix == ".gz":
        return gzip.open(path, "wt", encoding="utf-8", newline="", compresslevel=6)
    return open(path, "w", encoding="utf-8", newline="")


def write_fer_csv(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                  usage: np.ndarray | None = None) -> None:
    """Write images back to the FER-2013 CSV layout (gzipped when the name ends with .gz)."""
    path = Path(path)
    with open_text_out(path) as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"] if usage is not None else ["emotion", "pixels"])
        for i in range(len(labels)):
            px = pixels_to_text(images[i])
            row = [int(labels[i]), px] + ([str(usage[i])] if usage is not None else [])
            w.writerow(row)
