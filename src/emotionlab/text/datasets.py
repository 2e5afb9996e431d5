"""Readers for the text emotion datasets, each returning official (or seeded stratified) splits.

Every reader fails with a ``DataError`` naming the file, the line and what was expected; nothing is dropped
silently (CrowdFlower's merge table says exactly which labels are dropped).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.errors import DataError
from ..data.paths import default_data_root

DATASETS = ("tweeteval", "carer", "goemotions", "goemotions_ekman", "crowdflower", "crowdflower13")

#: Seed 000's 5-class CrowdFlower set. Source label -> merged label; labels not listed are dropped.
CROWDFLOWER_MERGE: dict[str, str] = {
    "happiness": "happiness", "fun": "happiness", "enthusiasm": "happiness", "relief": "happiness",
    "love": "love", "neutral": "neutral", "sadness": "sadness", "worry": "worry",
}
CROWDFLOWER_DROPPED = ("empty", "surprise", "hate", "boredom", "anger")
CROWDFLOWER13 = ("anger", "boredom", "empty", "enthusiasm", "fun", "happiness", "hate", "love", "neutral",
                 "relief", "sadness", "surprise", "worry")

#: GoEmotions' Ekman grouping (Demszky et al. 2020, ``ekman_mapping.json``) plus neutral.
GOEMOTIONS_EKMAN: dict[str, list[str]] = {
    "anger": ["anger", "annoyance", "disapproval"],
    "disgust": ["disgust"],
    "fear": ["fear", "nervousness"],
    "joy": ["joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism", "relief", "pride",
            "admiration", "desire", "caring"],
    "sadness": ["sadness", "disappointment", "embarrassment", "grief", "remorse"],
    "surprise": ["surprise", "realization", "confusion", "curiosity"],
    "neutral": ["neutral"],
}

# Folder names inside ``shared/data/text``.
_SUBDIR = {"tweeteval": "tweeteval_emotion", "carer": "carer_emotion", "goemotions": "goemotions",
           "goemotions_ekman": "goemotions", "crowdflower": "crowdflower", "crowdflower13": "crowdflower"}


@dataclass
class TextDataset:
    """Texts with labels: ``y`` is (N,) int for single-label sets, (N, C) uint8 for multi-label ones."""

    texts: list[str]
    y: np.ndarray
    labels: list[str]
    multi_label: bool = False
    name: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx) -> TextDataset:
        idx = np.asarray(idx)
        return TextDataset([self.texts[i] for i in idx], self.y[idx], list(self.labels), self.multi_label,
                           self.name)


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise DataError(path, "file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})", line=line) from e
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def resolve_dir(name: str, data: str | os.PathLike | None) -> Path:
    """Accept the dataset folder itself, the ``text`` root, or the shared ``data`` root."""
    base = Path(data) if data is not None else default_data_root()
    sub = _SUBDIR[name]
    marker = {"tweeteval": "train_text.txt", "carer": "train.txt", "goemotions": "train.tsv",
              "crowdflower": "tweet_emotions.csv"}[name.replace("_ekman", "").replace("13", "")]
    for cand in (base, base / sub, base / "text" / sub):
        if (cand / marker).exists():
            return cand
    if base.is_file() and name.startswith("crowdflower"):
        return base
    raise DataError(base, f"no {name} data found here (looked in {base}, {base / sub}, {base / 'text' / sub})")


def read_tweeteval(folder: str | os.PathLike) -> dict[str, TextDataset]:
    """TweetEval emotion: ``{split}_text.txt`` / ``{split}_labels.txt`` / ``mapping.txt`` (official splits)."""
    folder = Path(folder)
    mapping = {}
    for i, line in enumerate(_read_lines(folder / "mapping.txt"), 1):
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 2 or not parts[0].strip().isdigit():
            raise DataError(folder / "mapping.txt", f"expected '<id><TAB><label>', got {line!r}", line=i)
        mapping[int(parts[0])] = parts[1].strip()
    labels = [mapping[k] for k in sorted(mapping)]
    out = {}
    for split in ("train", "val", "test"):
        texts = _read_lines(folder / f"{split}_text.txt")
        ys = _read_lines(folder / f"{split}_labels.txt")
        if len(texts) != len(ys):
            raise DataError(folder / f"{split}_labels.txt",
                            f"{len(ys)} labels for {len(texts)} texts in {split}_text.txt")
        y = np.empty(len(ys), np.int64)
        for i, s in enumerate(ys):
            s = s.strip()
            if not s.isdigit() or int(s) not in mapping:
                raise DataError(folder / f"{split}_labels.txt", f"expected a label id in {sorted(mapping)}, got {s!r}",
                                line=i + 1)
            y[i] = int(s)
        out[split] = TextDataset([t.strip() for t in texts], y, labels, False, "tweeteval")
    return out


CARER_LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def read_carer(folder: str | os.PathLike) -> dict[str, TextDataset]:
    """CARER: ``text;label`` lines in ``train.txt`` / ``val.txt`` / ``test.txt`` (official splits)."""
    folder = Path(folder)
    index = {lab: i for i, lab in enumerate(CARER_LABELS)}
    out = {}
    for split in ("train", "val", "test"):
        path = folder / f"{split}.txt"
        texts, y = [], []
        for i, line in enumerate(_read_lines(path), 1):
            text, sep, label = line.rpartition(";")
            if not sep or not text.strip():
                raise DataError(path, f"expected 'text;label', got {line[:80]!r}", line=i)
            label = label.strip()
            if label not in index:
                raise DataError(path, f"unknown label {label!r}; expected one of {CARER_LABELS}", line=i)
            texts.append(text.strip())
            y.append(index[label])
        out[split] = TextDataset(texts, np.asarray(y, np.int64), list(CARER_LABELS), False, "carer")
    return out


def read_goemotions(folder: str | os.PathLike, ekman: bool = False) -> dict[str, TextDataset]:
    """GoEmotions: ``text<TAB>label_ids<TAB>id`` with comma-separated ids into ``emotions.txt`` (multi-label)."""
    folder = Path(folder)
    names = [s.strip() for s in _read_lines(folder / "emotions.txt") if s.strip()]
    if ekman:
        labels = list(GOEMOTIONS_EKMAN)
        group = {src: labels.index(dst) for dst, srcs in GOEMOTIONS_EKMAN.items() for src in srcs}
        missing = [n for n in names if n not in group]
        if missing:
            raise DataError(folder / "emotions.txt", f"labels without an Ekman group: {missing}")
        to_col = [group[n] for n in names]
    else:
        labels = names
        to_col = list(range(len(names)))
    out = {}
    for split in ("train", "dev", "test"):
        path = folder / f"{split}.tsv"
        rows = _read_lines(path)
        texts = []
        y = np.zeros((len(rows), len(labels)), np.uint8)
        for i, line in enumerate(rows):
            parts = line.split("\t")
            if len(parts) < 2:
                raise DataError(path, f"expected 'text<TAB>label_ids<TAB>id', got {line[:80]!r}", line=i + 1)
            try:
                ids = [int(s) for s in parts[1].split(",")]
            except ValueError:
                raise DataError(path, f"label_ids must be comma-separated integers, got {parts[1]!r}",
                                line=i + 1) from None
            for k in ids:
                if not 0 <= k < len(names):
                    raise DataError(path, f"label id {k} outside 0..{len(names) - 1} (emotions.txt)", line=i + 1)
                y[i, to_col[k]] = 1
            texts.append(parts[0])
        out["val" if split == "dev" else split] = TextDataset(texts, y, labels, True,
                                                              "goemotions_ekman" if ekman else "goemotions")
    return out


def _crowdflower_rows(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(texts, 13-class labels)`` of a CrowdFlower CSV in file order, every row checked."""
    path = Path(path)
    if path.is_dir():
        path = path / "tweet_emotions.csv"
    lines = _read_lines(path)
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise DataError(path, "empty file; expected a 'tweet_id,sentiment,content' header")
    header = [h.strip().lower() for h in header]
    for col in ("sentiment", "content"):
        if col not in header:
            raise DataError(path, f"missing column {col!r}; header is {header}", line=1)
    si, ci = header.index("sentiment"), header.index("content")
    texts, raw = [], []
    for i, row in enumerate(reader, 2):
        if len(row) != len(header):
            raise DataError(path, f"expected {len(header)} fields, got {len(row)}", line=i)
        lab = row[si].strip().lower()
        if lab not in CROWDFLOWER13:
            raise DataError(path, f"unknown sentiment {lab!r}; expected one of {list(CROWDFLOWER13)}", line=i)
        texts.append(row[ci])
        raw.append(lab)
    return texts, raw


