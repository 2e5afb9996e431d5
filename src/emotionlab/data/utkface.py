"""UTKFace reader for the apparent-gender model: names, content hashes, duplicates, a group-aware split, crops.

UTKFace (Zhang, Song and Qi 2017, https://susanqq.github.io/UTKFace/) names every image
``age_gender_race_datetime.jpg.chip.jpg``: age 0-116, gender 0 male / 1 female, race 0 White, 1 Black,
2 Asian, 3 Indian, 4 Others. The labels were estimated by the DEX algorithm and checked by a human
annotator ("model-assisted, human-checked"); they describe *apparent* binary gender, not identity. The
dataset is for non-commercial research only, and so is every model trained on it.

What this module does, and why:

* **Names.** Three files have only three fields (``39_1_20170116174525125.jpg.chip.jpg``: is ``1`` the
  gender or the race?). They are dropped and listed in the report, never silently. Any other name that does
  not parse is a :class:`DataError` naming the file (``skip_bad`` lists and skips it instead). Five names
  are odd but unambiguous (a space before ``.jpg``, a missing dot, a 16- or 18-digit timestamp) and are kept.
* **Duplicates.** The same image bytes appear under several names (375 groups of 2-4 files). A split by
  file would put copies of one image in train and test, so the split unit is the MD5 of the file's bytes.
  40 of those groups carry *different gender labels for the same image*: the label is unknowable from the
  image, so these groups are excluded from training and evaluation and listed in the report. In every other
  group one copy (the first name in sorted order, whose age / race labels are used) is kept: a byte-identical
  copy adds nothing but weight, and in the test split it would be counted twice. Age and race labels also
  disagree inside many groups (205 and 70 of 375), a measure of the label noise.
* **Split.** Seeded, stratified by gender x race x age band (0-9, 10-19, 20-39, 40-59, 60+), counted in
  MD5 groups (:func:`emotionlab.data.split.group_stratified_split`). A digest of the test MD5s goes into the
  model card, so ``evaluate`` can check that it scores the held-out part.
* **Crops.** ``crop="detect"`` runs the face pipeline's detector on each chip (padded by replicating its
  border) and cuts the face with ``preprocess.crop_face``: the same box expansion, grayscale and size as
  ``predict`` uses on a photo, so the model trains on the crops it will see. ``crop="chip"`` only resizes the
  chip (fast; tests). The crops are cached by a digest of the file list and hashes.
"""
from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError

#: image (BGR uint8) -> detections with ``.box`` (x, y, w, h) and ``.score``: the inference layer's detector
Detector = Callable[[np.ndarray], list]

GENDERS = ("male", "female")  # UTKFace codes 0, 1
RACES = ("white", "black", "asian", "indian", "others")  # codes 0..4; "others": Hispanic, Latino, Middle Eastern
AGE_BANDS = (("0-9", 0, 9), ("10-19", 10, 19), ("20-39", 20, 39), ("40-59", 40, 59), ("60+", 60, 10**6))
ADULT_AGE = 20
MAX_AGE = 130
CACHE_VERSION = 1
LABELS_CSV = "utkface_labels.csv"
IMAGE_SUBDIR = "UTKFace"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

LICENSE = ("UTKFace is available for non-commercial research purposes only (https://susanqq.github.io/UTKFace/); "
           "weights trained on it inherit that restriction: non-commercial research use only.")

INTENDED_USE = ("Apparent binary gender (male / female) as a face is likely to be perceived, from the face crop "
                "only: not gender identity, not sex, and no other signal (voice, name, context). Research and "
                "aggregate analysis only; not for decisions about individuals, access control, or inferring "
                "anyone's identity. Off by default in every tool (`--attributes emotion,gender` turns it on).")
