"""One entry point for face datasets: a FER-2013 CSV (.csv / .csv.gz) or an image folder."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import DataError
from .fer2013 import FaceDataset, load_fer2013
from .folders import load_folder
from .labels import FER7, LabelSet


def load_dataset(path: str | os.PathLike, size: int = 48, label_set: LabelSet | str = FER7,
                 skip_bad: bool = False, ignore_unknown: bool = False) -> FaceDataset:
    path = Path(path)
    if not path.exists():
        raise DataError(path, "not found: expected a FER-2013 CSV (.csv, .csv.gz) or an image folder")
    if path.is_dir():
        fer = [p for p in (path / "fer2013.csv.gz", path / "fer2013.csv", path / "fer2013" / "fer2013.csv.gz")
               if p.exists()]
        if fer:
            path = fer[0]
        else:
            return load_folder(path, label_set, size, ignore_unknown=ignore_unknown, skip_bad=skip_bad)
    ds = load_packed(path) if path.suffix == ".npz" else load_fer2013(path, skip_bad=skip_bad)
    if size != ds.images.shape[1]:
        from .preprocess import resize

        ds.images = np.stack([resize(im, size) for im in ds.images])
    return ds


def pack_dataset(ds: FaceDataset, dst: str | os.PathLike) -> Path:
    """Write ``ds`` losslessly and compactly (horizontal differences + LZMA), e.g. for a GPU machine."""
    import lzma

    diff = np.diff(ds.images.astype(np.int16), axis=2, prepend=0).astype(np.uint8)
    packed = np.frombuffer(lzma.compress(diff.tobytes(), preset=6), dtype=np.uint8)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    extra = {"soft": ds.soft} if ds.soft is not None else {}
    rows = ds.rows if ds.rows is not None else np.arange(len(ds))
    np.savez(dst, pixels_lzma_sub=packed, shape=np.array(ds.images.shape), labels=ds.labels,
             usage=ds.usage.astype("U16"), rows=rows, **extra)
    return dst


def load_packed(path: Path) -> FaceDataset:
    """A dataset packed by ``tools/pack_fer_for_device.py`` (lossless, LZMA; FER+ soft targets included)."""
    import lzma

    z = np.load(path, allow_pickle=False)
    if "pixels_lzma_sub" not in z:
        raise DataError(path, "not a packed emotionlab dataset (expected key pixels_lzma_sub)")
    shape = tuple(int(v) for v in z["shape"])
    diff = np.frombuffer(lzma.decompress(z["pixels_lzma_sub"].tobytes()), dtype=np.uint8).reshape(shape)
    images = np.cumsum(diff, axis=2, dtype=np.uint8)  # undo the horizontal difference (mod 256)
    return FaceDataset(images=images, labels=z["labels"], usage=z["usage"].astype(str), rows=z["rows"],
                       soft=z["soft"] if "soft" in z else None, source=str(path))


def train_val_test(ds: FaceDataset, seed: int = 0, val_frac: float = 0.1, test_frac: float = 0.1
                   ) -> tuple[FaceDataset, FaceDataset, FaceDataset | None]:
    """FER-2013: Training / PublicTest / PrivateTest. Folders: their train/val/test, else a seeded
    stratified split."""
    u = set(ds.usage.tolist())
    if {"Training", "PublicTest"} <= u:
        return ds.split("Training"), ds.split("PublicTest"), (ds.split("PrivateTest") if "PrivateTest" in u else None)
    if {"train", "val"} <= u:
        return ds.split("train"), ds.split("val"), (ds.split("test") if "test" in u else None)
    from .split import stratified_split

    tr, va, te = stratified_split(ds.labels, val_frac, test_frac, seed)
    if "train" in u and "test" in u:  # train/test given: carve validation out of train
        tr_idx = np.flatnonzero(ds.usage == "train")
        a, b, _ = stratified_split(ds.labels[tr_idx], val_frac, 0.0, seed)
        return ds.subset(tr_idx[a]), ds.subset(tr_idx[b]), ds.split("test")
    return ds.subset(tr), ds.subset(va), ds.subset(te)


#: Usage values of data without splits: image folders without train/ val/ test/, FER-2013 CSVs without Usage
UNSPLIT = frozenset({"all", "Unspecified"})
_SPLIT_NAMES = {"privatetest": ("PrivateTest", "test"), "test": ("PrivateTest", "test"),
                "publictest": ("PublicTest", "val"), "val": ("PublicTest", "val"),
                "training": ("Training", "train"), "train": ("Training", "train")}


def split_indices(usage, labels, split: str | None = "auto", seed: int = 0, source: str = "data",
                  val_frac: float = 0.1, test_frac: float = 0.1) -> tuple[np.ndarray, str]:
    """-> (sorted row indices, the name of the part they are) for scoring a model on ``split``.

    ``auto`` (or None): the data's test split (FER-2013 PrivateTest, a folder's ``test/``), or every row of data
    without splits (named ``all``). ``all``: every row. A split name: that split. Only when asked by name
    (``test`` / ``PrivateTest``, ``val`` / ``PublicTest``) on data without splits: the seeded held-out part that
    ``emotionlab train`` holds out of such data (:func:`train_val_test`, same seed and fractions), named so.
    """
    usage = np.asarray(usage).astype(str)
    u = set(usage.tolist())
    every = np.arange(len(usage))
    key = (split or "auto").lower()
    if key == "all":
        return every, "all"
    if key == "auto":
        if u <= UNSPLIT:
            return every, "all"
        for cand in ("PrivateTest", "test"):
            if cand in u:
                return np.flatnonzero(usage == cand), cand
        raise DataError(source, f"has no test split to score by default (its splits: {sorted(u)}); "
                                "name one with --split, or score every row with --split all")
    for cand in _SPLIT_NAMES.get(key, (split,)):
        if cand in u:
            return np.flatnonzero(usage == cand), cand
    if u <= UNSPLIT and key in ("test", "privatetest", "val", "publictest"):
        from .split import stratified_split

        _, va, te = stratified_split(np.asarray(labels), val_frac, test_frac, seed)
        part, frac, idx = ("test", test_frac, te) if key in ("test", "privatetest") else ("val", val_frac, va)
        return idx, f"held-out {part}: seeded {100 * frac:g} % of data without splits (seed {seed})"
    raise DataError(source, f"no split {split!r}; the data has {sorted(u)}")


def scored_part(ds: FaceDataset, split: str | None = "auto", seed: int = 0) -> tuple[FaceDataset, str]:
    """-> (the part of ``ds`` to score, its name for titles and JSON): see :func:`split_indices`."""
    idx, name = split_indices(ds.usage, ds.labels, split, seed, ds.source)
    return (ds if len(idx) == len(ds) else ds.subset(idx)), name


def eval_split(ds: FaceDataset, split: str | None, seed: int = 0) -> FaceDataset:
    """The split to evaluate on: a named split, ``all``, or ``auto`` / None (the test split, else everything);
    for data without splits, a named test / val split is the seeded held-out part (see :func:`split_indices`)."""
    return scored_part(ds, split, seed)[0]