def read_crowdflower(path: str | os.PathLike, merge: bool = True, seed: int = 0,
                     fractions: tuple[float, float] = (0.1, 0.1)) -> dict[str, TextDataset]:
    """CrowdFlower ``tweet_id,sentiment,content``; seeded stratified train/val/test split (80/10/10).

    ``merge=True`` gives seed 000's 5 classes via ``CROWDFLOWER_MERGE`` (other labels dropped, as documented);
    ``merge=False`` keeps all 13 labels.
    """
    from sklearn.model_selection import train_test_split

    texts, raw = _crowdflower_rows(path)
    if merge:
        keep = [i for i, lab in enumerate(raw) if lab in CROWDFLOWER_MERGE]  # the rest: the documented drops
        texts, raw = [texts[i] for i in keep], [CROWDFLOWER_MERGE[raw[i]] for i in keep]
    labels = sorted(set(CROWDFLOWER_MERGE.values())) if merge else list(CROWDFLOWER13)
    y = np.asarray([labels.index(s) for s in raw], np.int64)
    idx = np.arange(len(y))
    counts = np.bincount(y, minlength=len(labels))
    strat = y if counts.min() >= 3 else None
    rest, test = train_test_split(idx, test_size=fractions[1], random_state=seed, stratify=strat)
    train, val = train_test_split(rest, test_size=fractions[0] / (1 - fractions[1]), random_state=seed,
                                  stratify=None if strat is None else y[rest])
    name = "crowdflower" if merge else "crowdflower13"
    full = TextDataset(texts, y, labels, False, name)
    return {"train": full.subset(np.sort(train)), "val": full.subset(np.sort(val)), "test": full.subset(np.sort(test))}