LABELS_PROVENANCE = ("UTKFace's age / gender / race labels were estimated by the DEX algorithm and checked by a human "
                     "annotator (model-assisted, human-checked, per the dataset authors); gender is binary (0 male, "
                     "1 female) and apparent. 40 byte-identical images carry both genders (excluded here); ages and "
                     "races disagree within 205 and 70 of the 375 duplicate groups: the labels are noisy.")
KNOWN_BIASES = ("Binary labels cannot represent non-binary or gender-nonconforming people; every face gets one of "
                "two labels. UTKFace is mostly frontal, well-lit web photos; 'white' is ~42% of the images and "
                "'others' (Hispanic, Latino, Middle Eastern...) ~7%, so smaller groups are measured less exactly. "
                "Children's apparent gender is much harder (accuracy far below adults'): do not use the output "
                "for children. It sees a 48 px grayscale face crop, so it can only use cues such as hair, facial "
                "hair and make-up as they appear there (not measured cue by cue; `emotionlab explain --model "
                "gender` shows where it looks): faces that do not match the stereotypes behind the training "
                "labels are likely to be misread. Measured group gaps: group_gaps and metrics.test.")


def age_band(age: int) -> str:
    for name, lo, hi in AGE_BANDS:
        if lo <= age <= hi:
            return name
    raise ValueError(f"age {age} is outside 0..{MAX_AGE}")


class AmbiguousName(ValueError):
    """A name with one field missing: which one cannot be known, so the file is dropped (and reported)."""


def parse_name(name: str) -> tuple[int, int, int]:
    """``age_gender_race_datetime.jpg.chip.jpg`` -> (age, gender, race).

    Raises :class:`AmbiguousName` for three-field names and ``ValueError`` (with the reason) for others that
    do not fit the pattern.
    """
    fields = name.split(".")[0].strip().split("_")
    if len(fields) == 3:
        raise AmbiguousName(f"only 3 fields {fields}: one of gender / race is missing and cannot be told apart")
    if len(fields) != 4:
        raise ValueError(f"has {len(fields)} '_'-separated fields, expected 4 (age_gender_race_datetime)")
    a, g, r, _ = (f.strip() for f in fields)
    if not a.isdigit() or not 0 <= int(a) <= MAX_AGE:
        raise ValueError(f"age field is {a!r}, expected an integer 0..{MAX_AGE}")
    if g not in ("0", "1"):
        raise ValueError(f"gender field is {g!r}, expected 0 (male) or 1 (female)")
    if r not in ("0", "1", "2", "3", "4"):
        raise ValueError(f"race field is {r!r}, expected 0..4")
    return int(a), int(g), int(r)


def image_dir(root: str | os.PathLike) -> Path:
    """``root/UTKFace`` when it exists (the shared layout), else ``root`` itself."""
    root = Path(root)
    return root / IMAGE_SUBDIR if (root / IMAGE_SUBDIR).is_dir() else root


def is_utkface(path: str | os.PathLike) -> bool:
    """A directory with ``utkface_labels.csv`` or a ``UTKFace/`` folder, or a folder of UTKFace-named chips."""
    p = Path(path)
    if not p.is_dir():
        return False
    if (p / LABELS_CSV).is_file() or (p / IMAGE_SUBDIR).is_dir():
        return True
    first = next((f for f in sorted(p.iterdir())[:50] if f.name.endswith(".chip.jpg")), None)
    return first is not None


@dataclass
class UTKFaceIndex:
    """Parsed labels of every usable file (sorted by name) and what was left out, with reasons."""

    root: Path
    files: list[str]
    age: np.ndarray
    gender: np.ndarray
    race: np.ndarray
    md5: np.ndarray
    dropped: list[dict] = field(default_factory=list)  # {"file", "reason"}: ambiguous names, bad files
    csv_check: dict | None = None  # agreement with utkface_labels.csv, when it exists

    def __len__(self) -> int:
        return len(self.files)

    @property
    def bands(self) -> np.ndarray:
        return np.asarray([age_band(int(a)) for a in self.age])

    def strata(self) -> np.ndarray:
        """gender x race x age band, the key the test split is stratified by."""
        return np.asarray([f"{g}|{r}|{b}" for g, r, b in zip(self.gender, self.race, self.bands)])


def _read_labels_csv(path: Path) -> dict[str, tuple[int, dict]]:
    """file -> (line number, row) of ``utkface_labels.csv`` (columns file,age,gender,race,flag,md5,...)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        need = {"file", "md5"}
        if header is None or not need <= {h.strip() for h in header}:
            raise DataError(path, f"header is {header}, expected at least the columns file,md5", line=1)
        header = [h.strip() for h in header]
        out: dict[str, tuple[int, dict]] = {}
        for lineno, rec in enumerate(reader, start=2):
            if not rec:
                continue
            if len(rec) != len(header):
                raise DataError(path, f"has {len(rec)} fields, expected {len(header)} ({','.join(header)})", line=lineno)
            out[rec[header.index("file")]] = (lineno, dict(zip(header, rec)))
    return out


def scan_utkface(root: str | os.PathLike, skip_bad: bool = False, check_csv: bool = True) -> UTKFaceIndex:
    """Parse every image name under ``root`` (or ``root/UTKFace``) and hash its bytes.

    Three-field names are dropped and reported. Other bad names and empty / unreadable files raise a
    :class:`DataError` naming the file unless ``skip_bad`` (then they are reported in ``dropped``). When
    ``root/utkface_labels.csv`` exists, its age / gender / race must agree with the names (else DataError with
    the CSV line) and the duplicate groups its md5 column implies are compared with the files' own.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(root, "not found: expected the UTKFace folder (UTKFace/*.jpg.chip.jpg, utkface_labels.csv)")
    idir = image_dir(root)
    if not idir.is_dir():
        raise DataError(root, "not a directory; expected the UTKFace folder")
    paths = sorted(p for p in idir.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise DataError(idir, "no UTKFace images (age_gender_race_datetime.jpg.chip.jpg) found")
    table = _read_labels_csv(root / LABELS_CSV) if check_csv and (root / LABELS_CSV).is_file() else None
    files, ages, genders, races, md5s, dropped = [], [], [], [], [], []
    csv_md5: dict[str, str] = {}
    for p in paths:
        try:
            a, g, r = parse_name(p.name)
        except AmbiguousName as e:
            dropped.append({"file": p.name, "reason": f"ambiguous name: {e}"})
            continue
        except ValueError as e:
            if not skip_bad:
                raise DataError(p, f"file name {e} (use --skip-bad to skip such files)") from None
            dropped.append({"file": p.name, "reason": f"bad name: {e}"})
            continue
        data = p.read_bytes()
        if not data:
            if not skip_bad:
                raise DataError(p, "file is empty (0 bytes)")
            dropped.append({"file": p.name, "reason": "empty file"})
            continue
        digest = hashlib.md5(data).hexdigest()
        if table is not None and p.name in table:
            lineno, row = table[p.name]
            csv_md5[p.name] = row["md5"].strip()
            for col, val in (("age", a), ("gender", g), ("race", r)):
                cell = row.get(col, "").strip()
                if cell and int(float(cell)) != val:
                    raise DataError(root / LABELS_CSV, f"{p.name}: {col} is {cell} but the file name says {val}",
                                    line=lineno)
        files.append(p.name)
        ages.append(a)
        genders.append(g)
        races.append(r)
        md5s.append(digest)
    if not files:
        raise DataError(idir, f"no usable UTKFace images ({len(dropped)} dropped: {dropped[:3]})")
    return UTKFaceIndex(root=root, files=files, age=np.asarray(ages, np.int64), gender=np.asarray(genders, np.int64),
                        race=np.asarray(races, np.int64), md5=np.asarray(md5s), dropped=dropped,
                        csv_check=_csv_check(files, md5s, csv_md5) if table is not None else None)


def _csv_check(files: list[str], md5s: list[str], csv_md5: dict[str, str]) -> dict:
    """The CSV's md5 column hashes another encoding of the images (the 200x200 aligned JPEGs: its byte counts
    differ from the 80x80 chips'), so it cannot be compared byte for byte; the duplicate groups it implies
    must still be the ones the chips' own hashes give."""
    def partition(keys: dict[str, str]) -> set[frozenset]:
        groups: dict[str, set] = {}
        for f, h in keys.items():
            groups.setdefault(h, set()).add(f)
        return {frozenset(g) for g in groups.values() if len(g) > 1}

    ours = partition({f: h for f, h in zip(files, md5s) if f in csv_md5})
    theirs = partition({f: csv_md5[f] for f in files if f in csv_md5})
    return {"rows_matched": len(csv_md5), "files_not_in_csv": len(files) - len(csv_md5),
            "same_bytes_md5": sum(csv_md5.get(f) == h for f, h in zip(files, md5s)),
            "duplicate_groups_agree": ours == theirs, "groups_only_in_csv": len(theirs - ours),
            "groups_only_in_files": len(ours - theirs)}


def dedupe(index: UTKFaceIndex) -> tuple[np.ndarray, dict]:
    """Rows to keep (one per MD5 group, none from groups whose copies disagree on gender) and a report."""
    by_md5: dict[str, list[int]] = {}
    for i, h in enumerate(index.md5):
        by_md5.setdefault(str(h), []).append(i)
    keep, conflicts, n_dup_groups, age_conf, race_conf = [], [], 0, 0, 0
    for h, rows in by_md5.items():
        if len(rows) > 1:
            n_dup_groups += 1
            age_conf += len({int(index.age[i]) for i in rows}) > 1
            race_conf += len({int(index.race[i]) for i in rows}) > 1
            if len({int(index.gender[i]) for i in rows}) > 1:
                conflicts.append({"md5": h, "files": [index.files[i] for i in rows],
                                  "genders": [int(index.gender[i]) for i in rows]})
                continue
        keep.append(rows[0])
    keep_arr = np.asarray(sorted(keep), np.int64)
    report = {"files": len(index), "unique_images": len(by_md5), "duplicate_groups": n_dup_groups,
              "gender_conflict_groups": len(conflicts),
              "gender_conflict_files": sum(len(c["files"]) for c in conflicts),
              "age_conflict_groups": age_conf, "race_conflict_groups": race_conf,
              "kept": len(keep_arr), "removed_copies": len(index) - len(keep_arr) - sum(len(c["files"]) for c in conflicts),
              "conflicts": conflicts}
    return keep_arr, report


def split_digest(md5s) -> str:
    """Order-free SHA-1 of a set of image MD5s: identifies a split independent of file names."""
    return hashlib.sha1("\n".join(sorted(str(h) for h in md5s)).encode()).hexdigest()


def utkface_splits(index: UTKFaceIndex, seed: int = 0, val_frac: float = 0.1, test_frac: float = 0.2
                   ) -> tuple[dict[str, np.ndarray], dict]:
    """{"train", "val", "test"} -> row indices into ``index`` (deduplicated, conflicts out), and the report."""
    from .split import group_stratified_split

    keep, report = dedupe(index)
    strata = index.strata()[keep]
    tr, va, te = group_stratified_split(index.md5[keep], strata, val_frac, test_frac, seed)
    parts = {"train": keep[tr], "val": keep[va], "test": keep[te]}
    report.update({"split": {"seed": seed, "val_frac": val_frac, "test_frac": test_frac,
                             "stratified_by": "gender x race x age band, counted in MD5 groups",
                             **{f"n_{k}": len(v) for k, v in parts.items()},
                             "test_md5_sha1": split_digest(index.md5[parts["test"]])},
                   "dropped": list(index.dropped), "labels_csv": index.csv_check})
    return parts, report


# ------------------------------------------------------------------------------------------------ crops
def _chip_crops(paths: list[Path], size: int) -> tuple[np.ndarray, int]:
    from .folders import read_image
    from .preprocess import resize, to_gray

    return np.stack([resize(to_gray(read_image(p)), size) for p in paths]), 0


def _detect_crops(paths: list[Path], size: int, detect: Detector | None, pad: float = 0.5, align: bool = False
                  ) -> tuple[np.ndarray, int]:
    """Detector box on the border-padded chip -> ``crop_face`` (the predict path); no face: a fixed box.
    ``detect`` is the inference layer's detector (BlazeFace short range, as the gender model was trained):
    passed in, because a data reader must not import the inference layer. ``align``: turn each crop with the
    head's roll from the eye keypoints, exactly as ``predict --align`` does."""
    import cv2

    from .folders import read_image
    from .preprocess import PreprocessConfig, crop_face, eye_roll, to_gray

    if detect is None:
        raise ValueError("crop='detect' needs a detector: pass detector=create_detector('blazeface_short').detect "
                         "(emotionlab.inference.detectors), or use crop='chip'")
    cfg = PreprocessConfig(size=size)
    out, fallback = [], 0
    for p in paths:
        img = read_image(p)
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        img = img[:, :, :3]
        h, w = img.shape[:2]
        m = round(pad * max(h, w))
        big = cv2.copyMakeBorder(img, m, m, m, m, cv2.BORDER_REPLICATE)
        dets = detect(big)
        roll = 0.0
        if dets:
            best = max(dets, key=lambda d: d.score or 0)
            box = best.box
            roll = eye_roll(getattr(best, "landmarks", None)) if align else 0.0
        else:  # the average detector box on UTKFace chips: ~95% of the chip, centred
            fallback += 1
            box = (m + 0.02 * w, m + 0.02 * h, 0.95 * w, 0.95 * h)
        out.append(crop_face(to_gray(big), box, cfg, roll))
    return np.stack(out), fallback


def face_crops(index: UTKFaceIndex, rows: np.ndarray, size: int = 48, crop: str = "detect",
               use_cache: bool = True, detector: Detector | None = None, align: bool = False
               ) -> tuple[np.ndarray, dict]:
    """uint8 (N, size, size) grayscale crops of ``rows``, cached by the file names + hashes; and crop info.
    ``align`` (detect crops only): roll-aligned from the eye keypoints."""
    from .cache import cache_dir

    if crop not in ("detect", "chip"):
        raise ValueError(f"unknown crop mode {crop!r}; use detect or chip")
    rows = np.asarray(rows, np.int64)
    key = hashlib.sha1("\n".join(f"{index.files[i]}:{index.md5[i]}" for i in rows).encode()).hexdigest()[:20]
    if align and crop != "detect":
        raise ValueError("align turns detected faces by their eye keypoints; it needs crop='detect'")
    mode = crop + ("-align" if align else "")
    cpath = cache_dir() / f"utkface-v{CACHE_VERSION}-{mode}-{size}-{key}.npz"
    if use_cache and cpath.exists():
        try:
            z = np.load(cpath, allow_pickle=False)
            return z["images"], {"crop": crop, "align": align, "fallback": int(z["fallback"]), "cache": str(cpath)}
        except Exception:  # noqa: BLE001 - a truncated cache file is rebuilt, never trusted
            cpath.unlink(missing_ok=True)
    idir = image_dir(index.root)
    paths = [idir / index.files[i] for i in rows]
    images, fallback = (_detect_crops(paths, size, detector, align=align) if crop == "detect"
                        else _chip_crops(paths, size))
    if use_cache:
        tmp = cpath.with_suffix(".tmp.npz")
        np.savez(tmp, images=images, fallback=np.int64(fallback))
        os.replace(tmp, cpath)
    return images, {"crop": crop, "align": align, "fallback": fallback, "cache": str(cpath) if use_cache else None}


@dataclass
class UTKFaceData:
    """Crops and labels of the kept rows, with their split; per-row age / race for the fairness report."""

    images: np.ndarray
    gender: np.ndarray
    age: np.ndarray
    race: np.ndarray
    md5: np.ndarray
    files: list[str]
    usage: np.ndarray  # train / val / test
    report: dict
    source: str

    def __len__(self) -> int:
        return len(self.gender)

    def mask(self, split: str | None) -> np.ndarray:
        if split in (None, "all"):
            return np.ones(len(self), bool)
        name = {"privatetest": "test", "publictest": "val", "training": "train", "validation": "val"}.get(
            split.lower(), split.lower())
        if name not in ("train", "val", "test"):
            raise DataError(self.source, f"no split {split!r}; UTKFace has train, val, test (or all)")
        return self.usage == name

    def face_dataset(self, split: str | None = None):
        """The rows of one split as a FaceDataset (gender labels, label set gender2), for training."""
        from .fer2013 import FaceDataset
        from .labels import GENDER2

        m = self.mask(split)
        return FaceDataset(images=self.images[m], labels=self.gender[m], usage=self.usage[m], label_set=GENDER2,
                           paths=[f for f, k in zip(self.files, m) if k], source=self.source,
                           extra={"card": self.card()})

    def card(self) -> dict:
        """What a model card records about its training data."""
        r = self.report
        return {"dataset": "UTKFace", "license": LICENSE, "intended_use": INTENDED_USE,
                "labels_provenance": LABELS_PROVENANCE, "known_biases": KNOWN_BIASES,
                "crop": r.get("crop"), "split": r.get("split"),
                "selection": "best validation accuracy on the UTKFace val split; the test split never used in training",
                "data_report": {k: v for k, v in r.items() if k not in ("conflicts", "split", "dropped")}
                | {"dropped_files": [d["file"] for d in r.get("dropped", [])],
                   "gender_conflict_files": [f for c in r.get("conflicts", []) for f in c["files"]]}}


def load_utkface(root: str | os.PathLike, size: int = 48, crop: str = "detect", seed: int = 0,
                 val_frac: float = 0.1, test_frac: float = 0.2, skip_bad: bool = False,
                 use_cache: bool = True, detector: Detector | None = None, align: bool = False) -> UTKFaceData:
    """UTKFace as training / evaluation data: parsed, deduplicated, split, cropped like ``predict`` crops
    (``crop="detect"`` needs ``detector``, a callable image -> detections with ``.box`` / ``.score``, unless the
    crops are cached; ``align`` turns them with the head's roll, like ``predict --align``)."""
    index = scan_utkface(root, skip_bad=skip_bad)
    parts, report = utkface_splits(index, seed, val_frac, test_frac)
    rows = np.sort(np.concatenate([parts["train"], parts["val"], parts["test"]]))
    usage = np.empty(len(index), dtype="U5")
    for name, idx in parts.items():
        usage[idx] = name
    images, info = face_crops(index, rows, size, crop, use_cache, detector, align)
    report.update({"crop": {"mode": crop, "size": size, "detector_fallbacks": info["fallback"]}
                   | ({"align": True} if align else {})})
    return UTKFaceData(images=images, gender=index.gender[rows], age=index.age[rows], race=index.race[rows],
                       md5=index.md5[rows], files=[index.files[i] for i in rows], usage=usage[rows],
                       report=report, source=str(root))


def summarize_counts(data: UTKFaceData) -> dict:
    """Rows per split x gender / race / age band (for the results file)."""
    out = {}
    for split in ("train", "val", "test"):
        m = data.usage == split
        out[split] = {"n": int(m.sum()),
                      "gender": {GENDERS[k]: int(v) for k, v in sorted(Counter(data.gender[m].tolist()).items())},
                      "race": {RACES[k]: int(v) for k, v in sorted(Counter(data.race[m].tolist()).items())},
                      "age": {b: int(sum(age_band(int(a)) == b for a in data.age[m])) for b, _, _ in AGE_BANDS}}
    return out