def crowdflower_fine_labels(path: str | os.PathLike, seed: int = 0,
                            fractions: tuple[float, float] = (0.1, 0.1)) -> TextDataset:
    """Training texts for the 5-class task with their original 13 labels, plus the rows the merge drops.

    An intermediate task for the 5-class CrowdFlower set: the finer labels (fun vs relief) and the dropped
    classes (surprise, hate...) are extra signal that the merge throws away. Nothing of the 5-class
    validation or test split enters: every row whose text (stripped, case-folded) is one of theirs is left out,
    so neither those rows nor a duplicate tweet can carry a held-out text into training.
    """
    five = read_crowdflower(path, merge=True, seed=seed, fractions=fractions)
    held = {t.strip().casefold() for t in five["val"].texts + five["test"].texts}
    texts, raw = _crowdflower_rows(path)
    keep = [i for i, t in enumerate(texts) if t.strip().casefold() not in held]
    labels = list(CROWDFLOWER13)
    y = np.asarray([labels.index(raw[i]) for i in keep], np.int64)
    return TextDataset([texts[i] for i in keep], y, labels, False, "crowdflower13_train")


def load_text_dataset(name: str, data: str | os.PathLike | None = None) -> dict[str, TextDataset]:
    """``{"train", "val", "test"}`` splits of a named dataset (see ``DATASETS``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown text dataset {name!r}; expected one of {', '.join(DATASETS)}")
    folder = resolve_dir(name, data)
    if name == "tweeteval":
        return read_tweeteval(folder)
    if name == "carer":
        return read_carer(folder)
    if name.startswith("goemotions"):
        return read_goemotions(folder, ekman=name == "goemotions_ekman")
    return read_crowdflower(folder, merge=name == "crowdflower")


def read_text_column(path: str | os.PathLike, column: str | None = None) -> list[str]:
    """Texts from a CSV / TSV (``column`` by name) or a TXT file (one text per line) for batch prediction."""
    path = Path(path)
    lines = _read_lines(path)
    if path.suffix.lower() not in (".csv", ".tsv"):
        return lines
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(lines, delimiter=delim)
    header = next(reader, None)
    if header is None:
        raise DataError(path, "empty file; expected a header row")
    header = [h.strip() for h in header]
    if column is None:
        for cand in ("text", "content", "tweet", "sentence"):
            if cand in header:
                column = cand
                break
        else:
            raise DataError(path, f"which column holds the text? pass --column (header: {header})", line=1)
    if column not in header:
        raise DataError(path, f"missing column {column!r}; header is {header}", line=1)
    ci = header.index(column)
    out = []
    for i, row in enumerate(reader, 2):
        if len(row) <= ci:
            raise DataError(path, f"row has {len(row)} fields, no {column!r} value", line=i)
        out.append(row[ci])
    return out
